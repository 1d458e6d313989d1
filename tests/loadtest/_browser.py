"""Open HTML pages in Debian's headless Chromium through Playwright: images, errors, console messages."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class PageCheck:
    title: str
    text: str
    images: list[dict[str, object]]  # src, complete, naturalWidth
    console_errors: list[str]
    page_errors: list[str]
    failed_requests: list[str]


def open_in_chromium(*page_paths: Path) -> list[PageCheck]:
    """Load each page (file://) in one headless Chromium and report its images and every error seen."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("chromium is not installed: run `make browser` (part of `make test`)")
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            for path in page_paths:
                console: list[str] = []
                errors: list[str] = []
                failed: list[str] = []
                page = browser.new_page()
                page.on("console", lambda m, c=console: c.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, c=errors: c.append(str(e)))
                page.on("requestfailed", lambda r, c=failed: c.append(r.url))
                page.goto(path.resolve().as_uri(), wait_until="load", timeout=60_000)
                images = page.evaluate(
                    "() => Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,"
                    " naturalWidth: i.naturalWidth}))")
                out.append(PageCheck(page.title(), page.inner_text("body"), images, console, errors, failed))
                page.close()
        finally:
            browser.close()
    return out
