"""``airtrain replay`` (``make replay``): re-decide the monitor over stored history with other
thresholds or trigger rules, without touching live tables (one READ ONLY transaction).

    airtrain replay churn --set monitoring.trigger.estimated_drop_abs=0.03 --set monitoring.trigger.feature_drift=alert
    airtrain replay churn --spec /tmp/churn-tuned.yaml --from 2026-03-01 --to 2026-03-31

Prints, per checked window: what was decided and what these settings would decide (``*`` where they
differ), whether they would start a retrain, the drift share, the champion's estimated primary metric
with its band, and the realized one where labels exist. Without ``--spec`` / ``--set`` it replays the
live spec (it must reproduce every live decision). The warehouse URL comes from ``$WAREHOUSE_URL`` (or
``$AIRFLOW_CONN_WAREHOUSE``, ``--url``); a reader login is enough. Nothing printed carries a password.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from airtrain.errors import PermanentError
from airtrain.monitoring import replay as rp
from airtrain.spec import SpecError, load_spec, parse_spec, spec_dir
from airtrain.warehouse.connection import Warehouse
from airtrain.warehouse.redaction import redact_exception, redact_text


def apply_sets(data: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``key.path=value`` (the value parsed as YAML: 0.3, true, [a, b], alert) into the spec mapping."""
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--set", [f"{item!r}: expected key.path=value (e.g. monitoring.trigger.drift_share=0.3)"])
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpecError("--set", [f"{key}: {p} is not a section"])
        node[parts[-1]] = yaml.safe_load(value)
    return data


def other_spec(live_path: Path, spec_file: str | None, sets: list[str]):
    path = Path(spec_file) if spec_file else live_path
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_spec(apply_sets(data, sets), path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="airtrain replay", description="re-decide the monitor over stored history "
                                 "with other thresholds (read-only: live tables are never touched)")
    ap.add_argument("pipeline")
    ap.add_argument("--spec", default=None, help="a spec file with the thresholds to try (default: the live spec)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one spec key, e.g. monitoring.trigger.drift_share=0.3 (repeatable)")
    ap.add_argument("--from", dest="start", default=None, help="first window end to print (YYYY-MM-DD)")
    ap.add_argument("--to", dest="end", default=None, help="last window end (YYYY-MM-DD)")
    ap.add_argument("--spec-dir", default=None, help="folder of the live specs (default: $AIRTRAIN_SPEC_DIR)")
    ap.add_argument("--url", default=None, help="warehouse URL (default: $WAREHOUSE_URL, then $AIRFLOW_CONN_WAREHOUSE)")
    args = ap.parse_args(argv)
    url = args.url or os.environ.get("WAREHOUSE_URL") or os.environ.get("AIRFLOW_CONN_WAREHOUSE")
    if not url:
        print("error: set WAREHOUSE_URL (or pass --url)", file=sys.stderr)
        return 2
    live_path = Path(args.spec_dir or spec_dir()) / f"{args.pipeline}.yaml"
    try:
        live = load_spec(live_path)
        other = other_spec(live_path, args.spec, args.set)
        start = dt.date.fromisoformat(args.start) if args.start else None
        end = dt.date.fromisoformat(args.end) if args.end else None
        days = rp.replay(Warehouse(url, application_name="airtrain replay"), live, other, start=start, end=end)
    except (SpecError, PermanentError, ValueError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback with the URL
        redact_exception(exc)
        print(f"error: {type(exc).__name__}: {redact_text(str(exc)).strip()}", file=sys.stderr)
        return 1
    print(rp.render(days, live.evaluation.primary_metric))
    return 0
