"""The "Every key" table of docs/SPEC.md, generated from the models: every key with its type, default
and the description on its field (``python -m airtrain.spec`` prints it).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
)

from airtrain.spec.pipeline import PipelineSpec


def _type_name(annotation: Any) -> str:
    text = re.sub(r"airtrain\.spec\.(\w+\.)?", "", str(annotation).replace("typing.", ""))
    # Annotated[X, metadata...] -> X (metadata may nest brackets, so strip it by counting them)
    while "Annotated[" in text:
        i = text.index("Annotated[")
        depth, j, comma = 0, i + len("Annotated["), None
        while j < len(text):
            ch = text[j]
            if ch == "[":
                depth += 1
            elif ch == "]":
                if depth == 0:
                    break
                depth -= 1
            elif ch == "," and depth == 0 and comma is None:
                comma = j
            j += 1
        inner = text[i + len("Annotated["):comma if comma is not None else j]
        text = text[:i] + inner + text[j + 1:]
    text = re.sub(r"<class '([^']+)'>", r"\1", text)
    text = text.replace("NoneType", "null").replace("datetime.date", "date")
    return text


def spec_reference() -> list[tuple[str, str, str, str]]:
    """(key path, type, default, description) for every key of a spec."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            key = f"{prefix}{f.alias or name}"
            ann = f.annotation
            default = "required" if f.is_required() else repr(f.get_default(call_default_factory=True))
            desc = f.description or ""
            sub = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                sub = [ann]
            if sub and getattr(ann, "__origin__", None) not in (list, dict):
                rows.append((key, " | ".join(s.__name__ for s in sub), "section" if not f.is_required() else
                             "required", desc or (sub[0].__doc__ or "").strip().split("\n")[0]))
                for s in sub:
                    walk(s, f"{key}.")
                continue
            origin = getattr(ann, "__origin__", None)
            args = getattr(ann, "__args__", ())
            if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                rows.append((key, f"list of {args[0].__name__}", default, desc))
                walk(args[0], f"{key}[].")
                continue
            if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
                rows.append((key, f"map of name → {args[1].__name__}", default, desc))
                walk(args[1], f"{key}.<name>.")
                continue
            rows.append((key, _type_name(ann), default, desc))

    walk(PipelineSpec, "")
    seen: set[str] = set()
    return [r for r in rows if not (r[0] in seen or seen.add(r[0]))]
