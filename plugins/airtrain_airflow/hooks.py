"""Warehouse access for tasks, on top of the Postgres provider's hook."""

from __future__ import annotations

from airflow.providers.postgres.hooks.postgres import PostgresHook

from airtrain.db import Warehouse


class WarehouseHook(PostgresHook):
    """A :class:`PostgresHook` that hands the core a :class:`airtrain.db.Warehouse`.

    :param postgres_conn_id: the Airflow connection of the warehouse (the spec's
        ``warehouse.conn_id``; defined by ``AIRFLOW_CONN_<ID>`` or a secrets backend).
    """

    hook_name = "airtrain warehouse"

    def get_warehouse(self) -> Warehouse:
        uri = self.get_uri()
        if uri.startswith("postgres://"):
            uri = "postgresql://" + uri.removeprefix("postgres://")
        return Warehouse(uri, application_name=f"airtrain:{self.postgres_conn_id}")
