"""Onboarding a real-looking dataset with only a spec: a Telco-churn-style CSV (CamelCase headers,
Yes/No values and target, blank TotalCharges, the label in the same file, no date column) through
a real DAG run; and `make new-pipeline`'s scaffold on the same file."""

from __future__ import annotations

import csv
import datetime as dt
import random
from pathlib import Path

import pytest
import yaml
from airtrain.spec import load_spec
from airtrain.warehouse.connection import Warehouse

from tests.integration.dagtest import Project, fetch

pytestmark = pytest.mark.integration

START = dt.date(2026, 3, 2)
DAYS = 4
ROWS = 120
HEADER = ["customerID", "gender", "SeniorCitizen", "Partner", "tenure", "Contract", "PaymentMethod",
          "MonthlyCharges", "TotalCharges", "Churn"]
CONTRACTS = ["Month-to-month", "One year", "Two year"]
PAYMENTS = ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"]
BAD_DAY = START + dt.timedelta(days=1)  # carries two rows that must be quarantined

SPEC = """\
# written by a user from docs/SPEC.md only: headers as they are, Yes/No as they are
name: telco
source: {kind: files, path: data/landing/telco, format: csv, pattern: "{date}.csv"}
entity_key: customer_id
entity_key_source: customerID
entity_key_type: text
features:
  - {name: gender, type: category, allowed: [Female, Male]}
  - {name: senior_citizen, source: SeniorCitizen, type: bool}
  - {name: partner, source: Partner, type: bool}
  - {name: tenure, type: int, min: 0, max: 72}
  - {name: contract, source: Contract, type: category, allowed: [Month-to-month, One year, Two year]}
  - name: payment_method
    source: PaymentMethod
    type: category
    allowed: [Electronic check, Mailed check, Bank transfer (automatic), Credit card (automatic)]
  - {name: monthly_charges, source: MonthlyCharges, type: float, min: 0, max: 200}
  - {name: total_charges, source: TotalCharges, type: float, min: 0, max: 20000, nullable: true}
target: {name: churn, source: Churn, positive: "Yes", negative: "No", label_delay_days: 0}
validation:
  row_count: {min: 50, max: 500}
  freshness: {max_age_days: 3650, on_fail: warn}
training:
  estimator: sklearn.ensemble.HistGradientBoostingClassifier
  params: {max_iter: 60, learning_rate: 0.1}
  window_days: 10
  holdout_days: 1
  min_rows: 200
evaluation: {metrics: [roc_auc, log_loss], primary_metric: roc_auc, slices: [contract]}
promotion: {gates: [{metric: roc_auc, threshold: 0.6}]}
monitoring: {min_rows: 50}
scoring: {partitions: 1}
schedule: {retry_delay_minutes: 0.01}
"""


def telco_day(day: dt.date, rng: random.Random, first_id: int) -> list[list[str]]:
    """Rows like the public Telco churn file: churn driven by contract, tenure and charges."""
    rows = []
    for i in range(ROWS):
        contract = rng.choices(CONTRACTS, weights=[55, 25, 20])[0]
        tenure = 0 if i % 40 == 0 else rng.randint(1, 72)
        monthly = round(rng.uniform(18.25, 118.75), 2)
        # new customers have no TotalCharges: the public file has a single space there
        total = " " if tenure == 0 else f"{monthly * tenure * rng.uniform(0.9, 1.1):.2f}"
        risk = 0.6 * (contract == "Month-to-month") + 0.3 * (tenure < 12) + 0.2 * (monthly > 80) - 0.1
        churn = "Yes" if rng.random() < max(0.03, min(0.95, risk)) else "No"
        cid = f"{first_id + i:04d}-{''.join(rng.choices('ABCDEFGHIJKLMNOPQRSTUVWXYZ', k=5))}"
        rows.append([cid, rng.choice(["Female", "Male"]), rng.choice(["0", "0", "0", "1"]), rng.choice(["Yes", "No"]),
                     str(tenure), contract, rng.choice(PAYMENTS), f"{monthly:.2f}", total, churn])
    if day == BAD_DAY:
        rows[0][-1] = "Maybe"  # not a label: quarantined
        rows[1][4] = "twelve"  # not an int: quarantined
    return rows


def write_telco(landing: Path) -> dict[dt.date, list[list[str]]]:
    rng = random.Random(7)
    landing.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(DAYS):
        d = START + dt.timedelta(days=i)
        rows = telco_day(d, rng, 1000 * (i + 1))
        with open(landing / f"{d.isoformat()}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(HEADER)
            w.writerows(rows)
        out[d] = rows
    return out


@pytest.fixture(scope="module")
def telco(tmp_path_factory, pg_server, airflow_db):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("telco")
    p = Project(root, Warehouse(pg_server.url(pg_server.create_database("telco"))), name="telco")
    p.spec_dir.mkdir(parents=True)
    (p.spec_dir / "telco.yaml").write_text(SPEC)
    rows = write_telco(p.landing)
    p.activate(mp)
    last = START + dt.timedelta(days=DAYS - 1)
    dr, states = p.run({"date": str(START), "end_date": str(last)})
    yield p, rows, dr, states
    mp.undo()


def test_a_camelcase_yes_no_label_in_file_csv_trains_and_scores_with_only_a_spec(telco):
    p, rows, dr, states = telco
    assert str(dr.state) == "success", states
    assert {states[t] for t in ("ingest", "validate", "train", "evaluate", "promote", "publish_predictions")} == {
        "success"}, states
    wh, last = p.warehouse, START + dt.timedelta(days=DAYS - 1)
    # the raw table keeps what arrived, under the warehouse names; nothing went to _extra
    raw = fetch(wh, "SELECT customer_id, churn, total_charges, count(*) OVER () FROM raw.telco_batches "
                    "WHERE _partition_date = %s ORDER BY _row_number LIMIT 1", (START,))
    assert raw[0][:2] == (rows[START][0][0], rows[START][0][-1]) and raw[0][3] == ROWS
    assert fetch(wh, "SELECT count(*) FROM raw.telco_batches WHERE _extra IS NOT NULL") == [(0,)]
    # the file has no date column: every row carries its file's date
    assert fetch(wh, "SELECT count(*) FROM raw.telco_batches WHERE as_of_date::date <> _partition_date") == [(0,)]
    # the target is a label, never a feature column
    cols = {r[0] for r in fetch(wh, "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                    "'features' AND table_name = 'telco'")}
    assert "churn" not in cols and {"monthly_charges", "total_charges", "senior_citizen"} <= cols
    # labels from the batch: Yes -> 1, No -> 0, known on the partition date
    yes = sum(r[-1] == "Yes" for d in rows for r in rows[d][2 if d == BAD_DAY else 0:])
    labels = fetch(wh, "SELECT count(*), sum(churn), count(*) FILTER (WHERE label_available_on <> as_of_date) "
                       "FROM features.telco_labels")
    assert labels == [(DAYS * ROWS - 2, yes, 0)]
    # blank / whitespace-only TotalCharges are nulls, kept (nullable) for the model to impute
    blanks = sum(r[8].strip() == "" for d in rows for r in rows[d][2 if d == BAD_DAY else 0:])
    assert blanks > 0
    assert fetch(wh, "SELECT count(*) FROM features.telco WHERE total_charges IS NULL") == [(blanks,)]
    # the two bad rows are quarantined with readable reasons; nothing else
    q = fetch(wh, "SELECT _row_number, reasons FROM quarantine.telco ORDER BY 1")
    assert [r[0] for r in q] == [1, 2]
    assert "churn: 'Maybe' is not a valid label" in q[0][1][0] and "tenure: 'twelve'" in q[1][1][0]
    # a champion trained on the labels that came with the files, and the last day scored
    assert fetch(wh, "SELECT version FROM registry.champions WHERE pipeline = 'telco'") == [(1,)]
    lineage = fetch(wh, "SELECT lineage->'window' FROM registry.model_versions")[0][0]
    assert lineage["train_rows"] == 3 * ROWS - 2 and lineage["holdout_end"] == str(last)
    assert fetch(wh, "SELECT count(*) FROM predictions.telco WHERE as_of_date = %s", (last,)) == [(ROWS,)]


def test_rerunning_a_day_with_a_corrected_file_replaces_its_labels(telco):
    from airtrain.steps import retrain

    p, rows, _, _ = telco
    spec, wh = p.spec(), p.warehouse
    fixed = [list(r) for r in rows[BAD_DAY]]
    fixed[0][-1] = "Yes"  # the 'Maybe' corrected
    fixed[5][-1] = "No" if fixed[5][-1] == "Yes" else "Yes"  # and one label changed
    with open(p.landing / f"{BAD_DAY.isoformat()}.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *fixed])
    try:
        retrain.ingest(wh, spec, [BAD_DAY], "fix", p.root)
        retrain.validate(wh, spec, [BAD_DAY], "fix", today=BAD_DAY, reports_root=p.root / "reports")
        got = dict(fetch(wh, "SELECT customer_id, churn FROM features.telco_labels WHERE as_of_date = %s", (BAD_DAY,)))
        want = {r[0]: int(r[-1] == "Yes") for i, r in enumerate(fixed) if i != 1}  # row 2 is still not an int
        assert got == want
    finally:
        with open(p.landing / f"{BAD_DAY.isoformat()}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([HEADER, *rows[BAD_DAY]])


def test_the_scaffold_writes_a_spec_that_takes_the_file_as_it_is(telco, tmp_path, pg_server):
    """`make new-pipeline` on one day's file: the spec loads, maps every header, and validating the
    other days with it quarantines nothing but the two bad rows."""
    from airtrain.scaffold import main
    from airtrain.steps import retrain

    p, _, _, _ = telco
    out = tmp_path / "pipelines" / "telco.yaml"
    assert main([str(p.landing / f"{START.isoformat()}.csv"), "--name", "telco", "--target", "Churn",
                 "--out", str(out)]) == 0
    spec = load_spec(out)
    data = yaml.safe_load(out.read_text())
    assert (spec.entity_key, spec.entity_key_source, spec.entity_key_type) == ("customer_id", "customerID", "text")
    assert (spec.target.name, spec.target.source, spec.target.positive, spec.target.negative) == (
        "churn", "Churn", ["Yes"], ["No"])
    assert spec.labels is None and spec.target.label_delay_days == 0 and spec.schedule.start_paused
    f = {x.name: x for x in spec.features}
    assert (f["monthly_charges"].source, f["monthly_charges"].type) == ("MonthlyCharges", "float")
    assert f["total_charges"].nullable and f["tenure"].type == "int" and f["senior_citizen"].type == "bool"
    assert f["partner"].type == "bool" and sorted(f["contract"].allowed) == sorted(CONTRACTS)
    assert "# seen" in out.read_text() and data["validation"]["row_count"]["max"] >= ROWS
    assert main([str(p.landing / f"{START.isoformat()}.csv"), "--name", "telco", "--target", "Churn",
                 "--out", str(out)]) == 2  # never overwrites without --force
    # the scaffolded spec validates the other days as they are (own warehouse, same files)
    from airtrain.steps.schema import apply_schema

    wh = Warehouse(pg_server.url(pg_server.create_database("telco_scaffold")))
    apply_schema(wh, spec)
    days = [START + dt.timedelta(days=i) for i in range(1, DAYS)]
    retrain.ingest(wh, spec, days, "scaffold", p.root)
    out_v = retrain.validate(wh, spec, days, "scaffold", today=days[-1], reports_root=tmp_path / "reports")
    assert [v["rows_quarantined"] for v in out_v] == [2, 0, 0], out_v
    assert [v["rows_labeled"] for v in out_v] == [ROWS - 2, ROWS, ROWS]
