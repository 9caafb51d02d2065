"""Build report/index.html from the collected results: one section per kind of result, charts where they help,
every picture the stages drew, the store's provenance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core.atomic import staged_folder
from pipeline.core.config import Config
from pipeline.report.charts import accuracy_chart, confusion_chart, curves_chart, per_class_chart
from pipeline.report.collect import Audit, Branch, Results, SplitSummary, Store, collect
from pipeline.report.page import Page, table_html

HEADLINE = ("accuracy", "loss", "images", "misclassified")


@dataclass(frozen=True)
class ReportSummary:
    index: Path
    charts: int
    images: int
    results: int  # backbone x head rows and method rows in the accuracy table


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def accuracy_rows(results: Results) -> list[dict[str, Any]]:
    rows = [
        {"result": b.name, "kind": b.head, **{k: b.metrics.get(f"test/{k}") for k in HEADLINE}}
        for b in results.branches
    ]
    rows += [
        {"result": m.name, "kind": "method", **{k: m.metrics.get(f"test/{k}") for k in HEADLINE}}
        for m in results.methods
    ]
    return rows


def results_section(page: Page, results: Results) -> None:
    page.section("results", "Results")
    rows = accuracy_rows(results)
    if not rows:
        page.note("No evaluated head yet: run `dvc repro` (or `python -m pipeline evaluate BACKBONE HEAD`).")
        return
    page.table(
        ["result", *HEADLINE], [[r["result"], *(r[k] if r[k] is not None else "" for k in HEADLINE)] for r in rows]
    )
    page.charts(accuracy_chart([r for r in rows if r["accuracy"] is not None]))
    if results.experiments:
        page.heading("DVC experiments")
        header = list(results.experiments[0])  # dvc exp show's column order
        rows = [[row.get(k, "") for k in header] for row in results.experiments]
        page.html(f'<div style="overflow-x: auto">{table_html(header, rows)}</div>')  # one column per metric


def branch_section(page: Page, branch: Branch) -> None:
    page.section(slug(branch.name), branch.name)
    accuracy = branch.metrics.get("test/accuracy")
    if accuracy is not None:
        page.note(f"test accuracy {accuracy:.4f} on {branch.metrics.get('test/images')} images")
    specs = []
    if branch.curves:
        specs.append(curves_chart(branch.curves, branch.x_name, f"{branch.name}: learning curves"))
    if branch.confusion:
        specs.append(confusion_chart(branch.confusion, f"{branch.name}: confusion matrix (test)"))
    if branch.per_class:
        specs.append(per_class_chart(branch.per_class, f"{branch.name}: per class (test)"))
    page.charts(*specs)
    if branch.per_class:
        header = ["class", "precision", "recall", "f1", "support"]
        page.table(header, [[row[k] for k in header] for row in branch.per_class])
    page.heading("Most confidently wrong")
    if branch.mistakes_sheet:
        page.pictures([branch.mistakes_sheet], lambda p: f"{branch.name}: the worst misclassified test images")
    if branch.mistakes:
        header = list(branch.mistakes[0])
        page.table(header, [[row[k] for k in header] for row in branch.mistakes])
    for kind, pictures in branch.pictures.items():
        page.heading(f"{kind.split('_', 1)[-1]} ({branch.name})")
        page.pictures(pictures, width=520)


def audit_section(page: Page, audits: list[Audit]) -> None:
    page.section("audit", "Data audit")
    for audit in audits:
        page.heading(audit.backbone)
        page.table(["count", "value"], [[k, v] for k, v in audit.counts.items()])
        page.pictures(audit.pictures, width=720)


def split_section(page: Page, split: SplitSummary) -> None:
    page.section("split", "Split")
    page.table(["count", "value"], [[k, v] for k, v in split.counts.items()])
    for title, rows, total in (
        ("Rejected images", split.rejects, split.rejects_total),
        ("Converted images", split.converted, split.converted_total),
    ):
        page.heading(f"{title}: {total}")
        if rows:
            page.table(list(rows[0]), [list(r.values()) for r in rows])
            if total > len(rows):
                page.note(f"the first {len(rows)} of {total}; the rest are in the split folder's CSV")


def stores_section(page: Page, stores: list[Store]) -> None:
    page.section("stores", "Feature stores")
    for store in stores:
        page.heading(f"{store.backbone}: {store.path}")
        rows = [[f"rows ({split})", n] for split, n in store.rows.items()]
        page.html(table_html(["attribute", "value"], [[k, v] for k, v in store.attrs.items()] + rows))


def methods_section(page: Page, results: Results) -> None:
    page.section("methods", "Other methods")
    for method in results.methods:
        page.heading(method.name)
        page.pictures(method.pictures, width=520)


def render(results: Results, title: str) -> Page:
    page = Page(title)
    results_section(page, results)
    for branch in results.branches:
        branch_section(page, branch)
    if results.methods:
        methods_section(page, results)
    if results.audits:
        audit_section(page, results.audits)
    if results.split:
        split_section(page, results.split)
    if results.stores:
        stores_section(page, results.stores)
    return page


def build_report(
    config: Config, out_dir: Path, title: str, experiments: list[dict[str, Any]] | None = None
) -> ReportSummary:
    """Write out_dir/index.html and out_dir/images/ (replacing the folder only once complete)."""
    results = collect(config, experiments)
    page = render(results, title)
    with staged_folder(out_dir) as staging:
        page.write(staging)
    return ReportSummary(out_dir / "index.html", len(page.specs), len(page.images), len(accuracy_rows(results)))
