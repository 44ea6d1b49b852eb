"""The HTML report in a real browser: headless Chromium (Debian's package) opens the file
from disk. No console error, every image decoded, nothing fetched but the file itself and its
inline data, the key numbers those of ``evaluate --json``, the slider moving the frames, the
table sorting; a screenshot of each page is saved for review (see conftest's ``artifacts``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from chromium import Chromium, find_chromium

from vaelab.cli.main import main
from vaelab.runs import load_run

READY = "document.documentElement.dataset.vaelab === 'ready'"
MB = 1_000_000


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.skip("no chromium on this machine: bash scripts/setup.sh --dev installs "
                    "Debian's package (as root, with apt-get)")
    chrome = Chromium(executable)
    try:
        yield chrome
    finally:
        chrome.close()
    assert chrome.proc.returncode is not None  # the browser is stopped


def _open(browser: Chromium, path) -> None:  # noqa: ANN001
    browser.events.clear()
    browser.open(path.as_uri(), READY)


def _checks_every_page_passes(browser: Chromium, path) -> None:  # noqa: ANN001
    assert browser.console_errors() == []
    images = browser.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, "
                              "i.naturalWidth])")
    assert images and all(done and width > 0 for _, done, width in images), images
    foreign = [u for u in browser.requested_urls()
               if not (u == path.as_uri() or u.startswith(("data:", "blob:")))]
    assert foreign == []  # nothing fetched: no network, no other file


@pytest.fixture(scope="module")
def evaluated(evaluated_run, tmp_path_factory):
    """A copy of the session's evaluated run, with its report written by the CLI."""
    run = shutil.copytree(evaluated_run, tmp_path_factory.mktemp("browser") / "run")
    assert main(["report", str(run), "-o", str(run / "r.html")]) == 0
    return run


def _numbers_match(browser: Chromium, ev: dict) -> None:
    shown = browser.evaluate("Object.fromEntries(Array.from(document.querySelectorAll("
                             "'td[data-key]')).map(td => [td.dataset.key, "
                             "[Number(td.dataset.value), td.textContent]]))")
    for key in ("nll", "elbo", "entropy", "nll_gap"):
        value, text = shown[key]
        assert value == ev[key] and text == f"{ev[key]:.4f} ± {ev[f'{key}_stderr']:.4f}"
    for key in ("c2st_accuracy", "mmd2", "energy", "precision", "recall"):
        for part in ("value", "floor"):
            value, text = shown[f"{key}.{part}"]
            assert value == ev["sample_metrics"][key][part]
            assert text == f"{ev['sample_metrics'][key][part]:.4g}"
    body = browser.evaluate("document.body.innerText")
    c2st = ev["sample_metrics"]["c2st_accuracy"]["value"]
    assert f"{ev['nll_gap']:.4f}" in body and f"{c2st:.4g}" in body


def test_one_run_report_in_chromium(browser, evaluated, artifacts):
    path = evaluated / "r.html"
    assert path.stat().st_size < 5 * MB
    _open(browser, path)
    _checks_every_page_passes(browser, path)
    _numbers_match(browser, json.loads((evaluated / "eval.json").read_text()))
    plots = browser.evaluate("document.querySelectorAll('div.plot .main-svg').length")
    assert plots >= 4 * 2  # panels, curves, density, convergence (each svg has 2+ layers)

    # the slider: a real click at its left end moves the three panels to the first frame
    frames = load_run(evaluated).frames
    panels = "document.querySelectorAll('div.plot')[0]"
    browser.evaluate(f"{panels}.scrollIntoView()")
    rect = browser.evaluate(f"(() => {{ const r = {panels}.querySelector("
                            "'.slider-rail-touch-rect').getBoundingClientRect(); "
                            "return [r.left, r.top, r.width, r.height]; })()")
    generated = f"Array.from({panels}._fullData[2].x)"
    before = browser.evaluate(generated)
    assert before[:5] == pytest.approx(frames[-1].generated[:5, 0].tolist(), abs=1e-5)
    browser.click(rect[0] + 3, rect[1] + rect[3] / 2)
    first = float(frames[0].generated[0, 0])
    browser.wait(f"{panels}._fullLayout.sliders[0].active === 0 && "
                 f"Math.abs({panels}._fullData[2].x[0] - {first!r}) < 1e-5")  # animated
    after = browser.evaluate(generated)
    assert after[:5] == pytest.approx(frames[0].generated[:5, 0].tolist(), abs=1e-5)
    label = browser.evaluate(f"{panels}.querySelector('.slider-group text').textContent")
    assert label == f"step {frames[0].step}"
    browser.evaluate("window.scrollTo(0, 0)")
    print(browser.screenshot(artifacts / "report_tiny_run.png"))


def test_group_report_sorts_in_chromium(browser, tmp_path, artifacts):
    out = tmp_path / "g"
    assert main(["train", "--preset", "seed", "--steps", "60", "--batch-size", "64",
                 "--log-every", "20", "--frame-every", "30", "--set", "display.points=100",
                 "--device", "cpu", "--quiet", "--no-figures", "--seeds", "3",
                 "--out", str(out)]) == 0
    path = out / "report.html"
    _open(browser, path)
    _checks_every_page_passes(browser, path)
    order = "Array.from(document.querySelectorAll('table.sortable tbody tr')).map(r => " \
            "r.cells[0].textContent)"
    assert browser.evaluate(order) == ["seed-0", "seed-1", "seed-2"]
    for _ in range(2):  # click the "seed" header twice: ascending, then descending
        rect = browser.evaluate("(() => { const th = Array.from(document.querySelectorAll("
                                "'table.sortable th')).find(t => t.textContent === 'seed'); "
                                "const r = th.getBoundingClientRect(); "
                                "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        browser.click(*rect)
    assert browser.evaluate(order) == ["seed-2", "seed-1", "seed-0"]
    print(browser.screenshot(artifacts / "report_group.png"))


@pytest.mark.slow
def test_seed_preset_acceptance_in_chromium(browser, tmp_path, artifacts):
    """train --preset seed, evaluate --json, report -o: renders with no console error and no
    network, under 5 MB, showing the gap and C2ST of eval.json (about 2 minutes)."""
    run = tmp_path / "R"
    for args in (["train", "--preset", "seed", "--out", str(run), "--quiet"],
                 ["evaluate", str(run), "--json", str(run / "eval.json")],
                 ["report", str(run), "-o", str(run / "r.html")]):
        res = subprocess.run([sys.executable, "-m", "vaelab", *args], capture_output=True,
                             text=True, timeout=900)
        assert res.returncode == 0, res.stderr
    path = run / "r.html"
    assert path.stat().st_size < 5 * MB
    _open(browser, path)
    _checks_every_page_passes(browser, path)
    _numbers_match(browser, json.loads((run / "eval.json").read_text()))
    print(browser.screenshot(artifacts / "report_seed_preset.png"))
