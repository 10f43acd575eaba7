"""The ONE place that composes the stages, one function per DAG task.

``plan`` (a run's parameters checked together, its dates), ``schema`` (the parts of the warehouse
schema, migrated or verified), ``retrain`` (ingest → validate →
train → evaluate), ``release`` (promote or roll back), ``serving`` (begin scoring, score a shard,
publish; scoring an approved champion) and ``monitor`` (drift windows, canary checks, the alerts due).
Each step reads what it needs from the warehouse, calls the stages, writes its results in one
transaction keyed by the partition and returns a small JSON-able dict for XCom. No Airflow import:
the Airflow tasks (``plugins/airtrain_airflow/runtime.py``) only pass the context in.
"""
