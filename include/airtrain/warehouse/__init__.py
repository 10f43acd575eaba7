"""The warehouse layer: how the core reaches PostgreSQL and stores what it writes.

``connection`` (:class:`Warehouse`, quoted identifiers, advisory locks, :func:`read_frame`),
``redaction`` (:func:`redact_text`: the one function every boundary applies to text that leaves the
process), ``ddl`` (the mechanism that applies each package's tables and fingerprints them),
``roles`` (the read-only reader role, reader logins, the deploy-time roles) and ``reports`` (the HTML
reports in object storage). It knows no lifecycle stage: packages above it contribute their tables.
"""

from airtrain.warehouse.connection import Warehouse, advisory_key, ident, read_frame, xact_lock
from airtrain.warehouse.redaction import redact, redact_exception, redact_text, remember_secret, uri_password

__all__ = ["Warehouse", "advisory_key", "ident", "read_frame", "redact", "redact_exception", "redact_text",
           "remember_secret", "uri_password", "xact_lock"]
