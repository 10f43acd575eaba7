"""airtrain: the pure ML-lifecycle core of the project (never imports Airflow).

Modules: spec (pipeline specs), db (warehouse connections), schema (DDL), simulate (demo data), ...
"""

__version__ = "0.1.0"
