"""The report's pieces without a pipeline run: the shipped `dvc plots show` template carries the same bundle
the report inlines, the bundle makes no request of its own, and a project with nothing evaluated yet gets a
page that says so."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

from pipeline.core.config import validate
from pipeline.report.build import build_report
from pipeline.report.bundle import VEGA_LITE_VERSION, bundle_cache_path, dvc_template, vega_bundle
from pipeline.report.experiments import parse_experiments


def test_shipped_dvc_template_inlines_the_bundle_and_no_cdn() -> None:
    shipped = (ROOT / ".dvc" / "plots.html").read_text(encoding="utf-8")
    assert shipped == dvc_template(), "stale: python -m pipeline report --dvc-template .dvc/plots.html"
    assert "{plot_divs}" in shipped and "{scripts}" not in shipped  # no {scripts}: DVC adds no CDN tags
    assert "plots.html" in (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"<script[^>]+src=", shipped) is None


def test_bundle_defines_vega_embed() -> None:
    bundle = vega_bundle()
    assert len(bundle) > 500_000 and "vegaEmbed" in bundle and "</script" not in bundle


def test_bundle_is_built_once_then_read_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    """The first report builds the bundle into the cache folder; later ones read it; a damaged file is rebuilt."""
    import vl_convert

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = bundle_cache_path(vl_convert.__version__)
    vega_bundle.cache_clear()
    built = vega_bundle()
    assert cached.read_text(encoding="utf-8") == built == vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    cached.write_text("window.vegaEmbed = 'read from the cache';", encoding="utf-8")
    vega_bundle.cache_clear()
    assert vega_bundle() == "window.vegaEmbed = 'read from the cache';"
    cached.write_text("truncated", encoding="utf-8")
    vega_bundle.cache_clear()
    assert vega_bundle() == built and cached.read_text(encoding="utf-8") == built
    vega_bundle.cache_clear()


def test_report_before_anything_is_evaluated(tmp_path: Path) -> None:
    config = validate({"paths": {name: str(tmp_path / name) for name in ("split", "features", "metrics", "audit")}})
    summary = build_report(config, tmp_path / "report", "empty")
    page = summary.index.read_text()
    assert (summary.charts, summary.images, summary.results) == (0, 0, 0)
    assert "No evaluated head yet" in page and "<title>empty</title>" in page


def test_experiments_table_drops_dvc_bookkeeping_and_empty_columns() -> None:
    text = "Experiment,rev,typ,Created,parent,State,Executor,test/accuracy,heads.logreg.C\n"
    text += ",workspace,baseline,,,,,0.9,\n" + "exp-1,a1b2c3d,branch_commit,2026-12-04T18:00:00,,,,0.95,\n"
    rows = parse_experiments(text)
    assert rows == [
        {"Experiment": "", "rev": "workspace", "Created": "", "test/accuracy": "0.9"},
        {"Experiment": "exp-1", "rev": "a1b2c3d", "Created": "2026-12-04T18:00:00", "test/accuracy": "0.95"},
    ]
