"""``[core] hostname_callable`` for the local Celery stack: two workers on one machine would both
record the machine's name in ``task_instance.hostname``; each gets its own from
``$AIRTRAIN_WORKER_NAME`` (set by ``scripts/devstack.py`` per worker). In docker compose each
worker is its own container with its own hostname, and the default (``socket.getfqdn``) is kept."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("AIRTRAIN_WORKER_NAME") or socket.getfqdn()
