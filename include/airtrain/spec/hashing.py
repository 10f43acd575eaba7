"""Fingerprints of a spec: of the whole spec (:func:`spec_hash`, recorded with each migration and each
model version), of what shapes the model (:func:`model_spec_sha256`: the registry reuses a version only
when it is the same), and the spec as YAML text, stored with each model version (:func:`spec_text`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from airtrain.spec.pipeline import PipelineSpec


def spec_hash(spec: PipelineSpec) -> str:
    return hashlib.sha256(json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True).encode()).hexdigest()


def model_shaping(spec: PipelineSpec) -> dict[str, Any]:
    """Everything in the spec that shapes the model: the rows (source mapping, features with their
    types and rules, the target and its mapping, the labels, validation), the estimator, its
    parameters, the window and the search. Not: schedules, gates, monitoring, alerts, descriptions."""
    d = spec.model_dump(mode="json", by_alias=True)
    return {
        "entity_key": d["entity_key"], "entity_key_source": d["entity_key_source"],
        "entity_key_type": d["entity_key_type"], "date_column": d["date_column"],
        "date_column_source": d["date_column_source"],
        "features": [{k: v for k, v in f.items() if k != "description"} for f in d["features"]],
        "target": d["target"], "labels": d["labels"], "validation": d["validation"], "training": d["training"],
        "primary_metric": d["evaluation"]["primary_metric"],
    }


def model_spec_sha256(spec: PipelineSpec) -> str:
    """sha256 of :func:`model_shaping` (part of the registry's version-reuse key)."""
    return hashlib.sha256(json.dumps(model_shaping(spec), sort_keys=True).encode()).hexdigest()


def spec_text(spec: PipelineSpec) -> str:
    """The spec as YAML: the keys it sets (defaults left out), in the file's order (comments are not
    kept). Stored with each model version and shown on its model card."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
