"""Registers the project's Airflow plugin (extra links and UI views are added here)."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class AirtrainPlugin(AirflowPlugin):
    name = "airtrain"
