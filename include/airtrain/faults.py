"""Failpoints: crash the process at a named point, for the fault-injection tests.

``AIRTRAIN_FAILPOINT=<name>[,<name>...]`` makes :func:`failpoint` end the process at once with
``os._exit(137)`` - like ``kill -9``: no ``finally``, no context-manager exit, so an open
transaction is never committed and PostgreSQL rolls it back when the connection drops. Points named
``*.before_commit`` sit inside a transaction, after its writes; ``*.after_commit`` right after the
commit, before the task could report success. Unset (always, outside the tests) it does nothing.
"""

from __future__ import annotations

import os
import sys

POINTS = (
    "ingest.before_commit", "ingest.after_commit",
    "validate.before_commit", "validate.after_commit",
    "score.before_commit", "score.after_commit",
    "publish.before_commit", "publish.after_commit",
    "promote.before_commit", "promote.after_commit",
)


def failpoint(name: str) -> None:
    armed = os.environ.get("AIRTRAIN_FAILPOINT")
    if armed and name in armed.split(","):
        sys.stderr.write(f"AIRTRAIN_FAILPOINT {name}: killing the process\n")
        sys.stderr.flush()
        os._exit(137)
