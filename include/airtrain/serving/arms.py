"""Canary arms: which entities a running canary's candidate scores - md5 of ``<salt>:<entity key>``, first
32 bits, below ``fraction * 2**32`` → ``candidate``, else ``champion``. The salt is stored with the
rollout (``registry.rollouts``), so the assignment is stable across days and can be recomputed.
"""

from __future__ import annotations

import hashlib
from typing import Any

ARMS = ("champion", "candidate")


_SPACE = 2 ** 32


def _cut(fraction: float) -> int:
    return int(fraction * _SPACE)


def arm_of(key: Any, salt: str, fraction: float) -> str:
    """The arm of one entity (what :func:`arm_condition` computes in SQL)."""
    h = int(hashlib.md5(f"{salt}:{key}".encode(), usedforsecurity=False).hexdigest()[:8], 16)
    return "candidate" if h < _cut(fraction) else "champion"


def arm_condition(key_sql: str, salt: str, fraction: float, arm: str) -> str:
    """SQL text selecting the entities of ``arm`` (``key_sql`` is a quoted column name). A literal on
    purpose (the scoring query streams only without bind parameters); the salt is quoted here."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    lit = "'" + str(salt).replace("'", "''") + ":'"
    bucket = f"('x' || substr(md5({lit} || {key_sql}::text), 1, 8))::bit(32)::bigint"
    return f"{bucket} {'<' if arm == 'candidate' else '>='} {_cut(fraction)}"
