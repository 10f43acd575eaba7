"""The "Model card" extra link of the retrain DAG's ``evaluate`` task (issue 13).

Airflow 3 computes an operator's extra links when the task finishes (in the worker) and stores each
URL as an XCom (``_link_ModelCardLink``) that the UI reads. The link points at the evaluated
version's card in the airtrain UI (``/airtrain/cards/<pipeline>/<version>``, see
:mod:`airtrain_airflow.ui`); the version comes from the task's own return value.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink


def card_url(pipeline: str, version: int) -> str:
    from airtrain_airflow.links import PREFIX

    return f"{PREFIX}/cards/{pipeline}/{int(version)}"


class ModelCardLink(BaseOperatorLink):
    """"Model card" button on the ``evaluate`` task instance: the card of the version it evaluated."""

    name = "Model card"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.bases.xcom import BaseXCom as XCom

        evaluation = XCom.get_value(ti_key=ti_key, key="return_value")
        if not isinstance(evaluation, dict) or evaluation.get("version") is None:
            return ""
        pipeline = getattr(operator, "dag_id", "").removesuffix("_retrain")
        return card_url(pipeline, int(evaluation["version"]))
