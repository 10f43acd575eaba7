"""`make new-pipeline`: a starting spec profiled from a sample file."""

from __future__ import annotations

from pathlib import Path

import pytest
from airtrain.scaffold import build_spec, main, read_sample, snake_case
from airtrain.spec import parse_spec


@pytest.mark.parametrize("header, name", [
    ("customerID", "customer_id"), ("MonthlyCharges", "monthly_charges"), ("Total Charges", "total_charges"),
    ("SeniorCitizen", "senior_citizen"), ("StreamingTV", "streaming_tv"), ("tenure", "tenure"),
    ("2nd line", "c_2nd_line"), ("order", "order_"), ("  Amount (EUR) ", "amount_eur"), ("é", "col"),
])
def test_snake_case(header, name):
    assert snake_case(header) == name


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "sample.csv"
    f.write_text(text)
    return f


def test_a_regression_sample_with_a_date_column(tmp_path):
    rows = ["OrderId,Date,Region,Units,Price"]
    for d in ("2026-01-01", "2026-01-02"):
        rows += [f"{d[-1]}{i},{d},{'north' if i % 2 else 'south'},{i % 7},{10 + i * 0.5}" for i in range(50)]
    cols = read_sample(write(tmp_path, "\n".join(rows) + "\n"))
    text, data = build_spec(cols, name="sales", target="Price", key=None, date_column=None, positive=None,
                            sample=tmp_path / "sample.csv")
    spec = parse_spec(data)
    assert spec.target.task == "regression" and spec.evaluation.primary_metric == "rmse"
    assert (spec.entity_key, spec.entity_key_source) == ("order_id", "OrderId")
    assert (spec.date_column, spec.date_column_source) == ("date", "Date")
    assert [f.name for f in spec.features] == ["region", "units"]
    assert spec.validation.row_count.max == 150  # 50 rows a day in the sample, x3
    assert "# seen 0..6" in text
    # the gate tolerates no worse rmse (the primary metric); the realized-performance trigger is in the
    # target's own units: a tenth of the prices' spread in the sample (sd of 10 + 0.5 i, i < 50: 7.25)
    assert [(g.metric, g.threshold, g.max_regression_abs, g.max_regression_rel) for g in spec.promotion.gates] == [
        ("r2", 0.0, None, None)]
    assert spec.monitoring.trigger.performance_drop_abs == pytest.approx(0.725, abs=0.001)


def test_a_classification_scaffold_sets_no_tolerance_on_its_primary_metric(tmp_path):
    rows = ["id,plan,churned"] + [f"{i},{'a' if i % 3 else 'b'},{'Yes' if i % 4 == 0 else 'No'}" for i in range(60)]
    cols = read_sample(write(tmp_path, "\n".join(rows) + "\n"))
    _, data = build_spec(cols, name="c", target="churned", key="id", date_column=None, positive="Yes",
                         sample=tmp_path / "sample.csv")
    spec = parse_spec(data)
    primary = [g for g in spec.promotion.gates if g.metric == spec.evaluation.primary_metric]
    assert primary and all(g.max_regression_abs is None and g.max_regression_rel is None for g in primary)
    assert spec.monitoring.trigger.performance_drop_abs == 0.05  # AUC is scale-free: the default holds


@pytest.mark.parametrize("text, args, message", [
    pytest.param("id,x,y\n1,a,Yes\n2,b,No\n", ["--target", "z"], "no column 'z'", id="unknown-target"),
    pytest.param("k,x,y\n1,a,Yes\n1,b,No\n", ["--target", "y"], "name it with --key", id="no-key-column"),
    pytest.param("id,x,y\n1,a,red\n2,b,green\n3,c,blue\n", ["--target", "y"], "two values", id="three-labels"),
])
def test_refusals_say_what_to_do(tmp_path, capsys, text, args, message):
    with pytest.raises(SystemExit, match=message):
        main([str(write(tmp_path, text)), "--name", "x", "--out", str(tmp_path / "x.yaml"), *args])


# --- issue 20, item 13: dates in any common form, rows per day, leaks -------------------------------


def bike_sample(tmp_path: Path, days: int = 10, date_form: str = "%d-%m-%Y", hourly_stamp: bool = False) -> Path:
    """Hourly bike rentals like the public bike-sharing file: ``cnt = casual + registered``."""
    import datetime as dt
    import random

    rng = random.Random(7)
    rows = ["instant,dteday,season,weathersit,hr,temp,hum,casual,registered,cnt"]
    n = 0
    for d in range(days):
        day = dt.date(2011, 1, 1) + dt.timedelta(days=d)
        for hr in range(24):
            n += 1
            casual, registered = rng.randint(0, 60), rng.randint(5, 400)
            when = f"{day} {hr:02d}:00:00" if hourly_stamp else day.strftime(date_form)
            rows.append(f"{n},{when},{1 + d // 4},{rng.choice(['clear', 'mist', 'rain'])},{hr},"
                        f"{rng.uniform(0, 1):.3f},{rng.uniform(0.2, 1):.3f},{casual},{registered},{casual + registered}")
    f = tmp_path / "hour.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


@pytest.mark.parametrize("form, stamp, expected", [
    pytest.param("%d-%m-%Y", False, "%d-%m-%Y", id="day-first"),
    pytest.param("%m/%d/%Y", False, "%m/%d/%Y", id="us"),
    pytest.param(None, True, "%Y-%m-%d %H:%M:%S", id="hourly-timestamps"),
])
def test_an_hourly_regression_sample_gets_its_dates_rows_per_day_and_leaks(tmp_path, form, stamp, expected):
    sample = bike_sample(tmp_path, date_form=form or "%Y-%m-%d", hourly_stamp=stamp)
    warnings: list[str] = []
    text, data = build_spec(read_sample(sample), name="bikes", target="cnt", key="instant", date_column=None,
                            positive=None, sample=sample, warnings=warnings)
    spec = parse_spec(data)
    assert (spec.date_column, spec.date_format) == ("dteday", expected)
    # 24 rows a day over 10 days (not one day of 240 rows)
    assert "240 rows over 10 days, 2011-01-01..2011-01-10; 24..24 rows a day, median 24" in text
    assert (spec.validation.row_count.min, spec.validation.row_count.max) == (12, 72)
    assert spec.monitoring.window_days == 13 and spec.monitoring.min_rows <= 24 * 13
    assert spec.monitoring.min_rows <= spec.validation.row_count.min * 2 * spec.monitoring.window_days
    # the parts of the target are kept and validated but never given to the model, and said so
    inputs = {f.name: f.model_input for f in spec.features}
    assert inputs == {"season": True, "weathersit": True, "hr": True, "temp": True, "hum": True, "casual": False,
                      "registered": False}, inputs
    assert "# LEAK? a part of the target: casual + registered = cnt on 100% of the sample's rows" in text
    assert sum("looks like a leak of the target" in w for w in warnings) == 2, warnings
    assert "# first_date: 2011-01-01" in text


def test_the_spec_written_for_a_sample_reads_its_dates_as_validation_does(tmp_path):
    """The generated spec's date_format is what validation casts the date column with (the GX run itself
    is tests/unit/test_validation.py::test_a_declared_date_format_reads_the_date_column)."""
    import datetime as dt

    import pandas as pd
    from airtrain.data.validation import _cast

    sample = bike_sample(tmp_path, days=3)
    _, data = build_spec(read_sample(sample), name="bikes", target="cnt", key="instant", date_column=None,
                         positive=None, sample=sample)
    spec = parse_spec(data)
    days, bad = _cast(pd.read_csv(sample, dtype=str)["dteday"], "date", date_format=spec.date_format)
    assert not bad.any() and sorted(set(days)) == [dt.date(2011, 1, d) for d in (1, 2, 3)]


def test_a_classification_sample_marks_columns_that_give_the_label_away(tmp_path):
    import random

    rng = random.Random(3)
    rows = ["customerID,Date,Plan,Tenure,Cancelled,AccountStatus,Churn"]
    for i in range(300):
        churn = rng.random() < 0.3
        rows.append(f"C{i},2026-03-{1 + i // 50:02d},{rng.choice(['basic', 'pro'])},{rng.randint(0, 60)},"
                    f"{'yes' if churn else 'no'},{'closed' if churn else rng.choice(['open', 'active'])},"
                    f"{'Yes' if churn else 'No'}")
    f = write(tmp_path, "\n".join(rows) + "\n")
    warnings: list[str] = []
    text, data = build_spec(read_sample(f), name="telco", target="Churn", key=None, date_column=None, positive=None,
                            sample=f, warnings=warnings)
    spec = parse_spec(data)
    assert {f.name: f.model_input for f in spec.features} == {
        "plan": True, "tenure": True, "cancelled": False, "account_status": False}
    assert "alone predicts the target almost perfectly (ROC AUC 1.000)" in text
    assert "its value alone gives the target on 100.0% of rows" in text
    assert spec.evaluation.slices == ["plan"]  # a leak is no slice
    assert spec.date_format is None and "50..50 rows a day" in text


def test_a_sample_without_dates_is_said_to_be_taken_as_one_day(tmp_path, capsys):
    f = write(tmp_path, "id,x,y\n" + "".join(f"{i},{i % 5},{'Yes' if i % 3 else 'No'}\n" for i in range(1, 61)))
    assert main([str(f), "--name", "one", "--target", "y", "--out", str(tmp_path / "one.yaml")]) == 0
    err = capsys.readouterr().err
    assert "the sample has no date column, so it is taken as ONE day (60 rows)" in err
    assert "# WARNING: the sample has no date column" in (tmp_path / "one.yaml").read_text()


def test_a_declared_date_format_is_used_and_checked(tmp_path):
    f = write(tmp_path, "id,day,x,y\n" + "".join(f"{i},0{1 + i % 3}.02.2026,{i % 5},{i % 2}\n" for i in range(1, 61)))
    _, data = build_spec(read_sample(f), name="d", target="y", key="id", date_column="day", positive=None,
                         sample=f, date_format="%d.%m.%Y")
    assert parse_spec(data).date_format == "%d.%m.%Y"
    with pytest.raises(SystemExit, match="not a date in the form '%m-%d-%Y'"):
        build_spec(read_sample(f), name="d", target="y", key="id", date_column="day", positive=None, sample=f,
                   date_format="%m-%d-%Y")


def test_a_column_that_follows_a_numeric_target_is_marked(tmp_path):
    """Near-perfect correlation with a regression target (here the target in other units)."""
    rows = ["id,day,temp,revenue_cents,revenue"]
    for i in range(120):
        revenue = 100 + (i * 37) % 250
        rows.append(f"{i},2026-02-{1 + i // 20:02d},{(i * 13) % 30},{revenue * 100 + (i % 3)},{revenue}")
    f = write(tmp_path, "\n".join(rows) + "\n")
    text, data = build_spec(read_sample(f), name="shop", target="revenue", key="id", date_column=None,
                            positive=None, sample=f)
    assert {x["name"]: x.get("model_input", True) for x in data["features"]} == {"temp": True,
                                                                                 "revenue_cents": False}
    assert "correlates with the target almost perfectly (r = 1.000)" in text
