"""What the browser tests share: Debian's chromium and its flags, and an app served on loopback.

Why a module and not a conftest fixture: each browser test file scopes its own server (a database
with its own users), so they share the way to start one, not one server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SKIP_REASON = "Debian chromium not installed at /usr/bin/chromium (.ci/run installs it with apt-get install chromium)"


@contextmanager
def serve_on_loopback(app: Any, timeout_s: float = 20) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


# The layout and accessibility checks every page gets at desktop and phone width (test_pages_a11y.py, the SMART
# pages in test_sandbox_browser.py, the dosing report in test_dosing_browser.py).
WIDTHS = {"desktop": (1280, 900), "phone": (375, 740)}

# Elements wider than the screen, or whose text runs out of them past its edge: ignored inside a container
# that scrolls (or clips) sideways on purpose, and the skip link, which waits off-screen until it is focused.
_WIDE = """(w) => [...document.querySelectorAll('body *')].filter(el => {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || r.right <= 0) return false;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const ox = getComputedStyle(p).overflowX;
        if (ox === 'auto' || ox === 'scroll' || ox === 'hidden') return false;
    }
    return Math.max(r.right, r.left + el.scrollWidth) > w + 1;  // the box, or text running out of it
}).slice(0, 5).map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
                   + (typeof el.className === 'string' && el.className ? '.' + el.className.split(' ').join('.') : '')
                   + ' ' + Math.round(Math.max(el.getBoundingClientRect().width, el.scrollWidth)) + 'px: '
                   + (el.textContent || '').trim().slice(0, 50))"""


def does_not_fit(page: Any, width: int) -> list[str]:
    """What does not fit the screen: the document's own overflow, then the elements wider than the screen
    (empty when the page needs no horizontal scrolling)."""
    problems = []
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    if scroll > width:
        problems.append(f"document is {scroll} px wide")
    return problems + page.evaluate(_WIDE, width)


def axe_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the page: (rule, impact, first offending nodes)."""
    from axe_playwright_python.sync_playwright import Axe

    tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": tags}, "resultTypes": ["violations"]})
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]]


def serious_violations(page: Any) -> list[tuple[str, str, list[Any]]]:
    """The serious and critical axe violations (the ones no page may have)."""
    return [v for v in axe_violations(page) if v[1] in ("serious", "critical")]
