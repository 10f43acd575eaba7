"""Run one retrain DAG run with dag.test() in a child process (the fault tests kill it at a failpoint).

    python tests/integration/dag_child.py <spec.yaml> '<conf json>'

The Airflow and warehouse settings come from the environment the test process exported.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins"), str(ROOT / "dev")]

from airtrain.spec import load_spec  # noqa: E402
from airtrain_airflow.factory import build_retrain_dag  # noqa: E402

if __name__ == "__main__":
    dag = build_retrain_dag(load_spec(sys.argv[1]))
    dr = dag.test(logical_date=dt.datetime.now(dt.UTC), run_conf=json.loads(sys.argv[2]))
    print(f"STATE {dr.state}")
