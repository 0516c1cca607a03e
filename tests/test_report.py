"""The HTML report: structure, images, escaping, held-out points, the command, a browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.persistence import diagnostics_from_idata, save_fit
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.evaluation.backtest import backtest
from bimix_bayes.report.html import SECTIONS, build_report, write_report
from tests.test_cli import run

EVIL = "<script>alert(1)</script>"
STEPS = np.geomspace(500, 20_000, 10)


@pytest.fixture(scope="module")
def study():
    """A simulated study whose first domain is called like a script tag; the last three
    checkpoints of each run are held out."""
    truth = default_parameters().rename(index={"web": EVIL})
    mixtures = random_mixtures(12, list(truth.index), seed=8)
    mixtures.index = [f"run<{i}>" for i in range(len(mixtures))]
    data = simulate(truth, mixtures, STEPS, seed=8)
    cut = STEPS[6]
    early = data.observations[data.observations["step"] <= cut]
    late = data.observations[data.observations["step"] > cut]
    fit_data = type(data).from_frames(data.mixtures, early, source="simulated <study>")
    holdout = type(data).from_frames(data.mixtures, late, source="simulated held-out")
    idata = BiMixModel().fit(fit_data, seed=1)
    return idata, fit_data, holdout


@pytest.fixture(scope="module")
def html(study) -> str:
    idata, fit_data, holdout = study
    trust = backtest(fit_data, "last-checkpoint", method="ls", n_bootstrap=10)
    return build_report(idata, step=50_000, holdout=holdout, n_bootstrap=30, backtests=[trust])


def _images(html: str) -> list[bytes]:
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert srcs, "no images"
    out = []
    for src in srcs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        out.append(base64.b64decode(src.split(",", 1)[1], validate=True))
    return out


def test_every_section_is_present(study, html):
    """Header, diagnostics, observed vs fitted, extrapolation, parameters, decision, appendix;
    the verdict of the diagnostics matches the fit's."""
    for section in (*SECTIONS, "validation"):
        assert f'<section id="{section}">' in html, section
    for text in (
        "data SHA-256",
        "max r-hat",
        "least squares",
        "P(recommended beats",
        "Reproduce this report",
        "Model spec",
        "Held-out points",
        "nutpie",
    ):
        assert text in html, text
    passed = diagnostics_from_idata(study[0]).passed
    assert ("PASSED: the sampler converged" in html) == passed
    assert ("FAILED its convergence diagnostics" in html) == (not passed)


def test_a_failed_fit_is_flagged_in_every_dependent_section(study):
    """A fit that failed its diagnostics gets one FitWarning (the package's failed-fit path,
    naming what is done), a banner on the extrapolation, parameters and decision sections, and a
    FAIL badge."""
    bad = study[0].copy()
    diag = json.loads(bad.attrs["diagnostics"])
    diag["problems"] = ["max r-hat 1.2 > 1.01"]
    diag["max_rhat"] = 1.2
    bad.attrs["diagnostics"] = json.dumps(diag)
    with pytest.warns(FitWarning, match="reporting from a fit that FAILED") as caught:
        page = build_report(bad, n_bootstrap=0)
    assert len([w for w in caught if issubclass(w.category, FitWarning)]) == 1
    assert page.count("FAILED its convergence diagnostics") >= 4
    assert 'class="badge fail"' in page


def test_every_image_decodes(html):
    """Each figure is an embedded PNG that decodes to a non-empty picture."""
    images = _images(html)
    assert len(images) == 4
    for png in images:
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_the_file_is_self_contained(html):
    """No network reference, no script, no external stylesheet: it opens offline."""
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower().replace("&lt;script", "")
    assert "<link" not in html.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', html)


def test_user_strings_are_escaped(html):
    """A domain called <script>alert(1)</script> and runs called run<3> show as text."""
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL not in html
    assert "simulated &lt;study&gt;" in html


def test_held_out_points_are_scored(study, html):
    """With --holdout, the extrapolation section scores the held-out points per domain."""
    section = html.split('<section id="extrapolation">')[1].split("</section>")[0]
    assert "MRE Bayes (%)" in section and "Bayes 90% coverage (%)" in section
    assert "all domains" in section


def test_write_report_is_atomic_and_reproducible_command(study, tmp_path):
    """write_report writes the file (nothing left beside it) and names the command."""
    idata, _, _ = study
    path = write_report(idata, tmp_path / "r.html", n_bootstrap=0, fit_path="fit.nc")
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert "bimix report fit.nc --out report.html --step" in path.read_text()


def test_report_command(study, tmp_path):
    """`bimix report` writes the file, including held-out data read like `bimix fit` reads."""
    idata, _, holdout = study
    fit = tmp_path / "fit.nc"
    save_fit(idata, fit)
    late = tmp_path / "late.csv"
    holdout.to_long().to_csv(late, index=False)
    out = tmp_path / "report.html"
    res = run("report", str(fit), "--out", str(out), "--holdout", str(late), "--bootstrap", "20")
    assert res.returncode == 0, res.stderr
    text = out.read_text()
    assert "Held-out points" in text and f"--holdout {late}" in text
    res = run("report", str(fit), "--out", str(tmp_path / "report.pdf"))
    assert res.returncode == 2 and ".html" in res.stderr
    res = run("report", str(fit), "--out", str(out), "--backtest", "halfway")
    assert res.returncode == 2 and "--backtest" in res.stderr


# ------------------------------------------------------------------ a real browser
def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.browser
def test_report_renders_in_headless_chromium(html, tmp_path):
    """Open the report in headless Chromium: no console error, every image loads, nothing
    overflows at phone width; a screenshot is saved (also to $BIMIX_SCREENSHOT_DIR if set)."""
    found = _chromium()
    if found is None:
        message = "chromium and chromedriver not installed (Debian: chromium chromium-driver)"
        if os.environ.get("BIMIX_REQUIRE_BROWSER"):
            pytest.fail(message + " but BIMIX_REQUIRE_BROWSER is set")
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--mute-audio",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    try:
        for width, height, name in ((1280, 900, "laptop"), (390, 844, "phone")):
            driver.set_window_size(width, height)
            driver.get(page.as_uri())
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
            )
            assert len(images) == 4
            broken = [alt for alt, complete, w in images if not complete or w == 0]
            assert not broken, f"images that did not load: {broken}"
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"the page is {overflow}px wider than a {name} screen"
            shot = tmp_path / f"report_{name}.png"
            assert driver.save_screenshot(str(shot))
            if os.environ.get("BIMIX_SCREENSHOT_DIR"):
                target = Path(os.environ["BIMIX_SCREENSHOT_DIR"])
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(shot, target / shot.name)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        title = driver.title
    finally:
        driver.quit()
    assert "BiMix fit report" in title
