"""The Vega, Vega-Lite and vega-embed JavaScript, bundled for offline pages by vl-convert-python, and the HTML
template that makes `dvc plots show` draw its charts from that bundle instead of a CDN."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from pipeline.core.atomic import atomic_file

VEGA_LITE_VERSION = "5.21"  # DVC's plot templates are Vega-Lite v5 specs; the latest v5 vl-convert bundles

DVC_TEMPLATE_HEAD = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots</title>
    <!-- vega, vega-lite and vega-embed, inlined: the page draws its charts with no network.
         Written by `python -m pipeline report --dvc-template .dvc/plots.html`. -->
    <script type="text/javascript">
"""
DVC_TEMPLATE_TAIL = """
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


@cache
def vega_bundle() -> str:
    """One script defining window.vega, window.vegaLite and window.vegaEmbed (about 0.9 MB). vl-convert builds it
    in seconds; the same versions always give the same bundle, so it is kept in the user's cache folder and
    built again only for other versions (or when the cached file does not define vegaEmbed)."""
    import vl_convert

    cached = bundle_cache_path(vl_convert.__version__)
    if cached.is_file() and "vegaEmbed" in (text := cached.read_text(encoding="utf-8")):
        return text
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    try:
        with atomic_file(cached) as partial:
            partial.write_text(bundle, encoding="utf-8")
    except OSError:  # a read-only home: build it each time
        pass
    return bundle


def bundle_cache_path(vl_convert_version: str) -> Path:
    """$XDG_CACHE_HOME (or ~/.cache)/convnet-feature-store/vega-bundle-<versions>.js"""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "convnet-feature-store" / f"vega-bundle-vl{VEGA_LITE_VERSION}-vlconvert{vl_convert_version}.js"


def script_safe(source: str) -> str:
    """`source` as the body of an inline <script>: no `</script` can end the element early."""
    return source.replace("</script", "<\\/script")


def dvc_template() -> str:
    """An HTML template for `dvc plots show` (plots.html_template): DVC's placeholders {refresh_tag} and
    {plot_divs}, the bundle inlined, and no {scripts} placeholder, so DVC adds no CDN script tags."""
    return DVC_TEMPLATE_HEAD + script_safe(vega_bundle()) + DVC_TEMPLATE_TAIL


def write_dvc_template(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dvc_template(), encoding="utf-8")
    return path
