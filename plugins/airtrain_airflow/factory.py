"""Builds each pipeline's DAGs from its spec. Wiring only: every task body is one call into
:mod:`airtrain_airflow.runtime`, imported inside the task so that parsing a DAG file imports
nothing heavy (pandas, scikit-learn, GX, Evidently) and does no I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, dag, task
from airtrain.spec import FilesSource, PipelineSpec

from airtrain_airflow.assets import monitor_schedule, predictions_asset
from airtrain_airflow.cards import ModelCardLink
from airtrain_airflow.notify import PipelineFailureNotifier
from airtrain_airflow.operators.drift import DriftCheckOperator
from airtrain_airflow.operators.landing import LandingFileSensor
from airtrain_airflow.operators.predictions import BatchPredictionOperator, PublishPredictionsOperator
from airtrain_airflow.operators.validation import ValidateOperator

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def default_args(spec: PipelineSpec) -> dict[str, Any]:
    s = spec.schedule
    return {
        "owner": spec.owner,
        "retries": s.retries,
        "retry_delay": dt.timedelta(minutes=s.retry_delay_minutes),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(minutes=max(s.retry_delay_minutes * 8, 10)),
        "execution_timeout": dt.timedelta(hours=2),
        # a task that failed for good alerts with its error and log link (the DAG-level callback
        # only covers runs that failed without a failed task)
        "on_failure_callback": PipelineFailureNotifier(spec.name, scope="task"),
    }


def dag_dates(spec: PipelineSpec) -> dict[str, Any]:
    """``start_date`` and ``end_date`` of the pipeline's DAGs, in its timezone: no scheduled run processes a
    day outside ``schedule.first_date``..``schedule.last_date`` (a run processes the day before its logical
    date, so the DAGs start the day after ``first_date`` and end with the day after ``last_date``)."""
    s = spec.schedule
    start, end = s.dag_start(), s.dag_end()
    out: dict[str, Any] = {"start_date": pendulum.datetime(start.year, start.month, start.day, tz=s.timezone)}
    if end is not None:
        out["end_date"] = pendulum.datetime(end.year, end.month, end.day, 23, 59, 59, tz=s.timezone)
    return out


def _date_param(title: str, description: str) -> Param:
    """An optional YYYY-MM-DD param (the pattern refuses anything else before a task runs)."""
    return Param(None, type=["null", "string"], pattern=DATE_PATTERN, title=title, description=description)


def _flag(title: str, description: str) -> Param:
    """An optional on/off param. Airflow's trigger form marks a param "required" when its schema's type
    does not allow null (the UI's rule: ``type`` set and not containing ``"null"``), so a boolean is
    typed ``["null", "boolean"]``: the box shows unticked, not required, and unset means off."""
    return Param(False, type=["null", "boolean"], title=title, description=description)


def retrain_params() -> dict[str, Param]:
    return {
        "date": _date_param("Partition date", "Process this date (YYYY-MM-DD) instead of the day before the "
                            "run's logical date."),
        "end_date": _date_param("End date (range)", "With 'date', ingest and validate every day from 'date' to "
                                "'end_date' (inclusive, at most 366 days), then train as of 'end_date'."),
        "force_promote": _flag(
            "Force promotion", "Promote the new model even if the promotion gate fails. Requires 'reason'.",
        ),
        "rollback_version": Param(
            None, type=["null", "integer"], minimum=1, title="Roll back to version",
            description="Make this existing model version the champion again (no training). "
            "Requires 'reason'.",
        ),
        "canary_action": Param(
            None, type=["null", "string"], enum=[None, "graduate", "abort"], title="Canary: graduate or abort",
            description="rollout.strategy canary: decide the running canary now (no training): 'graduate' makes "
            "the candidate the champion for every entity, 'abort' retires it. Requires 'reason'.",
        ),
        "promotion_hold": Param(
            None, type=["null", "string"], enum=[None, "hold", "release"], title="Hold automatic promotions",
            description="'hold': from now on a challenger that passes the gate is recorded as held and not promoted "
            "(force_promote and rollback_version still work) until a run with 'release'. No training. Requires "
            "'reason'.",
        ),
        "reason": Param(
            None, type=["null", "string"], maxLength=500, title="Reason",
            description="Why (recorded in the promotion log / registry.rollouts / registry.promotion_holds). "
            "Required with force_promote, rollback_version, canary_action or promotion_hold.",
        ),
        "dry_run": _flag(
            "Dry run", "Ingest, validate, train and evaluate, but promote nothing and write no predictions.",
        ),
        "trigger_reason": Param(
            "schedule", type="string", maxLength=300, title="Trigger reason",
            description="Why this run started (set by the drift monitor when it triggers a retrain). "
            "Anything but 'schedule' also trains when training.cadence is on_trigger.",
        ),
        "force_train": _flag(
            "Train now", "Train a challenger even when the spec's training.cadence is on_trigger.",
        ),
        "drift_report_id": Param(
            None, type=["null", "string"], maxLength=100, pattern=r"^[A-Za-z0-9_.-]*$", title="Drift report",
            description="Set by the drift monitor: the report that triggered this retrain.",
        ),
    }


def monitor_params() -> dict[str, Param]:
    return {"date": _date_param("Window end", "Last day of the monitoring window (YYYY-MM-DD) instead of the day "
                                "before the run's logical date.")}


def _doc(spec: PipelineSpec, kind: str) -> str:
    feats = ", ".join(f"`{f.name}`" for f in spec.features)
    return f"""
### {spec.name} — {kind}

{spec.description}

* **Owner:** {spec.owner} · **Spec:** `include/pipelines/{spec.name}.yaml`
* **Source:** `{spec.source.kind}` · **Entity:** `{spec.entity_key}` · **Target:** `{spec.target.name}`
  ({spec.target.task}, labels after {spec.target.label_delay_days} days)
* **Features:** {feats}
* **Estimator:** `{spec.training.estimator}` · **Primary metric:** `{spec.evaluation.primary_metric}`
* **Tables:** `{'.'.join(spec.table('raw'))}` → `{'.'.join(spec.table('features'))}`
  (rejected rows: `{'.'.join(spec.table('quarantine'))}`) → predictions in
  `{'.'.join(spec.table('predictions'))}` and the view `{'.'.join(spec.table('predictions_latest'))}`.

Manual runs: trigger with parameters (date / range, force promotion with a reason, rollback to a
version - which rejects the version rolled back from -, hold or release automatic promotions, dry run).
See docs/RELEASING.md → "Manual runs".
"""


def build_retrain_dag(spec: PipelineSpec) -> DAG:
    """``<name>_retrain``: ingest → validate → train → evaluate → promote (or roll back)."""
    name = spec.name

    @dag(
        dag_id=spec.retrain_dag_id,
        schedule=spec.schedule.retrain,  # None: a history-only pipeline (manual runs only)
        start_date=dag_dates(spec)["start_date"],  # no scheduled run for a day outside first_date..last_date
        end_date=dag_dates(spec).get("end_date"),
        catchup=False,
        is_paused_upon_creation=spec.schedule.start_paused,
        max_active_runs=spec.schedule.max_active_runs,
        default_args=default_args(spec),
        params=retrain_params(),
        tags=["airtrain", "retrain", *spec.tags],
        doc_md=_doc(spec, "retraining"),
        description=f"Retrain, evaluate and promote the {name} model",
        render_template_as_native_obj=False,
        on_failure_callback=PipelineFailureNotifier(name),
    )
    def retrain() -> None:
        @task(multiple_outputs=False)
        def check_params() -> dict[str, Any]:
            """Refuse bad parameter combinations before any work is done."""
            from airtrain_airflow import runtime

            return runtime.check_params(name)

        @task.branch
        def route(plan: dict[str, Any]) -> str:
            if plan.get("skip"):  # every date outside schedule.first_date..last_date: nothing to do, say why
                import logging

                from airflow.sdk import get_current_context

                logging.getLogger("airtrain_airflow").warning("skipping the whole run: %s", plan["skip"])
                ti = get_current_context()["ti"]
                ti.task.skip(ti, tasks=ti.task.get_flat_relatives(upstream=False))  # every task after this one
            return {"rollback": "rollback", "canary": "decide_canary", "hold": "promotion_hold"}.get(plan["mode"],
                                                                                                     "prepare")

        @task(multiple_outputs=False)
        def rollback(plan: dict[str, Any]) -> dict[str, Any]:
            from airtrain_airflow import runtime

            return runtime.rollback(name, plan)

        @task(multiple_outputs=False)
        def prepare(plan: dict[str, Any]) -> dict[str, Any]:
            """Verify the warehouse schema was migrated at deploy time (``airtrain migrate``)."""
            from airtrain_airflow import runtime

            return runtime.prepare(name, plan)

        @task(multiple_outputs=False)
        def ingest(plan: dict[str, Any]) -> list[dict[str, Any]]:
            from airtrain_airflow import runtime

            return runtime.ingest(name, plan)

        @task(multiple_outputs=False)
        def train(plan: dict[str, Any], validated: list[dict[str, Any]]) -> dict[str, Any]:
            from airtrain_airflow import runtime

            return runtime.train(name, plan)

        @task(multiple_outputs=False)
        def evaluate(plan: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
            from airtrain_airflow import runtime

            return runtime.evaluate(name, plan, trained)

        @task(multiple_outputs=False)
        def promote(plan: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
            from airtrain_airflow import runtime

            return runtime.promote(name, plan, evaluation)

        @task(trigger_rule=TriggerRule.NONE_FAILED, multiple_outputs=False)
        def begin_scoring(plan: dict[str, Any]) -> dict[str, Any]:
            """Create the stage table for today's champion predictions (after promotion, if any)."""
            from airtrain_airflow import runtime

            return runtime.begin_scoring(name, plan)

        plan = check_params()
        branch = route(plan)
        prepared = prepare(plan)
        ingested = ingest(plan)
        if isinstance(spec.source, FilesSource):
            # a landing file that may still arrive is waited for (deferred), one that cannot fails at once
            prepared >> LandingFileSensor(task_id="wait_for_landing", pipeline=name, plan=plan) >> ingested
        else:
            prepared >> ingested
        validate = ValidateOperator(task_id="validate", pipeline=name, plan=plan)
        ingested >> validate
        trained = train(plan, validate.output)
        evaluated = evaluate(plan, trained)
        evaluated.operator.operator_extra_links = (ModelCardLink(),)  # the evaluated version's model card
        promoted = promote(plan, evaluated)
        rolled_back = rollback(plan)
        branch >> [rolled_back, prepared]

        @task(multiple_outputs=False)
        def promotion_hold(plan: dict[str, Any]) -> dict[str, Any]:
            """promotion_hold: hold or release automatic promotions (a person's decision, with a reason)."""
            from airtrain_airflow import runtime

            return runtime.promotion_hold(name, plan)

        branch >> promotion_hold(plan)
        manual = [rolled_back]
        if spec.rollout.strategy == "canary":

            @task(multiple_outputs=False)
            def decide_canary(plan: dict[str, Any]) -> dict[str, Any]:
                """canary_action: graduate or abort the running canary (a person's decision, with a reason)."""
                from airtrain_airflow import runtime

                return runtime.decide_canary(name, plan)

            decided = decide_canary(plan)
            branch >> decided
            manual.append(decided)

        if spec.promotion.approval == "required":
            _approval_branch(spec, plan, evaluated, promoted)

        # Predictions for the run's date with the champion (after promotion or rollback), scored in
        # parallel shards of the entity space and published in one swap.
        target = begin_scoring(plan)
        [promoted, *manual] >> target
        # how many: decided by begin_scoring from the date's rows (scoring.rows_per_shard, at most
        # scoring.max_shards) or scoring.partitions; the shards are mapped at run time

        @task(multiple_outputs=False)
        def plan_shards(target: dict[str, Any]) -> list[int]:
            """The shard ids of the date (a list to map over: Airflow maps over return values only)."""
            return list(range(int(target.get("shards") or 1)))

        scored = BatchPredictionOperator.partial(
            task_id="score", pipeline=name, target=target, shards=spec.scoring.partitions,
        ).expand(shard=plan_shards(target))
        published = PublishPredictionsOperator(
            task_id="publish_predictions", pipeline=name, target=target, shard_results=scored.output,
            outlets=[predictions_asset(spec)],  # the event (date, version) schedules <name>_monitor
        )
        if spec.scoring.shadow:
            # the run's OWN challenger (not "the newest non-champion"): one shadow version per date, and
            # none when this run trained nothing or promoted its challenger
            shadow = BatchPredictionOperator(
                task_id="score_shadow", pipeline=name, role="shadow", skip_if_no_model=True,
                model="{{ (ti.xcom_pull(task_ids='train') or {}).get('version', '') }}",
                as_of="{{ ti.xcom_pull(task_ids='begin_scoring')['as_of'] }}",
            )
            published >> shadow

    return retrain()


def _approval_branch(spec: PipelineSpec, plan: Any, evaluated: Any, promoted: Any) -> None:
    """promotion.approval: required - a challenger that passed the gate waits for a person at
    ``approve_promotion`` (Airflow HITL); approve → ``promote_approved``. Scoring does not depend on
    this branch: the day is scored by the champion while the request waits."""
    from airtrain_airflow.operators.approval import PromotionApprovalOperator

    name = spec.name
    xcom = "ti.xcom_pull(task_ids='promote')"

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def approval_needed(promotion: dict[str, Any]) -> bool:
        """Ask only when the gate passed (not on a failed gate, a forced promotion or a dry run)."""
        return bool(promotion.get("awaiting_approval"))

    approve = PromotionApprovalOperator(
        task_id="approve_promotion", pipeline=name,
        subject=f"Promote {name} v{{{{ {xcom}['version'] }}}} to champion?",
        body="{{ " + xcom + "['approval_body'] }}",
        version="{{ " + xcom + "['version'] }}",
        champion_version="{{ " + xcom + "['champion_version'] or '' }}",
        approvers=spec.promotion.approvers, timeout_hours=spec.promotion.approval_timeout_hours,
    )

    @task(multiple_outputs=False)
    def promote_approved(plan: dict[str, Any], evaluation: dict[str, Any], promotion: dict[str, Any],
                         approval: dict[str, Any]) -> dict[str, Any]:
        from airtrain_airflow import runtime

        return runtime.promote_approved(name, plan, evaluation, promotion, approval)

    @task(multiple_outputs=False, outlets=[predictions_asset(spec)])
    def score_approved(plan: dict[str, Any], approved: dict[str, Any]) -> dict[str, Any] | None:
        """The first model waited for approval, so nobody scored the date: score it now (skipped when the
        champion of the time scored it). Its asset event names the date, like publish_predictions'."""
        from airflow.sdk import get_current_context

        from airtrain_airflow import runtime
        from airtrain_airflow.assets import predictions_event_extra

        published = runtime.score_approved(name, plan, approved)
        ctx = get_current_context()
        ctx["outlet_events"][predictions_asset(spec)].extra = predictions_event_extra(spec, published, ctx["run_id"])
        return published

    approval_needed(promoted) >> approve
    score_approved(plan, promote_approved(plan, evaluated, promoted, approve.output))


def build_monitor_dag(spec: PipelineSpec) -> DAG:
    """``<name>_monitor``: drift check → (retrain due?) → trigger ``<name>_retrain`` → alert."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    name = spec.name
    t = spec.monitoring.trigger
    doc = _doc(spec, "drift monitoring") + f"""
**Monitoring:** window {spec.monitoring.window_days} day(s), at least {spec.monitoring.min_rows} rows, sampled to
{spec.monitoring.sample_rows}. Retrain when drift share ≥ {t.drift_share}, critical features
{t.critical_features or 'none'}, prediction drift {'on' if t.prediction_drift else 'off'}, performance drop ≥
{t.performance_drop_abs}, estimated drop (before labels) ≥ {t.estimated_drop_abs}; feature drift: {t.feature_drift};
persistence {t.persistence} window(s), cooldown {t.cooldown_days} days. Fairness alerts
(`fairness.monitor`): {', '.join(f"{r.metric} of {r.attribute or 'each attribute'} > {r.threshold}"
                               for r in (spec.fairness.monitor if spec.fairness else [])) or 'none'}. Results:
`{spec.warehouse.monitoring_schema}.drift_metrics`, `{spec.warehouse.monitoring_schema}.drift_decisions` and the
**Drift report** link of `drift_check` (all reports: menu *Browse → Drift reports*).
"""
    xcom = "ti.xcom_pull(task_ids='drift_check')"

    @dag(
        dag_id=spec.monitor_dag_id,
        schedule=monitor_schedule(spec),  # after each publish (and optionally on schedule.monitor)
        start_date=dag_dates(spec)["start_date"],  # no end: it follows the publishes, also of backfills run later
        catchup=False,
        is_paused_upon_creation=spec.schedule.start_paused,
        max_active_runs=1,  # windows are decided in order: persistence and cooldown read earlier ones
        default_args=default_args(spec),
        params=monitor_params(),
        tags=["airtrain", "monitor", *spec.tags],
        doc_md=doc,
        description=f"Drift and performance monitoring of the {name} model; triggers retraining",
        on_failure_callback=PipelineFailureNotifier(name),
    )
    def monitor() -> None:
        check = DriftCheckOperator(task_id="drift_check", pipeline=name, window_end="{{ params.date or '' }}")

        @task.short_circuit(ignore_downstream_trigger_rules=False)
        def retrain_due(decision: dict[str, Any]) -> bool:
            """Continue to the trigger only when the decision is 'retrain'."""
            return bool(decision.get("trigger"))

        trigger_retrain = TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=spec.retrain_dag_id,
            # one retrain per window: a second firing for the same window finds the run and skips
            trigger_run_id="{{ " + xcom + "['retrain_run_id'] }}",
            # no logical date (like a manual run): with "now" as its logical date, a retrain DAG whose
            # schedule.start_date is later got no task instance and "succeeded" at once (found by the soak)
            logical_date=None,
            conf={
                "date": "{{ " + xcom + "['window_end'] }}",
                "trigger_reason": "drift: {{ " + xcom + "['reason'][:280] }}",
                "drift_report_id": "{{ " + xcom + "['report_id'] or '' }}",
                "force_train": True,
            },
            skip_when_already_exists=True,
            wait_for_completion=False,
            openlineage_inject_parent_info=False,
        )

        @task(trigger_rule=TriggerRule.ALL_DONE)
        def notify(decision: dict[str, Any]) -> list[str]:
            """Record the retrain run on the window once Airflow has it (or that the trigger failed),
            then alert (logged always; Slack/e-mail/webhook per the spec); also a disparity past a
            ``fairness.monitor`` threshold."""
            from airtrain_airflow import runtime

            return (runtime.record_trigger(name, decision) + runtime.drift_alerts(name, decision)
                    + runtime.fairness_alerts(name, decision))

        due = retrain_due(check.output)
        due >> trigger_retrain >> notify(check.output)

        if spec.rollout.strategy == "canary":

            @task(multiple_outputs=False)
            def canary_check() -> dict[str, Any]:
                """Beside the drift check: the running canary's realized metric per arm on the labels known
                now → graduate / abort (alerted) / wait (monitoring.canary_evaluations)."""
                from airtrain_airflow import runtime

                return runtime.canary_check(name)

            canary_check()

    return monitor()


def pipeline_dags(name: str) -> dict[str, DAG]:
    """Both DAGs of the spec ``<spec folder>/<name>.yaml``, by DAG id: what the spec's generated DAG
    file (:mod:`airtrain_airflow.bundle`) puts in its globals. A spec that does not load raises its
    :class:`airtrain.spec.SpecError` (file, key, fix): that file's import error, no one else's."""
    from airtrain.spec import load_spec, spec_dir

    spec = load_spec(spec_dir() / f"{name}.yaml")
    return {spec.retrain_dag_id: build_retrain_dag(spec), spec.monitor_dag_id: build_monitor_dag(spec)}
