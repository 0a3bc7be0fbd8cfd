"""`dapbench report` end to end on synthetic run folders: the HTML page in a real headless Chromium (no console
errors, figures visible in its screenshot), the PDF through poppler's `pdftoppm`, and the numbers in it."""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dapbench.analysis.synthetic import write_grid, write_run
from tests.conftest import cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PDFTOPPM = shutil.which("pdftoppm")
REQUIRE = os.environ.get("DAPBENCH_REQUIRE_BROWSER") == "1"  # set by .ci/run: missing tools fail, not skip
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
TASKS, LABELS, SEEDS, EPOCHS = ["hopper", "halfcheetah", "striker"], ["ppo", "ppo-dap", "abppo"], [0, 1, 2], 45


def _need(tool: str | None, name: str) -> str:
    if tool is None:
        if REQUIRE:
            pytest.fail(f"{name} is not installed (.ci/run installs it with apt)")
        pytest.skip(f"{name} is not installed (apt-get install chromium poppler-utils)")
    return tool


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1300, 6000)) -> list[str]:
    """Open `page` in headless Chromium (fresh profile), save a screenshot; return its console messages."""
    chromium = _need(CHROMIUM, "chromium")
    profile = png.parent / f".profile-{png.stem}"
    out = subprocess.run([chromium, *CHROME_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                          f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert png.is_file(), f"chromium wrote no screenshot (exit {out.returncode}): {out.stderr[-2000:]}"
    return [line for line in out.stderr.splitlines() if ":CONSOLE" in line]


def saturated_pixels(png: Path) -> int:
    """Pixels in clearly coloured ink (HSV saturation > 100/255, not dark): plot lines, bars, shaded CIs. Text,
    table rules and the page background are grey or white and do not count."""
    hsv = np.asarray(Image.open(png).convert("HSV")).astype(int)
    return int(((hsv[..., 1] > 100) & (hsv[..., 2] > 60)).sum())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 tasks x 3 algorithms x 3 seeds x 45 epochs results folder plus one failed run, and its report
    (the CLI's output in `cli.txt`)."""
    root = tmp_path_factory.mktemp("report")
    results = root / "synth"
    write_grid(results, TASKS, LABELS, SEEDS, EPOCHS)
    write_run(results, "hopper", "ppo", 3, np.arange(10.0), epochs=EPOCHS, state="failed")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli("report", results, "-o", root / "out", "--reps", 300, "--final-n", 5) == 0
    (root / "out" / "cli.txt").write_text(out.getvalue())
    return root / "out"


def test_report_html_opens_in_chromium_without_console_errors_and_shows_figures(report: Path) -> None:
    html = (report / "report.html").read_text()
    n_figs = html.count('<img alt="')
    assert n_figs == 7 and 'data-figures="7"' in html and "http" not in html.split("<body")[0], "self-contained"
    console = screenshot(report / "report.html", report / "shot.png")
    assert console == [], f"console messages: {console}"
    ink = saturated_pixels(report / "shot.png")
    # Control: the same page with its figures removed has only the coloured borders of its notes.
    bare = report / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", html))
    assert screenshot(bare, report / "bare.png") == []
    bare_ink = saturated_pixels(report / "bare.png")
    assert ink > 20_000 and ink > 10 * bare_ink, (ink, bare_ink)


def test_console_check_catches_script_errors_and_broken_figures(report: Path) -> None:
    page = report / "js-error.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    assert any("Uncaught ReferenceError: undefinedFunction" in m for m in screenshot(page, report / "js.png",
                                                                                  (400, 300)))
    html = (report / "report.html").read_text()
    first = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    broken = report / "broken.html"
    broken.write_text(html.replace(first.group(1), base64.b64encode(b"not a png").decode()))
    msgs = screenshot(broken, report / "broken.png", (1300, 1500))
    assert any("figure failed to load: learning curves" in m for m in msgs), msgs


def test_pdf_renders_every_page_with_pdftoppm(report: Path) -> None:
    pdftoppm = _need(PDFTOPPM, "pdftoppm (poppler-utils)")
    pages_dir = report / "pages"
    pages_dir.mkdir(exist_ok=True)
    subprocess.run([pdftoppm, "-r", "30", "-png", report / "report.pdf", pages_dir / "p"], check=True, timeout=120)
    pngs = sorted(pages_dir.glob("p-*.png"))
    announced = re.search(r"report\.pdf \((\d+) pages\)", " ".join((report / "cli.txt").read_text().split()))
    assert announced, (report / "cli.txt").read_text()
    # every section (7 <h2>) starts a page in print, and poppler finds the pages WeasyPrint wrote
    assert len(pngs) == int(announced.group(1)) >= 7
    for p in pngs:
        gray = np.asarray(Image.open(p).convert("L"))
        assert (gray < 200).mean() > 0.002, f"{p.name} is blank"


def test_report_numbers_and_provenance(report: Path) -> None:
    html = (report / "report.html").read_text()
    runs = pd.read_csv(report / "runs.csv")
    assert len(runs) == len(TASKS) * len(LABELS) * len(SEEDS), "the failed run is dropped"
    assert "dropped 1 of 28 runs that are not complete" in html and "hopper/ppo/seed_3: failed at epoch 10/45" in html
    # Table II cell: mean ± sample std over seeds of the final return, as runs.csv has it
    g = runs[(runs["task"] == "hopper") & (runs["label"] == "ppo-dap")]["final_return"]
    assert f"{g.mean():,.1f} ± {g.std(ddof=1):,.1f}" in html
    assert "abppo †" in html and "reconstruction: " in html, "a reconstructed baseline is marked, with why"
    assert "left out of normalised aggregates" not in html, "every task has a measured reference (since v2)"
    assert "300 repetitions, seed 0" in html and ">synthetic0<" in html
    aggs = pd.read_csv(report / "aggregates.csv")
    final = "final return (mean of the last 5 evaluations)"
    assert set(aggs["scope"]) == {f"normalised {final}", "normalised ALC@40", f"probability of improvement ({final})"}
    iqm = aggs[(aggs["scope"] == f"normalised {final}") & (aggs["metric"] == "IQM")].set_index("algorithm")
    assert (iqm["ci_low"] <= iqm["point"]).all() and (iqm["point"] <= iqm["ci_high"]).all()
    assert iqm.loc["abppo", "point"] > iqm.loc["ppo", "point"], "the synthetic skill order shows"
    # every table of the page beside it as CSV, cell text as printed
    final_t = pd.read_csv(report / "tables" / "final.csv", dtype=str)
    assert f"{g.mean():,.1f} ± {g.std(ddof=1):,.1f}" in final_t.to_numpy().ravel().tolist()
    claims = pd.read_csv(report / "tables" / "claims.csv", dtype=str)
    assert len(claims) >= 4 and all(str(v) in html for v in claims.iloc[:, 0])


# ----- figures people read at a glance, and numbers in every report ----------------------------------------------
def test_the_legend_covers_every_algorithm_and_step_ticks_are_readable(tmp_path: Path) -> None:
    """Eight algorithms drawn on one task over 20k steps (the quick suite's shape): one legend entry each, step
    ticks in k with no two labels overlapping once rendered."""
    from dapbench.analysis.load import load_results
    from dapbench.report import figures

    labels = ["ppo", "ppo-dap", "ppo-gc", "abppo", "ppo-arc", "dtql", "ppo-dtr", "ppo-diffaug"]
    for i, lab in enumerate(labels):
        for seed in (0, 1):
            write_run(tmp_path, "hopper", lab, seed, np.arange(4.0) * (i + 1) + seed, horizon_steps=None)
    curves = load_results(tmp_path).curves
    fig = figures.learning_curves_figure(curves, labels, {"hopper": "Hopper-v5"}, figures.palette(labels))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    assert len(ticks) >= 2 and all(re.fullmatch(r"\d+(\.\d+)?k|0", t.get_text()) for t in ticks), \
        [t.get_text() for t in ticks]
    boxes = [t.get_window_extent(renderer) for t in ticks]
    for a, b in itertools.pairwise(boxes):
        assert a.x1 <= b.x0, f"tick labels overlap: {[t.get_text() for t in ticks]}"
    assert figures.steps_text(200_000) == "200k" and figures.steps_text(1_500_000) == "1.5M"


def _cells(html: str) -> list[list[str]]:
    """The data cells of every table in the page, per table."""
    return [re.findall(r"<td[^>]*>(.*?)</td>", body, re.S) for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.S)]


def test_a_short_suite_report_names_its_window_and_has_numbers_everywhere(tmp_path: Path) -> None:
    """Runs of 4 epochs under their own 20k horizon (the quick suite's shape): no ALC@40 and no 5-evaluation final
    return exist, so the report shows the ALC over the 20k steps every run has and the final return over the last
    4 evaluations, each named for what it is, and no table is all dashes."""
    rng = np.random.default_rng(0)
    for task in ("hopper", "halfcheetah"):
        for i, lab in enumerate(("ppo", "ppo-dap")):
            for seed in (0, 1):
                write_run(tmp_path / "r", task, lab, seed, 100 * (i + 1) * np.arange(1.0, 5.0) + rng.normal(size=4),
                          horizon_steps=None)
    assert cli("report", tmp_path / "r", "-o", tmp_path / "out", "--reps", 200, "--no-pdf") == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert "ALC over the first 20k steps" in html and "Not the protocol&#39;s ALC@40" in html
    assert "schedules scaled to a 20k horizon, not 1M" in html
    assert "final return over the last 4 evaluations" in html
    for cells in _cells(html):
        assert any(c.strip() not in ("-", "") for c in cells), cells
    aggs = pd.read_csv(tmp_path / "out" / "aggregates.csv")
    assert {"normalised ALC over the first 20k steps", "normalised final return over the last 4 evaluations "
            "(fewer than the 5 of the report's definition: the runs are short)"} <= set(aggs["scope"])


def test_normalised_aggregates_cover_all_eight_tasks(tmp_path: Path) -> None:
    tasks = ["ant", "halfcheetah", "hopper", "humanoidstandup", "pusher", "striker", "swimmer", "walker2d"]
    write_grid(tmp_path / "r", tasks, ["ppo", "ppo-dap"], [0, 1], 40)
    assert cli("report", tmp_path / "r", "-o", tmp_path / "out", "--reps", 200, "--no-pdf") == 0
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("over 8 tasks (") == 2, "final return and ALC aggregates both cover every task"
    assert "left out of normalised aggregates" not in html
    assert "P(ppo-dap &gt; ppo) on ALC@40" in html and "on 8 of 8 tasks" not in html  # all eight: "on all 8 tasks"
    assert "on all 8 tasks" in html
