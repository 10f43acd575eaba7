"""``python -m airtrain.schema``: the documented command line of earlier releases, kept for it.

``python -m airtrain.schema create-reader-login <name> ...`` is ``airtrain create-reader-login``; any
other arguments are ``airtrain migrate`` (:mod:`airtrain.migrate`). The schema itself is applied by
:mod:`airtrain.warehouse.ddl` with the parts :mod:`airtrain.steps.schema` composes.
"""

from __future__ import annotations

import sys

from airtrain.migrate import create_reader_login_cli
from airtrain.migrate import main as migrate


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "create-reader-login":
        return create_reader_login_cli(argv[1:])
    return migrate(argv)  # the same as `airtrain migrate` (the valid specs; the broken ones named)


if __name__ == "__main__":
    raise SystemExit(main())
