"""What the LocalExecutor's fork server imports once, so that no task process imports it again.

`make run` sets ``AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver`` and
``AIRFLOW__CORE__MP_FORKSERVER_PRELOAD=airtrain_airflow.preload``: Airflow starts its executor
workers from a fork server that has imported this module, and every task process is forked from a
worker, so it starts with these modules already imported (copy-on-write). Without it each task
re-imports the DAG bag and the Postgres hook (~1 s) and the ML libraries (pandas, scikit-learn,
skops, pyarrow, Great Expectations, Evidently: seconds) - docs/BENCHMARKS.md, "A daily run".

Only Airflow and third-party modules are imported (never the pipeline code, which every task
imports itself, so an edit is picked up by the next task); :mod:`airtrain.preload` imports the
libraries and then freezes the garbage collector's view of them.
"""

from __future__ import annotations

import importlib

#: the Airflow modules a task process needs besides what ``airflow`` imports
AIRFLOW_MODULES = (
    "airflow",
    "airflow.executors.local_executor",
    "airflow.dag_processing.dagbag",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.standard.operators.python",
    "airflow.providers.standard.operators.trigger_dagrun",
)

for _name in AIRFLOW_MODULES:
    try:
        importlib.import_module(_name)
    except ImportError:  # a missing provider: the task that needs it reports it
        pass

import airtrain.preload  # noqa: E402,F401 - the libraries, then gc.freeze()
