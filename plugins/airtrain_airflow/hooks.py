"""Warehouse access for tasks, on top of the Postgres provider's hook."""

from __future__ import annotations

from airflow.providers.postgres.hooks.postgres import PostgresHook
from airtrain.warehouse import Warehouse


class WarehouseHook(PostgresHook):
    """A :class:`PostgresHook` that hands the core a :class:`airtrain.warehouse.Warehouse`.

    :param postgres_conn_id: the Airflow connection of the warehouse (the spec's
        ``warehouse.conn_id``; defined by ``AIRFLOW_CONN_<ID>`` or a secrets backend).
    """

    hook_name = "airtrain warehouse"

    def get_warehouse(self) -> Warehouse:
        uri = normalize_uri(self.get_uri())
        return Warehouse(uri, application_name=f"airtrain:{self.postgres_conn_id}", artifact_keys=artifact_keys())


def artifact_keys() -> tuple[tuple[str, bytes], ...]:
    """The model-artifact signing keys from the Airflow Variable ``airtrain_artifact_secret_keys``
    (``<id>:<secret>,...``, newest first): the metadata DB, ``AIRFLOW_VAR_AIRTRAIN_ARTIFACT_SECRET_KEYS`` or a
    secrets backend - never the warehouse. Empty when unset (the core then reads
    ``$AIRTRAIN_ARTIFACT_SECRET_KEYS``)."""
    from airflow.sdk import Variable
    from airtrain.model.artifacts import parse_keys

    return parse_keys(Variable.get("airtrain_artifact_secret_keys", default=None))


def normalize_uri(uri: str) -> str:
    """A libpq URI (``postgresql://``) from SQLAlchemy-style ``postgresql+driver://`` or ``postgres://``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    if scheme == "postgres" or scheme.startswith("postgresql+") or scheme.startswith("postgres+"):
        scheme = "postgresql"
    return f"{scheme}://{rest}"
