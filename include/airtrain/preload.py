"""Third-party libraries the tasks need, imported once per executor instead of once per task.

Imported by :mod:`airtrain_airflow.preload`, the module the LocalExecutor's fork server preloads
(`make run` sets ``AIRFLOW__SCHEDULER__MP_START_METHOD=forkserver`` and
``AIRFLOW__CORE__MP_FORKSERVER_PRELOAD=airtrain_airflow.preload``): every task process is forked
from a worker of that fork server and starts with pandas, scikit-learn, skops, pyarrow, Great
Expectations and Evidently already imported, copy-on-write, instead of importing them again
(docs/BENCHMARKS.md, "A daily run").

Only third-party modules are imported (the list is :data:`airtrain.thirdparty.MODULES`), never the
project's pipeline code: each task imports that itself, so an edit is picked up by the next task
without restarting the scheduler. (Upgrading a library needs a scheduler restart anyway.) A
module that fails to import is skipped. Nothing here runs library code (no OpenMP region, no
thread) before the fork: only imports.
"""

from __future__ import annotations

import gc

from airtrain.thirdparty import import_all

FAILED = import_all()
# What was imported is long-lived: keep the garbage collector of every forked task from walking it
# (and from touching, so copying, the shared pages). Airflow does the same before it forks workers.
gc.freeze()
