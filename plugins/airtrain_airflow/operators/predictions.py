"""Batch predictions written back to the warehouse (see :mod:`airtrain.steps.serving`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context


class BatchPredictionOperator(BaseOperator):
    """Score one date of a pipeline's validated features with a registry model and write the
    predictions to ``predictions.<pipeline>`` (or the ``_shadow`` table).

    Standalone (``target`` not given) it does everything: create a stage table, score every shard,
    swap the stage table in as the date's partition in one transaction. Scaled out, a task creates
    the stage table (:func:`airtrain.steps.serving.begin_scoring`), this operator is mapped over ``shard`` with
    ``.partial(target=...).expand(shard=[...])``, and :class:`PublishPredictionsOperator` swaps it in.

    :param pipeline: the spec name (``include/pipelines/<pipeline>.yaml``).
    :param as_of: the date to score, YYYY-MM-DD. (templated)
    :param model: ``"champion"``, ``"challenger"`` or a version number. (templated)
    :param role: ``"champion"`` writes ``predictions.<pipeline>``; ``"shadow"`` writes the shadow table.
    :param target: the stage created by ``begin`` (dict); ``None`` to run standalone. (templated)
    :param shard: this task's shard of the entity space, ``0 <= shard < shards``.
    :param shards: number of shards (standalone); with ``target``, the target's own count wins (the
        shards of a date are decided once, when scoring begins, from its rows).
    :param skip_if_no_model: skip (instead of failing) when the model does not exist, e.g. shadow
        scoring on a day with no challenger.
    """

    template_fields: Sequence[str] = ("as_of", "model", "target")
    ui_color = "#d8f3dc"

    def __init__(self, *, pipeline: str, as_of: str | None = None, model: str | int = "champion",
                 role: str = "champion", target: dict[str, Any] | None = None, shard: int = 0,
                 shards: int = 1, skip_if_no_model: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.as_of = as_of
        self.model = model
        self.role = role
        self.target = target
        self.shard = shard
        self.shards = shards
        self.skip_if_no_model = skip_if_no_model

    def execute(self, context: Context) -> dict[str, Any]:
        from airtrain_airflow.runtime import fail_fast, spec_for

        with fail_fast():
            return self._score(spec_for(self.pipeline), context)

    def _score(self, spec: Any, context: Context) -> dict[str, Any]:
        import datetime as dt

        from airtrain.steps import serving

        from airtrain_airflow.runtime import warehouse_for

        wh = warehouse_for(spec)
        run_id = context["run_id"]
        if self.target is None:
            if not self.as_of:
                raise ValueError("as_of is required when the operator runs standalone")
            try:
                result = serving.score_date(wh, spec, dt.date.fromisoformat(str(self.as_of)), run_id=run_id,
                                            model=self.model, role=self.role, shards=self.shards)
            except serving.NoModelError as exc:
                if not self.skip_if_no_model:
                    raise
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(str(exc)) from exc
        else:  # a shard of the target begin_scoring made (both arms of a running canary)
            result = serving.score_shard(wh, spec, self.target, run_id=run_id, shard=self.shard, shards=self.shards)
        self.log.info("predictions: %s", result)
        return result


class PublishPredictionsOperator(BaseOperator):
    """Swap a scored stage table in as the date's prediction partition (one transaction).

    :param pipeline: the spec name.
    :param target: the stage created by ``begin_scoring`` (dict). (templated)
    :param shard_results: the mapped :class:`BatchPredictionOperator` results; their row counts must
        add up to the stage table's, or nothing is published. (templated)
    """

    template_fields: Sequence[str] = ("target", "shard_results")
    ui_color = "#95d5b2"

    def __init__(self, *, pipeline: str, target: Any, shard_results: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.target = target
        self.shard_results = shard_results

    def execute(self, context: Context) -> dict[str, Any]:
        from airtrain.steps import serving

        from airtrain_airflow.runtime import fail_fast, spec_for, warehouse_for

        with fail_fast():
            spec = spec_for(self.pipeline)
            result = serving.publish_predictions(warehouse_for(spec), spec, self.target, self.shard_results,
                                                 run_id=context["run_id"])
        self.log.info("published %s", result)
        self._announce(spec, result, context)
        return result

    def _announce(self, spec: Any, result: dict[str, Any], context: Context) -> None:
        """Put the published date and version into the predictions asset event (emitted by Airflow when
        this task succeeds, when the asset is one of the task's ``outlets``)."""
        from airtrain_airflow.assets import predictions_asset, predictions_event_extra

        asset = predictions_asset(spec)
        if any(getattr(o, "name", None) == asset.name for o in self.outlets or []):
            context["outlet_events"][asset].extra = predictions_event_extra(spec, result, context["run_id"])
