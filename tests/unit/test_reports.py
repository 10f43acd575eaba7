"""The report store (airtrain.warehouse.reports): the one place reports are written and read."""

from __future__ import annotations

import pytest
from airtrain.warehouse.reports import ReportNotFound, ReportStore, with_title


def test_save_then_read_replaces_and_stays_inside_the_root(tmp_path):
    store = ReportStore(tmp_path / "reports")
    where = store.save("churn", "validation", "2026-01-05", "<html>one</html>")
    assert where == str(tmp_path / "reports/churn/validation/2026-01-05.html")
    store.save("churn", "validation", "2026-01-05", "<html>two</html>")  # a re-run replaces it
    assert store.read("churn", "validation", "2026-01-05") == "<html>two</html>"
    assert [p.name for p in (tmp_path / "reports/churn/validation").iterdir()] == ["2026-01-05.html"]


@pytest.mark.parametrize(("pipeline", "kind", "report_id"), [
    pytest.param("churn", "validation", "2026-01-06", id="not-stored"),
    pytest.param("churn", "secrets", "2026-01-05", id="unknown-kind"),
    pytest.param("churn", "validation", "../../etc/passwd", id="traversal"),
    pytest.param("churn", "validation", "..", id="dots"),
    pytest.param("churn", "validation", "a/b", id="slash"),
    pytest.param("../churn", "validation", "2026-01-05", id="pipeline-traversal"),
    pytest.param("Churn;", "validation", "2026-01-05", id="bad-pipeline"),
])
def test_anything_else_is_not_found(tmp_path, pipeline, kind, report_id):
    store = ReportStore(tmp_path)
    store.save("churn", "validation", "2026-01-05", "<html></html>")
    with pytest.raises(ReportNotFound):
        store.read(pipeline, kind, report_id)


def test_a_report_without_a_title_gets_one_in_its_head_not_in_its_scripts():
    doc = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><script>var t = '<title>x</title>"
           "<body>';</script></head>\n<body>\n<div id='root'></div></body></html>")
    out = with_title(doc, "churn drift report — 2026-01-05 <v1>", "<h1>header</h1>")
    assert out.startswith("<!DOCTYPE html><html lang='en'><head><title>churn drift report — 2026-01-05 &lt;v1&gt;"
                          "</title><meta charset='utf-8'><script>var t = '<title>x</title><body>';</script>")
    assert "</head>\n<body><h1>header</h1>\n<div id='root'>" in out
    assert with_title("<p>bare</p>", "T", "<h1>H</h1>") == "<title>T</title><h1>H</h1><p>bare</p>"
