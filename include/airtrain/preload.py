"""Third-party libraries the tasks need, imported once per executor instead of once per task.

Under the LocalExecutor every task runs in a process forked from an executor worker. Airflow 3.3
can start those workers from a ``forkserver`` that imports a list of modules up front
(``[scheduler] mp_start_method = forkserver`` and ``[core] mp_forkserver_preload``); every task
process then inherits them, already imported, copy-on-write. `make run` (scripts/devstack.py)
sets::

    AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver
    AIRFLOW__CORE__MP_FORKSERVER_PRELOAD=airflow,airflow.executors.local_executor,airtrain.preload

Without it, a daily run spends most of its time importing pandas, scikit-learn, skops, pyarrow,
Great Expectations and Evidently again in every task (docs/BENCHMARKS.md, "A daily run").

Only third-party modules are imported (the list is :data:`airtrain.thirdparty.MODULES`), never the
project's pipeline code: each task imports that itself, so an edit is picked up by the next task
without restarting the scheduler. (Upgrading a library needs a scheduler restart anyway.) A
module that fails to import is skipped, as ``multiprocessing`` skips a preload that fails.
"""

from __future__ import annotations

from airtrain.thirdparty import import_all

FAILED = import_all()
