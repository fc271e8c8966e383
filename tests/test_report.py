"""report.html / report.md from the fixture manifest: the tables, the embedded plots, failures shown, and a real
headless-Chromium rendering that is not blank."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.manifest_schema import ManifestError
from toolkit.report import (
    artifact_rows,
    plot_nnapi_coverage,
    render_html,
    render_markdown,
    suggest_artifact,
    write_index,
    write_report,
)

SAMPLE = Path(__file__).parent / "data" / "sample_manifest.json"
CHROMIUM = "/usr/bin/chromium"
NAMES = ["tflite-full-int8", "tflite-dynamic-int8", "pte-int8-static"]


def sample() -> dict:
    return json.loads(SAMPLE.read_text(encoding="utf-8"))


def all_valid(manifest: dict) -> dict:
    """The fixture with its failing artifact repaired."""
    m = copy.deepcopy(manifest)
    for a in m["artifacts"]:
        a["valid"] = True
        for c in a["checks"]:
            c["passed"], c["failures"] = True, []
    m["validation"]["passed"] = True
    return m


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    """Written once for the module: rendering the plots is the slow part (~2 s)."""
    return write_report(sample(), tmp_path_factory.mktemp("bundle"))


def test_rows_computed_from_the_manifest():
    rows = {r.name: r for r in artifact_rows(sample())}
    assert list(rows) == NAMES
    full = rows["tflite-full-int8"]
    assert full.mb == pytest.approx(6.61248)
    assert full.x_smaller_than_base == pytest.approx(466873344 / 6612480)
    assert full.delta_points == pytest.approx((0.8899 - 0.8945) * 100)
    assert (full.emulator_cpu, full.emulator_samples, full.latency_ms) == ("cortex-a76", 32, 17.01)
    assert not rows["pte-int8-static"].valid and len(rows["pte-int8-static"].failures) == 2
    best, why = suggest_artifact(list(rows.values()))
    assert best.name == "tflite-dynamic-int8" and "inside the size and estimated-latency budgets" in why


def test_html_is_self_contained_with_table_and_plots(report):
    html = report[0].read_text(encoding="utf-8")
    for name in NAMES:
        assert f'id="row-{name}"' in html
    assert html.count('<img alt="') >= 4
    assert html.count('src="data:image/png;base64,') >= 3
    assert not re.search(r"https?://", html), "external reference in report.html"
    assert not re.search(r'<(link|script)\b|src="(?!data:)', html), "non-inline resource in report.html"
    for text in ["Cortex-A76", "NNAPI delegate not executed", "Peak memory on the device was not measured",
                 "instructions_per_ns = 3.6", "cache misses, memory bandwidth", "ESTIMATE", "torch 2.13.0+cpu",
                 "executorch 1.5.1", sample()["teacher"]["fingerprint"], "2026-11-22T18:00:00Z",
                 "128/140 nodes", "BATCH_MATMUL", "Retention", "12,288"]:  # fmt: skip
        assert text in html, text


def test_failing_artifact_shown_as_failed(report):
    html = report[0].read_text(encoding="utf-8")
    assert "1 of 3 artifacts FAILED validation" in html
    row = re.search(r'<tr class="failed" id="row-pte-int8-static">.*?</tr>', html, re.S)
    assert row and "FAILED" in row.group(0)
    failbox = re.search(r'<div class="failbox">.*?</div>', html, re.S).group(0)
    assert "pte-int8-static" in failbox and "accuracy drop 2.29 points &gt; 1.5 allowed" in failbox
    assert "tflite-full-int8" not in failbox
    assert re.search(r'id="row-tflite-full-int8">.*?VALID', html, re.S)


def test_all_valid_has_no_failures_section():
    html = render_html(all_valid(sample()), plots=[])
    assert "All 3 artifacts passed validation" in html and 'class="failbox"' not in html
    assert 'class="banner ok"' in html


def test_artifact_not_emulated_and_no_nnapi():
    m = sample()
    m["artifacts"][0]["emulator"] = None
    m["artifacts"][0]["checks"] = m["artifacts"][0]["checks"][:1]
    del m["artifacts"][0]["details"]["nnapi_coverage"]
    assert plot_nnapi_coverage(m) is None
    assert "not run" in render_html(m, plots=[]) and "not run" in render_markdown(m, plots=[])


def test_minimal_manifest_renders():
    """Only the required fields: no checks, no emulator runs, empty details and distill report."""
    m = sample()
    m["student"]["distill"] = {}
    for a in m["artifacts"]:
        a.update(details={}, checks=[], emulator=None, valid=False)
    m["validation"].update(validated=[], not_validated=[])
    html, md = render_html(m, plots=[]), render_markdown(m, plots=[])
    assert "3 of 3 artifacts FAILED validation" in html and "no check recorded a failure string" in html
    assert "| **tflite-full-int8** |" in md


def test_markdown_has_table_and_plot_files(report):
    md_path = report[1]
    md = md_path.read_text(encoding="utf-8")
    assert "| artifact | format · recipe | runtime + delegate | size MB |" in md
    assert "| **pte-int8-static** |" in md and "**FAILED**" in md
    assert "NNAPI delegate not executed" in md and "## Reproducibility" in md
    images = re.findall(r"!\[[^]]*\]\((report_assets/[^)]+\.png)\)", md)
    assert len(images) >= 4
    for rel in images:
        with Image.open(md_path.parent / rel) as png:
            assert png.format == "PNG" and png.width > 300


def test_invalid_manifest_refused(tmp_path):
    m = sample()
    del m["artifacts"][0]["sha256"]
    with pytest.raises(ManifestError, match=r"\$\.artifacts\[0\]\.sha256"):
        write_report(m, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_index_compares_profiles(tmp_path):
    second = all_valid(sample())
    second["profile"]["name"] = "android-nnapi-api31"
    html_path, md_path = write_index([sample(), second], tmp_path)
    html = html_path.read_text(encoding="utf-8")
    assert "android-nnapi/report.html" in html and "android-nnapi-api31/report.html" in html
    assert html.count('src="data:image/png;base64,') == 1 and not re.search(r"https?://", html)
    assert "Some artifacts FAILED" in html
    assert "| android-nnapi-api31 |" in md_path.read_text(encoding="utf-8")


def _screenshot(html: Path, png: Path, profile_dir: Path) -> None:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile_dir}", f"--screenshot={png}", "--window-size=1280,2400", html.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert png.is_file(), f"chromium wrote no screenshot (rc {done.returncode}):\n{done.stderr[-2000:]}"


@pytest.mark.skipif(not Path(CHROMIUM).is_file() and not shutil.which("chromium"),
                    reason=f"chromium is not installed at {CHROMIUM} (apt-get install chromium; CI installs it)")  # fmt: skip
def test_chromium_renders_a_real_page(report, tmp_path):
    png = tmp_path / "report.png"
    _screenshot(report[0], png, tmp_path / "chromium-profile")
    with Image.open(png) as shot:
        rgb = shot.convert("RGB")
    assert rgb.size == (1280, 2400)
    assert len(rgb.getcolors(maxcolors=1 << 24)) > 1000, "too few colours: blank or unstyled page"
    pixels = np.asarray(rgb).astype(int)
    non_white = (pixels.min(axis=2) < 235).mean()
    assert non_white > 0.08, f"only {non_white:.1%} of the page is not white"
    # Below the headline and table (y >= 1200 at this width) sit the plots: they must carry real colour.
    saturated = (pixels.max(axis=2) - pixels.min(axis=2) > 60)[1200:]
    assert saturated.mean() > 0.03, f"plot area has only {saturated.mean():.1%} coloured pixels"
