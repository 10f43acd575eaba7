"""Release options (issue 12), pure parts: the monitor's window from asset events, the approval
decision from a HITL response, the request body, and the spec checks."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml
from airtrain.monitoring import windows
from airtrain.registry import approvals
from airtrain.spec import SpecError, parse_spec

from tests.unit.test_spec import GOOD


def _spec(**promotion):
    data = copy.deepcopy(GOOD)
    data["promotion"] = {**data["promotion"], **promotion}
    return data


def test_every_published_date_of_this_pipeline_is_a_window_oldest_first_once():
    extras = [{"pipeline": "churn", "date": "2026-03-02"}, {"pipeline": "other", "date": "2026-03-09"},
              {"pipeline": "churn", "date": "2026-03-04"}, {"pipeline": "churn", "date": "2026-03-03"},
              {"pipeline": "churn", "date": "2026-03-02"}]  # a date published twice (a re-run) is checked once
    assert windows.dates_from_events("churn", extras) == [dt.date(2026, 3, 2), dt.date(2026, 3, 3),
                                                          dt.date(2026, 3, 4)]


@pytest.mark.parametrize("extras", [[], [{"pipeline": "other", "date": "2026-03-09"}], [{"pipeline": "churn"}],
                                    [{"pipeline": "churn", "date": "yesterday"}], [None]],
                         ids=["none", "other-pipeline", "no-date", "bad-date", "no-extra"])
def test_events_without_a_published_date_fail_closed(extras):
    with pytest.raises(windows.NoPublishedDateError, match="trigger it again with a 'date'"):
        windows.dates_from_events("churn", extras)


@pytest.mark.parametrize(("chosen", "by", "params", "expected"), [
    pytest.param(["Approve"], {"id": "bob", "name": "bob"}, {"comment": " ok "},
                 {"decision": "approved", "responded_by": "bob", "comment": "ok"}, id="approved"),
    pytest.param(["Reject"], {"id": "c1", "name": "carol"}, {"comment": ""},
                 {"decision": "rejected", "responded_by": "carol", "comment": None}, id="rejected"),
    pytest.param(["Reject"], None, {"comment": ""},
                 {"decision": "timed_out", "responded_by": None, "comment": None}, id="timeout-default"),
])
def test_decision_from_a_hitl_response(chosen, by, params, expected):
    assert approvals.decision_from_response(chosen, by, params) == expected


def test_the_request_body_compares_every_metric_and_lists_the_checks():
    spec = parse_spec(copy.deepcopy(GOOD))
    metrics = spec.evaluation.metrics
    evaluation = {"version": 3, "champion_version": 2, "challenger": {m: 0.8 for m in metrics},
                  "challenger_compared": {m: 0.81 for m in metrics}, "champion": {m: 0.79 for m in metrics},
                  "comparison": {"compared": ["2026-03-01", "2026-03-07"], "rows": 700}}
    body = approvals.approval_body(spec, evaluation, {"passed": True, "checks": [{"message": "roc_auc ok | <b>"}]},
                                 [{"slice": "region=south", "challenger": 0.7, "champion": 0.75, "n_rows": 90}],
                                 {"Validation report 2026-03-07": "/airtrain/reports/churn/validation/2026-03-07"})
    assert "promote challenger **v3** over champion **v2**" in body
    assert "2026-03-01 … 2026-03-07 (700 labeled rows" in body
    assert f"| {spec.evaluation.primary_metric} (primary) | 0.8100 | 0.7900 | +0.0200 (better) |" in body
    assert "- roc_auc ok / ‹b>" in body  # a table-breaking pipe and markup are neutralised
    assert "| region=south | 0.7000 | 0.7500 | 90 |" in body and "**Gate: passed**" in body


def test_approval_keys_are_checked():
    assert parse_spec(_spec()).promotion.approval == "none"
    with pytest.raises(SpecError, match="approvers is only used with promotion.approval: required"):
        parse_spec(_spec(approvers=["bob"]))
    with pytest.raises(SpecError, match="Set schedule.max_active_runs to 2 or more"):
        parse_spec(_spec(approval="required"))
    data = _spec(approval="required", approvers=["bob"], approval_timeout_hours=2)
    data["schedule"] = {**data.get("schedule", {}), "max_active_runs": 2}
    ok = parse_spec(yaml.safe_load(yaml.safe_dump(data)))
    assert (ok.promotion.approval, ok.promotion.approvers) == ("required", ["bob"])
