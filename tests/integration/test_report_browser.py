"""The HTML incident report renders in a real browser (headless Chromium) and shows its timeline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.unit.analysis_events import at, call, event, minted
from tether.analysis.report import CALL_COLOUR, LANES, render_report
from tether.ledger.store import Ledger

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def screenshot(html_file: Path, png: Path, profile: Path) -> Image.Image:
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            "--window-size=1280,2000",
            html_file.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return Image.open(png).convert("RGB")


def markers(image: Image.Image, colour: str, min_height: int) -> dict[int, tuple[int, int]]:
    """Columns holding a vertical run of at least `min_height` pixels of exactly `colour`:
    x -> (top, bottom) of the longest run."""
    target, (width, height) = rgb(colour), image.size
    pixels = image.load()
    assert pixels is not None
    found: dict[int, tuple[int, int]] = {}
    for x in range(width):
        run_start, best = None, (0, -1)
        for y in range(height + 1):
            if y < height and pixels[x, y] == target:
                run_start = y if run_start is None else run_start
                continue
            if run_start is not None and y - run_start > best[1] - best[0]:
                best = (run_start, y - 1)
            run_start = None
        if best[1] - best[0] + 1 >= min_height:
            found[x] = best
    return found


def groups(columns: dict[int, tuple[int, int]]) -> list[list[int]]:
    """Adjacent columns grouped into markers."""
    result: list[list[int]] = []
    for x in sorted(columns):
        if result and x - result[-1][-1] == 1:
            result[-1].append(x)
        else:
            result.append([x])
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_with_its_timeline(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    for item in [
        event("run.started", "run_a", at(0)),
        minted("run_a", at(0, 5)),
        *(call("run_a", at(minute, 30)) for minute in (1, 3, 6)),
        call("run_a", at(8), method="DELETE", kind="api.denied"),
        event("run.ended", "run_a", at(10)),
    ]:
        ledger.append_sync(item)
    html = render_report(ledger, "run_a")
    assert html is not None
    page = tmp_path / "report.html"
    page.write_text(html)
    image = screenshot(page, tmp_path / "shot.png", tmp_path / "profile")

    calls = groups(markers(image, CALL_COLOUR, min_height=15))
    assert len(calls) == 3, f"expected three call markers in the chart, found {len(calls)}"
    # Evenly placed by time: 1:30, 3:30 and 6:30 of a ten-minute run.
    first, second, third = (sum(group) / len(group) for group in calls)
    assert second - first < third - second
    denied_colour = dict((name, colour) for name, _, colour in LANES)["denied"]
    denied = groups(markers(image, denied_colour, min_height=15))
    assert len(denied) == 1
    # The denial sits in the lane below the calls, to their right (it came last).
    denied_x = denied[0][0]
    denied_top = markers(image, denied_colour, 15)[denied_x][0]
    call_top = markers(image, CALL_COLOUR, 15)[calls[0][0]][0]
    assert denied_top > call_top and denied_x > calls[-1][-1]


def test_marker_finder_sees_nothing_in_a_blank_page(tmp_path: Path) -> None:
    image = Image.new("RGB", (50, 50), (255, 255, 255))
    assert markers(image, CALL_COLOUR, 15) == {}
    image.paste(rgb(CALL_COLOUR), (10, 10, 18, 30))
    assert [len(g) for g in groups(markers(image, CALL_COLOUR, 15))] == [8]
