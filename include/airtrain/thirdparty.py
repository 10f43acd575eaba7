"""How the project imports its heavy third-party libraries: quietly, late, and which ones a task needs.

:data:`DEFERRED` is the ONE list of libraries a core module may import inside a function (each takes
from a tenth of a second to ~5 s to import, and a DAG file must parse without them); every other
import - the core's own modules above all - is at the top of its module (checked by
``tests/dags/test_imports.py``). :func:`quiet_libraries` turns off telemetry and the INFO chatter some
libraries log while they are imported (GX logs ~200 "Skipping registering function" lines per
import); the adapters call it before importing them. :data:`MODULES` is what :mod:`airtrain.preload`
imports once per executor.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings

#: the heavy libraries (top-level package names) a core module may import inside a function, to keep
#: importing the core - and so parsing a DAG file - light
DEFERRED = ("numpy", "pandas", "pyarrow", "scipy", "sklearn", "skops", "great_expectations", "evidently",
            "fairlearn", "adbc_driver_postgresql")

#: in import order; each one is what a task of the retrain or monitor DAG imports
MODULES = (
    "numpy",
    "pandas",
    "pyarrow",
    "psycopg2.extras",
    "adbc_driver_postgresql.dbapi",
    "scipy.special",
    "sklearn.base",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "great_expectations",
    "evidently",
    "fastapi",  # the project's Airflow plugin (the drift-reports page) is loaded by every task process
)


def quiet_libraries() -> None:
    """No telemetry; no INFO logs from Great Expectations' import-time registration."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def import_all(modules: tuple[str, ...] = MODULES) -> list[str]:
    """Import ``modules`` quietly; return the ones that could not be imported."""
    quiet_libraries()
    failed = []
    for name in modules:
        try:
            with warnings.catch_warnings():  # skops warns ~1,160 times on import next to Airflow
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library may be missing; the task will say so
            failed.append(name)
    return failed
