"""Human approval of a promotion, on Airflow's own human-in-the-loop operator (spec key
``promotion.approval: required``; see :mod:`airtrain.registry.approvals`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Context, Param


class PromotionApprovalOperator(ApprovalOperator):
    """Ask a person to approve the promotion of the run's challenger, then record the answer.

    An :class:`~airflow.providers.standard.operators.hitl.ApprovalOperator` (options *Approve* /
    *Reject*, a *comment* field; shown under *Required actions* in the UI and answered there or with
    ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/approve_promotion/-1/hitlDetails``). Its
    default is *Reject*: when ``response_timeout`` passes, the scheduler answers *Reject* with no
    responder, which is recorded as ``timed_out``. Every answer is recorded in ``registry.approvals``
    when the task resumes (a *Reject* skips the downstream promotion, so it is recorded here);
    *Approve* continues to the task that promotes.

    :param pipeline: the spec name.
    :param version: the challenger's version. (templated)
    :param champion_version: the champion the gate compared it with ('' for none). (templated)
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "version", "champion_version")
    ui_color = "#ffe8a3"

    def __init__(self, *, pipeline: str, version: str | int, champion_version: str | int | None = None,
                 approvers: Sequence[str] = (), timeout_hours: float = 20.0, **kwargs: Any) -> None:
        # the form's only field; the DAG's own params (passed in by Airflow) are filtered out by HITLOperator
        params = dict(kwargs.pop("params", None) or {})
        params["comment"] = Param("", type="string", maxLength=500, title="Comment",
                                  description="Why (goes into registry.promotion_log / registry.approvals)",
                                  source="task")
        super().__init__(
            defaults="Reject",
            params=params,
            assigned_users=[{"id": u, "name": u} for u in approvers] or None,
            response_timeout=dt.timedelta(hours=timeout_hours),
            **kwargs,
        )
        self.pipeline = pipeline
        self.version = version
        self.champion_version = champion_version

    #: the fields of the request's form
    FORM = ("comment",)

    @property
    def serialized_params(self) -> dict[str, dict[str, Any]]:
        """Only the form's own fields. At run time Airflow merges the DAG's params (date, force_promote,
        ...) into the task's; HITLOperator would show them in the form and then refuse any answer
        whose keys differ from all of them (``validate_params_input``)."""
        return {k: v for k, v in super().serialized_params.items() if k in self.FORM}

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airtrain.steps import release

        from airtrain_airflow.runtime import record_approval

        if "error" in event:  # no default applied (should not happen: the default is Reject)
            decision = {"decision": "timed_out", "responded_by": None, "comment": None}
            responded_at = None
        else:
            self.validate_chosen_options(event["chosen_options"])
            self.validate_params_input(event.get("params_input") or {})
            decision = release.decision_from_response(event["chosen_options"], event.get("responded_by_user"),
                                                      event.get("params_input"))
            responded_at = event.get("responded_at")
        record_approval(self.pipeline, run_id=context["run_id"], version=int(self.version),
                        champion_version=int(self.champion_version) if str(self.champion_version or "").isdigit()
                        else None, decision=decision, responded_at=responded_at)
        self.log.info("approval of %s v%s: %s", self.pipeline, self.version, decision)
        return super().execute_complete(context=context, event=event)
