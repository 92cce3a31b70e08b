"""Small fixes to the built site's HTML, as a local Sphinx extension (see _config.yml).

sphinx-thebe 0.3 and sphinx-togglebutton add their inline configuration scripts twice under
Sphinx 7.4 (once through the registry, once through the builder), after every
``html-page-context`` handler that could dedupe them. The duplicate ``const THEBE_JS_URL``
declaration is a SyntaxError in the browser's console. When the build has finished, an identical
repeat of a ``<script>`` element in a page's ``<head>`` is removed, keeping the first.

The site loads no ipywidgets JavaScript (live explorers need a kernel; their static twins need
none), so the widget state myst-nb embeds in each page is dead weight and is removed too.
"""

from __future__ import annotations

import re
from pathlib import Path

_SCRIPT = re.compile(r"[ \t]*<script\b[^>]*>.*?</script>\n?", re.DOTALL)
_WIDGET_STATE = re.compile(
    r"[ \t]*<script type=\"application/vnd\.jupyter\.widget-state\+json\">.*?</script>\n?",
    re.DOTALL,
)


def dedupe_head_scripts(html: str) -> str:
    """The page with each repeated ``<script>`` element of its ``<head>`` kept once."""
    head_end = html.find("</head>")
    if head_end < 0:
        return html
    seen: set[str] = set()

    def keep_first(match: re.Match) -> str:
        element = match.group(0).strip()
        if element in seen:
            return ""
        seen.add(element)
        return match.group(0)

    return _SCRIPT.sub(keep_first, html[:head_end]) + html[head_end:]


def drop_widget_state(html: str) -> str:
    """The page without embedded ipywidgets state (nothing on the site reads it)."""
    return _WIDGET_STATE.sub("", html)


def _fix_pages(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = drop_widget_state(dedupe_head_scripts(text))
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app):
    app.connect("build-finished", _fix_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
