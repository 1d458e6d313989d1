"""The load-test report opens in a real browser (Debian's headless Chromium via Playwright): every plot renders,
nothing errors in the console, and the summary states each budget, its p95 and its margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nightshift_dev.loadtest import Budget, LoadTestResult, Span, write_report

from ._browser import open_in_chromium


def _result() -> LoadTestResult:
    rng = np.random.default_rng(1)
    r = LoadTestResult(kind="visit", command="nightshift loadtest visit --visits 3")
    r.budgets = [Budget("timeToIssueAlerts per detector", 0.1, "catalogue", 5.0, list(rng.uniform(0.05, 0.2, 60))),
                 Budget("timeToIssueAlerts per visit", 5.0, "catalogue", None, [3.0, 4.0, 4.5])]
    for v in (1, 2):
        for d in range(4):
            r.timeline += [Span(v, d, "APDB store", d * 0.1, d * 0.1 + 0.3), Span(v, d, "alerts", d * 0.1 + 0.3, 1.0)]
    r.series = {"alerts visible / s": [(t, 100.0 + t) for t in range(10)], "lag": [(t, 10.0 - t) for t in range(10)]}
    r.resources = {"alert-publisher-0": [(t * 0.5, 50.0, 200.0 + t) for t in range(20)]}
    return r


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    r = _result()
    good = write_report(r, tmp_path / "good")
    # The same report with one plot that is not an image: the check must see it (it can fail).
    bad = write_report(r, tmp_path / "bad")
    (tmp_path / "bad" / "resources.png").write_bytes(b"not a png")
    page, broken_page = open_in_chromium(good, bad)

    assert page.console_errors == [] and page.page_errors == [] and page.failed_requests == []
    # 2 histograms, 2 visit timelines, the series, the resources
    assert len(page.images) == 6
    assert all(i["complete"] and int(str(i["naturalWidth"])) > 0 for i in page.images), page.images
    detector = r.budgets[0]
    line = f"budget 0.1 s, p95 {detector.p95:.3f} s, margin {detector.margin_s:+.3f} s (MISSED"
    assert line in page.text
    assert "budget 5 s, p95" in page.text and "(met" in page.text
    again = LoadTestResult.load(tmp_path / "good" / "result.json")
    assert again.summary_line() == r.summary_line()

    assert [i["src"] for i in broken_page.images if int(str(i["naturalWidth"])) == 0] == ["resources.png"]
