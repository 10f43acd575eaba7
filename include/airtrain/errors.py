"""Which failures are permanent.

A :class:`PermanentError` means that running the same task again cannot succeed: the input is bad
(a malformed or missing landing file, a blocked batch), the parameters are (an undefined partition,
an unknown version), or a model artifact was refused. The Airflow layer fails such a task at once,
without retries (``AirflowFailException``); every other error - a lost connection, a lock timeout,
a restarting server - keeps the spec's retries with exponential backoff.

The core's own exception classes say which they are by inheriting from it; nothing here imports
anything.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying the same task cannot fix this; the message says what must change first."""
