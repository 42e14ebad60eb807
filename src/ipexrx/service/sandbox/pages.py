"""Rendering for the sandbox's pages: its own Jinja2 templates, and card details from Markdown.

Cards carry their ``detail`` in GitHub-flavoured Markdown. The sandbox shows the subset ipexrx's
cards use - paragraphs, ``**bold**``, ``_italic_``, `` `code` ``, ``- `` lists and
``[text](https://...)`` links - after escaping all HTML, so a card can never put markup or a
script on the page; links other than http(s) are shown as text.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

from fastapi import Request
from markupsafe import Markup

_LINK = re.compile(r"\[((?:\\\]|[^\]])+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w\\])_(.+?)_(?!\w)")
_CODE = re.compile(r"`([^`]+)`")


@lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("ipexrx.service.sandbox", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["markdown"] = markdown
    return env


def render(request: Request, template: str, **context: Any) -> str:
    sb = request.app.state.sandbox
    return str(_env().get_template(template).render(app_url=sb.app_url, fhir_base=sb.fhir_base, **context))


def _inline(text: str) -> str:
    """One line of Markdown to HTML; ``text`` is already HTML-escaped."""
    codes: list[str] = []

    def keep_code(m: re.Match[str]) -> str:
        codes.append(f"<code>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _CODE.sub(keep_code, text)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2).replace('"', "%22")
        return f'<a href="{url}" rel="noopener noreferrer">{label}</a>'

    text = _LINK.sub(link, text)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _ITALIC.sub(r"<em>\1</em>", text)
    text = text.replace("\\[", "[").replace("\\]", "]")
    # the card escaped < and > as entities, which escaping again would show literally
    text = text.replace("&amp;lt;", "&lt;").replace("&amp;gt;", "&gt;")
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def markdown(source: Any) -> Markup:
    """The Markdown subset of CDS cards as safe HTML."""
    blocks = re.split(r"\n\s*\n", str(source or "").strip())
    out = []
    for block in blocks:
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if all(ln.lstrip().startswith("- ") for ln in lines):
            items = "".join(f"<li>{_inline(html.escape(ln.lstrip()[2:], quote=False))}</li>" for ln in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(html.escape(' '.join(ln.strip() for ln in lines), quote=False))}</p>")
    return Markup("\n".join(out))  # noqa: S704 - built from escaped text only
