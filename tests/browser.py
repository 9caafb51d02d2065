"""Open a local HTML page in headless Chromium (Debian's `chromium`, driven by Playwright) with the network
off, and report what a reader would see: console errors, network requests attempted, charts drawn, images
loaded. Tests call `require_chromium()` first: it skips, saying why, on a machine without one."""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")
RENDER_TIMEOUT_MS = 20_000  # a page that draws offline does so in about a second

CHARTS_SETTLED = """(selector) => [...document.querySelectorAll(selector)].every(
    (div) => div.querySelector("svg, canvas") || div.textContent.includes("failed"))"""
# per chart container: its data marks (Vega's `role-mark` groups' children, SVG) or its canvas's painted pixels
CHART_STATE = """(selector) => [...document.querySelectorAll(selector)].map((div) => {
    const canvas = div.querySelector("canvas");
    let painted = 0;
    if (canvas && canvas.width > 0 && canvas.height > 0) {
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
    }
    return {id: div.id, svgMarks: div.querySelectorAll("g.role-mark > *").length, painted: painted,
            text: div.textContent.slice(0, 200)};
})"""
IMAGE_STATE = """() => [...document.images].map(
    (img) => ({src: img.getAttribute("src"), complete: img.complete, width: img.naturalWidth}))"""


@dataclass
class Seen:
    """What the page did in the browser."""

    console_errors: list[str] = field(default_factory=list)
    network_requests: list[str] = field(default_factory=list)  # every non-file URL the page asked for (all refused)
    charts: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)

    def undrawn_charts(self) -> list[dict]:
        return [c for c in self.charts if c["svgMarks"] == 0 and c["painted"] == 0]

    def broken_images(self) -> list[dict]:
        return [i for i in self.images if not i["complete"] or i["width"] == 0]


def chromium_path() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def require_chromium() -> str:
    """The system Chromium's path; skips the test, saying why, where it or Playwright is missing."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` package (apt-get install -y chromium)")
    pytest.importorskip("playwright", reason="Playwright is not installed: pip install -e '.[browser]'")
    return path


def open_offline(page_path: Path, chart_selector: str, screenshot: Path | None = None) -> Seen:
    """Load `page_path` from a file:// URL with the network off (every non-file request refused and recorded),
    wait until every chart container holds a drawing (or an error), and read the page's state."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    seen = Seen()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=require_chromium(),
            args=["--no-sandbox", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"],
        )
        try:
            context = browser.new_context(offline=True, viewport={"width": 1400, "height": 900})

            def refuse(route) -> None:
                seen.network_requests.append(route.request.url)
                route.abort()

            context.route(lambda url: not url.startswith("file:"), refuse)
            page = context.new_page()
            page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda err: seen.console_errors.append(f"uncaught: {err}"))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            with contextlib.suppress(PlaywrightTimeout):  # read the state anyway: undrawn charts are the finding
                page.wait_for_function(CHARTS_SETTLED, arg=chart_selector, timeout=RENDER_TIMEOUT_MS)
            seen.charts = page.evaluate(CHART_STATE, chart_selector)
            seen.images = page.evaluate(IMAGE_STATE)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen
