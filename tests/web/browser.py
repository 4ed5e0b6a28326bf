"""What the browser tests share: a real `healthtwin serve` over a small demo data folder, headless Debian
Chromium driven by Playwright, axe-core from the project's node_modules, and the artifacts (screenshots,
page weights and timings) kept in tests/web/artifacts/ (gitignored)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("HEALTHTWIN_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("HEALTHTWIN_WEB_ARTIFACTS", ROOT / "tests" / "web" / "artifacts"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
VIEWPORTS = {"phone": {"width": 360, "height": 780}, "desktop": {"width": 1280, "height": 900}}


def requirements() -> None:
    """Skips the calling test, saying why, where the browser, Playwright or axe-core is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                    "HEALTHTWIN_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser tests skipped: Playwright for Python is not installed (pip install -e '.[test]')")
    if not AXE.exists():
        pytest.skip(f"browser tests skipped: axe-core is not installed at {AXE} (npm ci --ignore-scripts)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def demo_server(folder: Path, patients: int = int(os.environ.get("HEALTHTWIN_WEB_PATIENTS", "40")),
                port: int | None = None, env: dict[str, str] | None = None):
    """`healthtwin demo --no-serve` into `folder` (its demo accounts included), then `healthtwin serve` on a
    free port (or `port`) with that public URL and `env` added; yields (base URL, the demo passwords)."""
    build = subprocess.run([sys.executable, "-m", "healthtwin.cli", "demo", "--data-dir", str(folder), "--patients",
                            str(patients), "--no-serve", "--end-date", "2026-12-01"], env=cli_env(),
                           capture_output=True, timeout=300)
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    with serve(folder, port, env) as base:
        yield base, orjson.loads((folder / "demo-users.json").read_bytes())


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@contextlib.contextmanager
def serve(folder: Path, port: int | None = None, env: dict[str, str] | None = None):
    """`healthtwin serve --data-dir folder` on `port` (a free one if None) with that public URL; yields the URL
    once /health answers, and stops the server after."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(folder / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "healthtwin.cli", "serve", "--data-dir", str(folder), "--port",
                             str(port)], env={**cli_env(), "HEALTHTWIN_PUBLIC_URL": base, "HEALTHTWIN_RATE_LIMIT": "off",
                                              **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


class Browser:
    """One headless Chromium for a test module; pages opened per persona, checked and photographed."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        self.axe = AXE.read_text()
        self.records: list[dict[str, Any]] = []
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()
        existing = orjson.loads((ARTIFACTS / "pages.json").read_bytes()) if (ARTIFACTS / "pages.json").exists() else []
        names = {r["name"] for r in self.records}
        merged = [r for r in existing if r["name"] not in names] + self.records
        (ARTIFACTS / "pages.json").write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))

    def context(self, viewport: str = "phone", **kwargs: Any) -> Any:
        """A fresh browser context (its own cookies) whose console records any CSP violation."""
        ctx = self.browser.new_context(viewport=VIEWPORTS[viewport], accept_downloads=True, locale="az-AZ",
                                       **kwargs)
        ctx.csp_violations = []  # type: ignore[attr-defined]
        ctx.on("console", lambda msg: ctx.csp_violations.append(msg.text)  # type: ignore[attr-defined]
               if "Content Security Policy" in msg.text else None)
        return ctx

    def check(self, page: Any, name: str) -> dict[str, Any]:
        """axe-core's WCAG 2.2 AA rules on the page (the violations), whether it scrolls sideways at its width,
        its weight and timings, and a screenshot at the phone and desktop widths."""
        page.evaluate(self.axe)  # through the DevTools protocol: the page's CSP rightly refuses injected scripts
        result = page.evaluate("async (tags) => { const r = await axe.run(document, {runOnly: {type: 'tag', "
                               "values: tags}, resultTypes: ['violations']}); return r.violations.map(v => "
                               "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => "
                               "n.target.join(' '))})); }", AXE_TAGS)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        timing = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            return {ttfb_ms: n.responseStart - n.requestStart, dom_ms: n.domContentLoadedEventEnd - n.startTime,
                    load_ms: n.loadEventEnd - n.startTime, html_bytes: n.encodedBodySize,
                    total_bytes: n.encodedBodySize + res.reduce((a, r) => a + (r.encodedBodySize || 0), 0),
                    requests: 1 + res.length}; }""")
        width = page.viewport_size["width"]
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        other = VIEWPORTS["desktop"] if width < 1000 else VIEWPORTS["phone"]
        page.set_viewport_size(other)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{other['width']}.png"), full_page=True)
        page.set_viewport_size({"width": width, "height": VIEWPORTS["phone" if width < 1000 else "desktop"]["height"]})
        record = {"name": name, "url": page.url.split("?")[0], "violations": result, "overflow_px": overflow,
                  **{k: round(v, 1) for k, v in timing.items()}}
        self.records.append(record)
        return record


def copy_to_docs(names: list[str]) -> None:
    """HEALTHTWIN_WEB_DOCS=1 copies the named screenshots into docs/web/ (the ones docs/web.md shows)."""
    if os.environ.get("HEALTHTWIN_WEB_DOCS") != "1":
        return
    target = ROOT / "docs" / "web"
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(ARTIFACTS / name, target / name)
