"""One ``<pipeline>_monitor`` DAG per spec in include/pipelines/: Evidently drift and realized
performance against the champion; triggers ``<pipeline>_retrain`` when the spec's rule is met.
Wiring only (see airtrain_airflow.factory); parsing reads the small YAML specs and nothing else.
"""

from __future__ import annotations

from airtrain.spec import load_specs, spec_dir
from airtrain_airflow.factory import build_monitor_dag

for _spec in load_specs(spec_dir()):
    globals()[_spec.monitor_dag_id] = build_monitor_dag(_spec)
