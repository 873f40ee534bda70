"""The weekly e-mail in a real browser (headless Chromium): at a 390 px phone and a 640 px mail
pane nothing scrolls sideways and the figures are above the fold, at 10 and at 500 purchases
needing a person. Screenshots are kept under out/screenshots/ (the path is printed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.reports.render import render_weekly
from tests.integration.chromium import Chromium, chromium_binary
from tests.unit.mail_world import heavy_report

SHOTS = Path(__file__).parents[2] / "out" / "screenshots"
# A phone (iPhone 12 to 15: 390 x 844 CSS pixels) and a desktop client's reading pane.
VIEWPORTS = ((390, 844), (640, 800))
LAYOUT = """(() => {
  const figures = document.getElementById("figures").getBoundingClientRect();
  return {scrollWidth: document.documentElement.scrollWidth,
          figuresBottom: figures.bottom, figuresWidth: figures.width};
})()"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (CI installs Debian's package in .ci/run)")
    with Chromium(binary) as chromium:
        yield chromium


@pytest.mark.parametrize("needing", [10, 500])
def test_the_weekly_mail_fits_a_phone_and_shows_the_figures_first(
        browser: Chromium, tmp_path: Path, needing: int) -> None:
    page = tmp_path / f"weekly-{needing}.html"
    page.write_text(render_weekly(heavy_report(needing)).html, encoding="utf-8")
    for width, height in VIEWPORTS:
        browser.open(page, width, height)
        layout = browser.evaluate(LAYOUT)
        shot = browser.screenshot(SHOTS / f"weekly-{needing}-needing-{width}px.png")
        print(f"{width}x{height}, {needing} needing a person: {layout}; screenshot {shot}")
        assert layout["scrollWidth"] <= width, f"scrolls sideways at {width} px"
        assert layout["figuresBottom"] <= height, f"figures below the fold at {width} px"
        assert layout["figuresWidth"] > 0.8 * min(width, 640) - 40  # the tiles use the width
