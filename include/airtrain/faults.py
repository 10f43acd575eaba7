"""Failpoints: crash a step at a named point, for the fault-injection tests.

``AIRTRAIN_FAILPOINT=<name>[,<name>...]`` arms the points. Unset (always, outside the tests)
:func:`failpoint` does nothing. Points named ``*.before_commit`` sit inside a transaction, after
its writes; ``*.after_commit`` right after the commit, before the task could report success.

Two ways to crash (``AIRTRAIN_FAILPOINT_MODE``):

* ``kill`` (default): end the process at once with ``os._exit(137)``, like ``kill -9``: no
  ``finally``, no context-manager exit, so an open transaction is never committed and PostgreSQL
  rolls it back when the connection drops.
* ``raise``: raise :class:`InjectedFault` (an ordinary exception). Airflow then treats the task as
  failed and retries it *the way it does in production*: the same task instance of the same DAG
  run, with ``try_number + 1``. A ``before_commit`` raise rolls the transaction back like a kill;
  an ``after_commit`` raise is "the work is committed but the success report was lost".

``AIRTRAIN_FAILPOINT_ONCE=<dir>`` fires each armed point only once (a marker file per point in
``<dir>``, shared by processes), so the retry runs through.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

POINTS = (
    "ingest.before_commit", "ingest.after_commit",
    "validate.before_commit", "validate.after_commit",
    "score.before_commit", "score.after_commit",
    "publish.before_commit", "publish.after_commit",
    "promote.before_commit", "promote.after_commit",
    "rollback.before_commit", "rollback.after_commit",
    "drift.after_commit",  # the drift check's metrics and decision are stored
    "trigger.after_commit",  # the triggered retrain run is recorded on its window (and alerted)
    "canary.after_commit",  # the monitor's canary decision is stored and applied (graduated / aborted)
)


class InjectedFault(RuntimeError):
    """A failpoint fired in ``raise`` mode (only ever in the fault-injection tests)."""


def _first_time(name: str) -> bool:
    """True the first time ``name`` fires when AIRTRAIN_FAILPOINT_ONCE is set (always True otherwise)."""
    once = os.environ.get("AIRTRAIN_FAILPOINT_ONCE")
    if not once:
        return True
    marker = Path(once) / name
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # atomic: one process wins
    except FileExistsError:
        return False
    os.close(fd)
    return True


def failpoint(name: str) -> None:
    armed = os.environ.get("AIRTRAIN_FAILPOINT")
    if not armed or name not in armed.split(",") or not _first_time(name):
        return
    if os.environ.get("AIRTRAIN_FAILPOINT_MODE", "kill") == "raise":
        raise InjectedFault(f"AIRTRAIN_FAILPOINT {name}: simulated crash")
    sys.stderr.write(f"AIRTRAIN_FAILPOINT {name}: killing the process\n")
    sys.stderr.flush()
    os._exit(137)
