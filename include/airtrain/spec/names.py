"""Names in a spec: the SQL identifier allow-list (``check_identifier``: every schema, table and column
name that reaches SQL passes it), pipeline and source-column names, and the base of every spec model
(unknown keys refused, frozen, whitespace stripped).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


MAX_IDENT_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1


# Words Postgres reserves (cannot be used unquoted as table/column names). We always quote
# identifiers with psycopg2.sql.Identifier, but refusing them keeps hand-written SQL safe too.
RESERVED_WORDS = frozenset(
    """all analyse analyze and any array as asc asymmetric both case cast check collate column
    constraint create current_catalog current_date current_role current_time current_timestamp
    current_user default deferrable desc distinct do else end except false fetch for foreign from
    grant group having in initially intersect into lateral leading limit localtime localtimestamp
    not null offset on only or order placing primary references returning select session_user
    some symmetric table then to trailing true union unique user using variadic when where window
    with""".split()
)


def check_identifier(value: str) -> str:
    """Return ``value`` if it is a safe lower-case SQL identifier, else raise ``ValueError``."""
    if not isinstance(value, str) or not _IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a safe SQL identifier; use lower-case letters, digits and "
            "underscores, starting with a letter or underscore (e.g. 'monthly_charges')"
        )
    if len(value.encode()) > MAX_IDENT_BYTES:
        raise ValueError(
            f"{value!r} is {len(value.encode())} bytes; PostgreSQL identifiers are at most "
            f"{MAX_IDENT_BYTES} bytes, so shorten it"
        )
    if value in RESERVED_WORDS:
        raise ValueError(f"{value!r} is a reserved SQL word; pick another name (e.g. '{value}_')")
    return value


Ident = Annotated[str, AfterValidator(check_identifier)]


def _check_pipeline_name(value: str) -> str:
    check_identifier(value)
    # Derived names ("<name>_retrain", "<name>_predictions_latest", ...) must stay <= 63 bytes.
    if len(value) > 30:
        raise ValueError(
            f"{value!r} is {len(value)} characters; pipeline names are at most 30 so that "
            "derived table and DAG names stay within PostgreSQL's 63-byte limit"
        )
    return value


PipelineName = Annotated[str, AfterValidator(_check_pipeline_name)]


def _check_source_name(value: str) -> str:
    """A column name as it appears in the landing file or source table: any header text."""
    if not value or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} is not a usable source column name: give the header exactly as it appears "
                         "in the file (1-200 characters, no line breaks or control characters)")
    return value


SourceName = Annotated[str, AfterValidator(_check_source_name)]


YAML_BOOL_HINT = ("YAML read an unquoted {word} as the boolean {value}; quote it so it stays text, "
                  "e.g. \"{example}\"")


def yaml_bool_hint(value: bool) -> str:
    return YAML_BOOL_HINT.format(word="Yes/No/On/Off/True/False", value=str(value).lower(),
                                 example="Yes" if value else "No")


def _text_values(value: Any) -> Any:
    """A list of text values from YAML: a scalar becomes a one-item list, integers become their text,
    and an unquoted Yes/No (a YAML boolean) is refused with the hint to quote it."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, bool):
            raise ValueError(yaml_bool_hint(v))
        out.append(str(v) if isinstance(v, int) else v)
    return out


TextValues = Annotated[list[str], BeforeValidator(_text_values)]


Severity = Literal["block", "warn"]


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)
