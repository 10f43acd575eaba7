"""Airflow-aware code of the project: hooks, operators, extra links, the DAG factory.

The ML lifecycle itself lives in the pure core package ``airtrain`` (include/airtrain), which
never imports Airflow; this package only wires it into Airflow.
"""
