"""A model card per model version: what the model is, what it was trained on, how it did, why it was
(or was not) promoted. Stored as JSON in ``registry.model_cards`` and rendered to HTML on demand.

The card is assembled from the registry only (``model_versions``, ``evaluations``,
``feature_importance``, ``fairness``, ``promotion_log``, ``gate_decisions``, ``version_status``) plus
the spec (features and their types), so it is rebuilt after each step that changes what it says
(:func:`refresh` after ``evaluate``, ``promote``, an approved promotion and a rollback - for the
version and the champion it replaced); a re-run replaces it.
"""

from __future__ import annotations

import html
import json
from typing import Any

from psycopg2 import sql

from airtrain.registry import champions, versions
from airtrain.registry.versions import version_text
from airtrain.spec import PipelineSpec
from airtrain.warehouse.connection import Warehouse, ident


def _rows(cur: Any, query: sql.Composable, params: tuple) -> list[dict[str, Any]]:
    cur.execute(query, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def build(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any]:
    """The card of ``version`` as a JSON-able dict (raises RegistryError for an unknown version)."""
    v = versions.get_version(wh, spec, version)
    reg = spec.warehouse.registry_schema
    lineage, metrics = v.lineage or {}, v.metrics or {}
    run_id = (metrics.get("gate") or {}).get("run_id") or v.run_id
    with wh.connect() as conn, conn.cursor() as cur:
        # the newest evaluation run of this version (a version trained earlier may be evaluated again)
        cur.execute(sql.SQL("SELECT run_id FROM {} WHERE pipeline = %s AND version = %s AND role = 'challenger' "
                            "ORDER BY created_at DESC LIMIT 1").format(ident(reg, "evaluations")),
                    (spec.name, version))
        row = cur.fetchone()
        eval_run = row[0] if row else run_id
        evals = _rows(cur, sql.SQL("SELECT role, version, metric, slice_column, slice_value, value, n_rows, "
                                   "holdout_start, holdout_end FROM {} WHERE pipeline = %s AND run_id = %s "
                                   "ORDER BY slice_column, slice_value, metric, role").format(ident(reg, "evaluations")),
                      (spec.name, eval_run))
        importance = _rows(cur, sql.SQL("SELECT role, version, feature, importance_mean, importance_std, n_rows, "
                                        "scoring FROM {} WHERE pipeline = %s AND run_id = %s "
                                        "ORDER BY role, importance_mean DESC").format(ident(reg, "feature_importance")),
                           (spec.name, eval_run))
        fairness = _rows(cur, sql.SQL("SELECT role, version, attribute, group_value, metric, value, n_rows FROM {} "
                                      "WHERE pipeline = %s AND run_id = %s ORDER BY attribute, group_value, metric, "
                                      "role").format(ident(reg, "fairness")), (spec.name, eval_run))
        promotions = _rows(cur, sql.SQL("SELECT id, from_version, to_version, action, actor, triggered_by, reason, "
                                        "run_id, created_at FROM {} WHERE pipeline = %s AND (to_version = %s OR "
                                        "from_version = %s) ORDER BY id").format(ident(reg, "promotion_log")),
                           (spec.name, version, version))
        # every run's gate decision on this version, and its status history (rejected by a rollback, cleared)
        decisions = _rows(cur, sql.SQL("SELECT run_id, champion_version, passed, refused, outcome, reason, "
                                       "decision->'compared' AS compared, created_at FROM {} WHERE pipeline = %s "
                                       "AND version = %s ORDER BY created_at, run_id").format(
            ident(reg, "gate_decisions")), (spec.name, version))
        # every evaluation run of this version: the primary metric of both models on the same rows
        runs = _rows(cur, sql.SQL(
            "SELECT c.run_id, c.holdout_start, c.holdout_end, c.value AS challenger, c.n_rows, p.version AS "
            "champion_version, p.value AS champion FROM {e} c LEFT JOIN {e} p ON p.pipeline = c.pipeline AND "
            "p.run_id = c.run_id AND p.role = 'champion' AND p.metric = c.metric AND p.slice_column = '' "
            "WHERE c.pipeline = %s AND c.version = %s AND c.role = 'challenger' AND c.metric = %s "
            "AND c.slice_column = '' ORDER BY c.created_at, c.run_id").format(e=ident(reg, "evaluations")),
            (spec.name, version, spec.evaluation.primary_metric))
        status = _rows(cur, sql.SQL("SELECT status, actor, reason, run_id, promotion_id, created_at FROM {} "
                                    "WHERE pipeline = %s AND version = %s ORDER BY id").format(
            ident(reg, "version_status")), (spec.name, version))
    champion = champions.champion_version(wh, spec)
    window = lineage.get("window") or {}
    inputs = set(lineage.get("model_inputs") or spec.model_feature_names)
    card = {
        "pipeline": spec.name, "version": version, "run_id": v.run_id, "is_champion": champion == version,
        "estimator": v.estimator, "params": v.params,
        # the days that actually had rows (the nominal window may start before the data did)
        "data": {"train": _days(window, "train"), "holdout": _days(window, "holdout"),
                 "train_days": window.get("train_data"), "holdout_days": window.get("holdout_data"),
                 "train_window": [window.get("train_start"), window.get("train_end")],
                 "holdout_window": [window.get("holdout_start"), window.get("holdout_end")],
                 "train_rows": lineage.get("train_rows", window.get("train_rows")),
                 "holdout_rows": lineage.get("holdout_rows", window.get("holdout_rows")),
                 "as_of": lineage.get("as_of"), "class_balance": lineage.get("class_balance")},
        # what THIS version was trained on (its lineage), not what the spec says today
        "features": [{"name": f.name, "type": f.type, "model_input": f.name in inputs,
                      "description": f.description} for f in spec.features],
        "target": {"name": spec.target.name, "task": spec.target.task},
        "metrics": {"holdout": metrics.get("holdout"), "comparison": metrics.get("comparison"),
                    "evaluation_run": eval_run, "rows": evals,
                    "runs": {"metric": spec.evaluation.primary_metric, "rows": runs}},
        "importance": {"comparison": metrics.get("importance"), "rows": importance},
        "fairness": {"summary": metrics.get("fairness"), "rows": fairness},
        "gate": metrics.get("gate"),
        "gate_decisions": decisions,
        "status": {"rejected": bool(status) and status[-1]["status"] == "rejected", "history": status},
        "promotions": promotions,
        "lineage": {"spec_sha256": lineage.get("spec_sha256"), "code_version": lineage.get("code_version"),
                    "data_hash": lineage.get("data_hash"), "library_versions": lineage.get("library_versions"),
                    "artifact_sha256": v.artifact_sha256, "artifact_format": v.artifact_format,
                    "trained_at": lineage.get("trained_at")},
    }
    card.update(spec_section(wh, spec, version, lineage))
    return json.loads(json.dumps(card, default=str))


def spec_section(wh: Warehouse, spec: PipelineSpec, version: int, lineage: dict[str, Any]) -> dict[str, Any]:
    """The spec the version was trained under (stored with it; None for versions older than that), its
    hashes, and the model inputs training dropped (no observed value in the window)."""
    return {"inputs_dropped": lineage.get("inputs_dropped") or [],
            "spec": {"sha256": lineage.get("spec_sha256"), "model_spec_sha256": lineage.get("model_spec_sha256"),
                     "text": version_text(wh, spec, version)}}


def _days(window: dict[str, Any], part: str) -> list[Any]:
    """[first, last] day of ``part`` (train / holdout) that had rows; the nominal window for versions
    trained before the days with rows were recorded."""
    data = window.get(f"{part}_data") or {}
    if data.get("first"):
        return [data["first"], data["last"]]
    return [window.get(f"{part}_start"), window.get(f"{part}_end")]


def refresh(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any]:
    """Rebuild the card of ``version`` and upsert it into ``registry.model_cards`` (one statement)."""
    card = build(wh, spec, version)
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} (pipeline, version, card, updated_at) VALUES (%s, %s, %s, now()) "
                            "ON CONFLICT (pipeline, version) DO UPDATE SET card = EXCLUDED.card, "
                            "updated_at = EXCLUDED.updated_at").format(
            ident(spec.warehouse.registry_schema, "model_cards")), (spec.name, version, json.dumps(card)))
    return card


def read(wh: Warehouse, spec: PipelineSpec, version: int) -> dict[str, Any] | None:
    """The stored card of ``version`` (None when there is none yet)."""
    with wh.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT card FROM {} WHERE pipeline = %s AND version = %s").format(
            ident(spec.warehouse.registry_schema, "model_cards")), (spec.name, version))
        row = cur.fetchone()
    return row[0] if row else None


def list_cards(wh: Warehouse, spec: PipelineSpec) -> list[dict[str, Any]]:
    """Versions with a card, newest first: version, estimator, champion or not, gate passed, updated."""
    with wh.connect() as conn, conn.cursor() as cur:
        return _rows(cur, sql.SQL(
            "SELECT version, card->>'estimator' AS estimator, (card->>'is_champion')::boolean AS is_champion, "
            "(card->'gate'->>'passed')::boolean AS gate_passed, (card->'status'->>'rejected')::boolean AS rejected, "
            "updated_at FROM {} WHERE pipeline = %s "
            "ORDER BY version DESC").format(ident(spec.warehouse.registry_schema, "model_cards")), (spec.name,))


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1b1f24;max-width:70rem}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.88rem;margin:.4rem 0} th,td{border-bottom:1px solid #eee;
padding:.3rem .55rem;text-align:left;vertical-align:top} th{background:#f6f8fa}
.ok{color:#067647;font-weight:600} .bad{color:#b42318;font-weight:600} .muted{color:#667085;font-size:.85rem}
code{font-size:.85rem}
"""


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape("" if v is None else str(v))


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pivot(rows: list[dict[str, Any]], key: Any) -> list[list[Any]]:
    """Rows keyed by ``key(row)``, with the challenger and champion values side by side."""
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        out.setdefault(key(r), {})[r["role"]] = r
    table = []
    for k, roles in out.items():
        ch, cp = roles.get("challenger"), roles.get("champion")
        table.append([*k, ch and ch.get("value", ch.get("importance_mean")),
                      cp and cp.get("value", cp.get("importance_mean")), (ch or cp or {}).get("n_rows")])
    return table


def _span(data: dict[str, Any], part: str) -> str:
    """"first … last (N days with rows)", plus the nominal window when the data started later."""
    days = data.get(f"{part}_days") or {}
    text = " … ".join(str(x) for x in data[part])
    if days.get("days") is not None:
        text += f" ({days['days']} days with rows)"
    nominal = data.get(f"{part}_window")
    if nominal and list(nominal) != list(data[part]):
        text += f"; window {' … '.join(str(x) for x in nominal)}"
    return text


def render_html(card: dict[str, Any]) -> str:
    """The card as a standalone HTML page (every value escaped)."""
    e = html.escape
    d, lin, gate = card["data"], card["lineage"], card.get("gate") or {}
    title = f"{card['pipeline']} v{card['version']}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Model card {e(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>Model card: {e(title)}"
             f"{' (champion)' if card.get('is_champion') else ''}"
             f"{' (rejected)' if (card.get('status') or {}).get('rejected') else ''}</h1>",
             f"<p class='muted'>run <code>{e(str(card['run_id']))}</code> · the same card as JSON: "
             f"<code>registry.model_cards</code> (pipeline {e(card['pipeline'])}, version {int(card['version'])})</p>",
             "<h2>Model</h2>", _table(["estimator", "parameters"], [[card["estimator"],
                                                                    json.dumps(card["params"], sort_keys=True)]]),
             "<h2>Data</h2>", _table(["training days with rows", "training rows", "holdout days with rows",
                                      "holdout rows", "as of", "positive share"],
                                     [[_span(d, "train"), d["train_rows"], _span(d, "holdout"), d["holdout_rows"],
                                       d["as_of"], d["class_balance"]]]),
             "<h2>Features</h2>", _table(["name", "type", "model input", "description"],
                                         [[f["name"], f["type"], "yes" if f["model_input"] else "no (kept only)",
                                           f["description"]] for f in card["features"]])]
    if card.get("inputs_dropped"):
        parts.append(_table(["not trained on", "why"], [[d.get("feature"), d.get("reason")]
                                                        for d in card["inputs_dropped"]]))
    m = card["metrics"]
    cmp = m.get("comparison") or {}
    parts.append("<h2>Metrics</h2>")
    parts.append(f"<p class='muted'>challenger vs the champion it would replace "
                 f"(v{e(str(cmp.get('champion_version') or '-'))}) on the same rows "
                 f"{e(' … '.join(cmp.get('compared') or []))}; {e(cmp.get('note') or '')}</p>")
    parts.append(_table(["slice", "value", "metric", "challenger", "champion", "rows"], _pivot(
        m["rows"], lambda r: (r["slice_column"] or "overall", r["slice_value"], r["metric"]))))
    imp = card["importance"]
    parts.append("<h2>Feature importance (permutation)</h2>")
    if imp["rows"]:
        c = imp.get("comparison") or {}
        parts.append(f"<p class='muted'>drop of {e(str(c.get('scoring')))} when the feature is shuffled "
                     f"({e(str(c.get('rows')))} rows, {e(str(c.get('repeats')))} repeats). Gained weight: "
                     f"{e(', '.join(c.get('gained') or []) or '-')}; lost weight: "
                     f"{e(', '.join(c.get('lost') or []) or '-')}.</p>")
        parts.append(_table(["feature", "challenger", "champion", "rows"],
                            _pivot(imp["rows"], lambda r: (r["feature"],))))
    else:
        parts.append("<p class='muted'>not computed (explain.importance is off)</p>")
    fair = card["fairness"]
    parts.append("<h2>Fairness</h2>")
    if fair["rows"]:
        parts.append(_table(["attribute", "group", "metric", "challenger", "champion", "rows"], _pivot(
            fair["rows"], lambda r: (r["attribute"], r["group_value"] or "(disparity)", r["metric"]))))
    else:
        parts.append("<p class='muted'>no sensitive attributes in the spec (fairness section)</p>")
    parts.append("<h2>Gate decision</h2>")
    if gate:
        cls = "ok" if gate.get("passed") else "bad"
        parts.append(f"<p class='{cls}'>{'passed' if gate.get('passed') else 'refused'}</p>"
                     f"<p>{e(str(gate.get('reason') or ''))}</p>")
        parts.append(_table(["check", "kind", "challenger", "champion", "bound", "passed"],
                            [[c.get("metric"), c.get("kind"), c.get("challenger"), c.get("champion"), c.get("bound"),
                              "yes" if c.get("passed") else "NO"] for c in gate.get("checks") or []]))
    else:
        parts.append("<p class='muted'>not decided yet</p>")
    runs = (m.get("runs") or {}).get("rows") or []
    if len(runs) > 1:
        parts.append(f"<p class='muted'>every evaluation of this version ({e(str(m['runs']['metric']))}, both models "
                     "on the same rows):</p>")
        parts.append(_table(["run", "compared days", "rows", "challenger", "champion", "champion version"],
                            [[r["run_id"], f"{r['holdout_start']} … {r['holdout_end']}", r["n_rows"], r["challenger"],
                              r["champion"], r["champion_version"]] for r in runs]))
    decisions = card.get("gate_decisions") or []
    if decisions:
        parts.append("<h2>Gate decisions (every run)</h2>")
        parts.append(_table(["when", "run", "vs champion", "compared days", "passed", "refused", "outcome", "reason"],
                            [[g["created_at"], g["run_id"], g["champion_version"],
                              " … ".join(str(x) for x in g.get("compared") or []),
                              {True: "yes", False: "NO"}.get(g["passed"], "-"), g["refused"], g["outcome"], g["reason"]]
                             for g in decisions]))
    status = (card.get("status") or {}).get("history") or []
    if status:
        parts.append("<h2>Status</h2>")
        if card["status"].get("rejected"):
            parts.append(f"<p class='bad'>rejected by {e(str(status[-1]['actor']))}: {e(str(status[-1]['reason']))} "
                         "- the gate refuses it (also when a retrain reproduces it) until force_promote with a reason "
                         "brings it back</p>")
        parts.append(_table(["when", "status", "by", "reason", "run"],
                            [[x["created_at"], x["status"], x["actor"], x["reason"], x["run_id"]] for x in status]))
    parts.append("<h2>Promotions and approvals</h2>")
    parts.append(_table(["when", "action", "from", "to", "actor", "triggered by", "reason"],
                        [[p["created_at"], p["action"], p["from_version"], p["to_version"], p["actor"],
                          p.get("triggered_by"), p["reason"]]
                         for p in card["promotions"]]) if card["promotions"] else "<p class='muted'>none</p>")
    parts.append("<h2>Lineage</h2>")
    libs = lin.get("library_versions") or {}
    parts.append(_table(["spec sha256", "code version", "data hash", "artifact sha256", "format", "trained at"],
                        [[lin.get("spec_sha256"), lin.get("code_version"), lin.get("data_hash"),
                          lin.get("artifact_sha256"), lin.get("artifact_format"), lin.get("trained_at")]]))
    parts.append(_table(["library", "version"], [[k, v] for k, v in sorted(libs.items())]))
    spec_doc = card.get("spec") or {}
    parts.append("<h2>Spec it was trained under</h2>")
    parts.append(f"<pre>{e(spec_doc['text'])}</pre>" if spec_doc.get("text") else
                 "<p class='muted'>not stored (a version trained before specs were kept with versions)</p>")
    parts.append("</body></html>")
    return "".join(parts)
