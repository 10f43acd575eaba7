"""Per-DAG restricted users on Airflow's SimpleAuthManager (the local stack's and compose's auth manager).

SimpleAuthManager knows roles only (``viewer``, ``user``, ``op``, ``admin``: each for every DAG); its
one way to scope users is multi-team mode, which needs a DAG bundle per team. This auth manager is
SimpleAuthManager plus one rule: a user listed in ``[airtrain] dag_access``
(``AIRFLOW__AIRTRAIN__DAG_ACCESS``, JSON ``{"alice": ["telco_*"], ...}``: DAG id patterns with ``*``
and ``?``) may reach only the DAGs matching one of their patterns - their runs, tasks, logs, HITL
requests, and airtrain's reports and model cards (``/airtrain/`` asks ``is_authorized_dag`` for the
pipeline's DAG) - within what their role allows. Users not listed keep their role as it is. Lists
(the DAGs page, ``GET /api/v2/dags``) are filtered by the same check.

A malformed ``dag_access`` fails closed: every listed-or-not user is refused every DAG (and the error
is logged) until it is fixed. For production use an auth manager with real per-DAG permissions
(FAB, Keycloak); the rule here is for the local stack.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from functools import lru_cache
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

log = logging.getLogger(__name__)

#: every DAG refused (a malformed configuration)
DENY_ALL = object()


@lru_cache(maxsize=8)
def parse_dag_access(text: str) -> dict[str, tuple[str, ...]] | object:
    """``{user: (pattern, ...)}`` from the JSON of ``[airtrain] dag_access``; :data:`DENY_ALL` if malformed."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(p, str) and p for p in v)
                for k, v in data.items()):
            raise ValueError("expected {\"user\": [\"dag_id pattern\", ...], ...}")
    except ValueError as exc:
        log.error("[airtrain] dag_access is malformed (%s): every DAG is refused until it is fixed", exc)
        return DENY_ALL
    return {user: tuple(patterns) for user, patterns in data.items()}


def dag_access() -> dict[str, tuple[str, ...]] | object:
    from airflow.configuration import conf

    return parse_dag_access(conf.get("airtrain", "dag_access", fallback="") or "")


def may_read_dag(user_name: str, dag_id: str | None, rules: Any = None) -> bool:
    """Whether the DAG restriction lets ``user_name`` reach ``dag_id`` (None: "DAGs in general", which
    the role decides; each DAG is checked again when listed or opened)."""
    rules = dag_access() if rules is None else rules
    if rules is DENY_ALL:
        return False
    patterns = rules.get(user_name)  # type: ignore[union-attr]
    if patterns is None or dag_id is None:
        return True
    return any(fnmatch.fnmatchcase(dag_id, p) for p in patterns)


class PipelineAuthManager(SimpleAuthManager):
    """SimpleAuthManager with per-user DAG restrictions (see the module docstring)."""

    def is_authorized_dag(self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None) -> bool:
        if not may_read_dag(user.get_name(), getattr(details, "id", None)):
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
