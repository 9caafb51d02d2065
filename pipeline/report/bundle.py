"""The Vega, Vega-Lite and vega-embed JavaScript, bundled for offline pages by vl-convert-python, and the HTML
template that makes `dvc plots show` draw its charts from that bundle instead of a CDN."""

from __future__ import annotations

from functools import cache
from pathlib import Path

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
    """One script defining window.vega, window.vegaLite and window.vegaEmbed (about 0.9 MB, built in seconds)."""
    import vl_convert

    return vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)


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
