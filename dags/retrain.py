"""One ``<pipeline>_retrain`` DAG per spec in include/pipelines/ (ingest → validate → train →
evaluate → promote). Wiring only: the DAGs are built by airtrain_airflow.factory; adding a model
means adding a spec file, not code. Parsing reads the small YAML specs and nothing else.
"""

from __future__ import annotations

from airtrain.spec import load_specs, spec_dir
from airtrain_airflow.factory import build_retrain_dag

for _spec in load_specs(spec_dir()):
    globals()[_spec.retrain_dag_id] = build_retrain_dag(_spec)
