"""The HTML report: structure, images, escaping, held-out points, the command, the summary at the
top, the shares chart, numbered axes, one parameter table, run links, wrapped tables, a browser.

The browser test saves screenshots at 1280 and 390 px to $BIMIX_ARTEFACTS (default: the test's
temporary folder)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from bimix_bayes.bayes.checks import posterior_predictive_check
from bimix_bayes.bayes.diagnostics import FitWarning
from bimix_bayes.bayes.model import BiMixModel
from bimix_bayes.bayes.persistence import diagnostics_from_idata, save_fit
from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
from bimix_bayes.data.table import DataError
from bimix_bayes.decision.constraints import MixtureConstraints
from bimix_bayes.evaluation.backtest import backtest
from bimix_bayes.report.figures import predictive_check_figure, to_data_uri
from bimix_bayes.report.html import SECTIONS, build_report, write_report
from bimix_bayes.report.runs import run_anchor
from tests.test_cli import run

EVIL = "<script>alert(1)</script>"
STEPS = np.geomspace(500, 20_000, 10)
#: A quick fit: the report's structure does not need a converged one (both verdicts are tested).
QUICK = {"sampler": {"chains": 2, "draws": 300, "tune": 300, "progress_bar": "never"}}
#: A lower bound that binds, so the decision table has its widest form (an unconstrained column).
BINDING = MixtureConstraints(lower={"code": 0.4})


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
    idata = BiMixModel(QUICK).fit(fit_data, seed=1)
    return idata, fit_data, holdout


@pytest.fixture(scope="module")
def html(study) -> str:
    idata, fit_data, holdout = study
    trust = backtest(fit_data, "last-checkpoint", method="ls", n_bootstrap=10)
    return build_report(
        idata,
        step=50_000,
        holdout=holdout,
        n_bootstrap=30,
        backtests=[trust],
        constraints=BINDING,
    )


def _section(html: str, name: str) -> str:
    return html.split(f'<section id="{name}"')[1].split("</section>")[0]


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
    assert len(images) == 5
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


def test_a_held_out_run_id_naming_another_mixture_is_refused(study):
    """A held-out run is continued with the fitted run of the same id: if that id names other
    shares in the held-out data, the report refuses before any work (scored with the wrong
    run's effects, every held-out figure would be wrong)."""
    idata, _, holdout = study
    a, b = holdout.mixtures.index[:2]
    swapped = {a: b, b: a}
    mixtures = holdout.mixtures.rename(index=swapped)
    obs = holdout.observations.assign(run=holdout.observations["run"].replace(swapped))
    wrong = type(holdout).from_frames(mixtures, obs, source="swapped.csv")
    with pytest.raises(DataError, match=r"swapped.csv: held-out run 'run<[01]>' has the mixture"):
        build_report(idata, holdout=wrong, n_bootstrap=0)


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
    one = holdout.to_long()  # one run at one checkpoint is enough to score (not to fit)
    one = one[(one["run"] == one["run"].iloc[0]) & (one["step"] == one["step"].max())]
    one.to_csv(late, index=False)
    res = run("report", str(fit), "--out", str(out), "--holdout", str(late), "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    assert f"held-out points ({len(one)})" in out.read_text()
    res = run("report", str(fit), "--out", str(tmp_path / "report.pdf"))
    assert res.returncode == 2 and ".html" in res.stderr
    res = run("report", str(fit), "--out", str(out), "--backtest", "halfway")
    assert res.returncode == 2 and "--backtest" in res.stderr
    res = run("report", str(fit), "--out", str(out), "--lr-schedule", "cosine:total=9e4")
    assert res.returncode == 2 and "the learning-rate schedule saved with the fit" in res.stderr


def test_report_backtests_with_the_methods_asked_for(study, tmp_path):
    """`--backtest-method` chooses the methods of the report's backtests (LightGBM too)."""
    pytest.importorskip("lightgbm")
    idata, _, _ = study
    fit = tmp_path / "fit.nc"
    save_fit(idata, fit)
    out = tmp_path / "report.html"
    res = run(
        "report", str(fit), "--out", str(out), "--backtest", "last-checkpoint",
        "--backtest-method", "lightgbm", "--bootstrap", "0",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    section = out.read_text().split('<section id="validation">')[1].split("</section>")[0]
    assert ">lightgbm<" in section and ">bayes<" not in section and ">ls<" not in section
    assert "fitting lightgbm" in res.stderr


# -------------------------------------------------------- the report as a decision document
def test_the_summary_comes_first_and_answers_the_decision(study, html):
    """The first section: the recommended shares and the target, P(recommended beats baseline)
    and the verdict, the baseline (an observed run, linked, with its shares), how far the
    forecasts held (the backtest and the held-out points) and the fit's verdict."""
    main = html.split("<main>")[1]
    assert main.lstrip().startswith('<section id="summary">')
    summary = _section(html, "summary")
    for text in (
        "Summary: train this mixture at 50000 steps",
        "P(recommended beats baseline) = ",
        "Verdict: ",
        'compared with</dt><dd>observed run <a href="#run-',
        "backtest last-checkpoint (",
        "least squares MRE ",
        "held-out points (",
        "Bayes MRE ",
        "8.5&times; the last fitted checkpoint, 5848",
        "beyond 8x no backtest supports the law",
    ):
        assert text in summary, text
    assert re.search(r"<b>&lt;script&gt;[^<]*\d%, code \d+\.\d%, books \d+\.\d%", summary)
    passed = diagnostics_from_idata(study[0]).passed
    assert ("PASSED</b> its convergence diagnostics" in summary) == passed
    assert ("This fit FAILED its convergence diagnostics</b>: " in summary) == (not passed)


def test_the_summary_names_a_baseline_given_as_a_table(study):
    """A baseline from a table (pd.read_csv, as a --baseline file is read) shows as a given
    mixture with its name and shares, never as "given"; without backtests nor held-out points
    the summary says the forecasts are not measured and gives the command that measures them.
    The fit is marked as passed here: the summary says so and no section warns."""
    idata, fit_data, _ = study
    idata = idata.copy()
    diag = json.loads(idata.attrs["diagnostics"])
    diag["problems"] = []
    idata.attrs["diagnostics"] = json.dumps(diag)
    domains = list(fit_data.mixtures.columns)
    text = "name," + ",".join(domains) + "\ncurrent," + ",".join(["0.2"] * len(domains)) + "\n"
    table = pd.read_csv(io.StringIO(text))
    page = build_report(idata, n_bootstrap=0, baseline=table, fit_path="fit.nc")
    summary = _section(page, "summary")
    assert "given mixture &ldquo;current&rdquo; (from a --baseline file or table" in summary
    assert "code 20.0%, books 20.0%" in summary
    assert not re.search(r"[Bb]aseline: given\W", page.replace("given mixture", ""))
    assert "given mixture &ldquo;current&rdquo;" in _section(page, "decision")
    assert "forecasts</dt><dd>not measured" in summary
    assert "bimix report fit.nc --out report.html --step " in summary
    assert "--backtest horizon:0.5</code>" in summary
    assert 'fit</dt><dd><b class="pass">PASSED</b> its convergence diagnostics' in summary
    assert "FAILED its convergence diagnostics" not in page


def test_other_fits_are_ranked_with_a_verdict(study, html):
    """With other fits of the same data the report says which model the data prefer (and how
    sure); without them there is no such section."""
    idata, _, _ = study
    assert '<section id="models">' not in html
    page = build_report(idata, n_bootstrap=0, fit_path="fit.nc", compare={"copy.nc": idata})
    models = _section(page, "models")
    assert "fit.nc (bimix" in models and "copy.nc (bimix" in models
    verdict = models.split('<p class="key">')[1].split("</p>")[0]
    assert "prefer" not in verdict  # the same fit twice: no preference
    if diagnostics_from_idata(idata).passed:  # (a quick fit: either verdict can happen)
        assert "do not distinguish" in models or "PSIS-LOO cannot rank" in models
    else:
        assert "No verdict: fit.nc (bimix) and copy.nc (bimix) failed their" in verdict
    assert '<a href="#models">' in page


def test_the_shares_chart_compares_recommended_and_baseline(html):
    """The summary shows a bar chart of recommended vs baseline shares, with alt text naming
    every domain's two shares."""
    summary = _section(html, "summary")
    alt, src = re.search(r'<img class="figure" alt="([^"]+)" src="([^"]+)"', summary).groups()
    assert alt.startswith("Bar chart of each domain&#39;s share in the recommended mixture")
    for domain in ("code", "books", "wiki", "math", "&lt;script&gt;alert(1)&lt;/script&gt;"):
        assert re.search(rf"{re.escape(domain)} \d+\.\d% vs \d+\.\d%", alt), domain
    png = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
    assert png.shape[1] > 300


def test_observed_vs_fitted_axes_carry_numbers(study):
    """Every panel of the observed-vs-fitted figure has numbered ticks on both axes (its log
    axes span less than a decade, where matplotlib would label none) and loss axis labels."""
    check = posterior_predictive_check(study[0].copy(), seed=0)
    fig = predictive_check_figure(check)
    to_data_uri(fig)  # draws it
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 5
    for ax in panels:
        for axis in (ax.xaxis, ax.yaxis):
            shown = [t.get_text() for t in axis.get_ticklabels()]
            assert len([float(t) for t in shown if t]) >= 2, (ax.get_title(), shown)
        assert "loss" in ax.get_xlabel() and "loss" in ax.get_ylabel()


def test_one_parameter_table(html):
    """The posterior summary is gone from the diagnostics: the parameters section's table is the
    one parameter table, with the law's parameters beside least squares and the noise scales."""
    assert "Posterior summary" not in html
    assert html.count("posterior mean [94% HDI]") == 1
    assert ">sigma<" not in _section(html, "diagnostics")
    params = _section(html, "parameters")
    for name in ("A", "alpha", "B", "beta", "sigma", "tau"):
        assert f"<th>{name}</th>" in params, name


def test_runs_have_anchors_and_run_ids_link_to_them(study, html):
    """The runs table has one row per run with an id; every link to a run points to a row, and
    the baseline run and the runs drawn in the extrapolation link to theirs."""
    runs = _section(html, "runs")
    fit_data = study[1]
    ids = re.findall(r'<tr id="(run-[^"]+)"', runs)
    assert ids == [run_anchor(r) for r in fit_data.runs]
    assert len(set(ids)) == len(ids)
    assert "<th>run&lt;3&gt;</th>" in runs
    links = re.findall(r'href="#(run-[^"]+)"', html)
    assert links and set(links) <= set(ids)
    assert 'href="#run-' in _section(html, "summary")
    assert 'href="#run-' in _section(html, "decision")
    assert "Runs drawn: " in _section(html, "extrapolation")
    assert '<a href="#runs">' in _section(html, "header")


def test_every_table_is_in_a_scroll_wrapper(html):
    """Each table sits directly in a horizontally scrollable wrapper, so no table widens the
    page (the browser test checks the page width)."""
    tables = [m.start() for m in re.finditer(r"<table", html)]
    assert len(tables) >= 8
    for start in tables:
        assert html[:start].endswith('<div class="scroll">'), html[start - 80 : start]


# ------------------------------------------------------------------ a real browser
def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


#: The viewports the report is checked and photographed at: a laptop's first screen, a phone's.
VIEWPORTS = ((1280, 800), (390, 844))


def _artefacts(tmp_path: Path) -> Path:
    """Where the browser test saves its screenshots: $BIMIX_ARTEFACTS, else its tmp folder."""
    folder = Path(os.environ.get("BIMIX_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _viewport(driver, width: int, height: int) -> None:
    """Set the page's viewport itself (a window size would include the browser's frame)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


#: Per viewport: the page's width, images, the decision table's overflow in its wrapper and
#: where the summary sits.
MEASURE = """
const box = e => e.getBoundingClientRect();
const decision = document.querySelector('#decision .scroll');
return {
  inner: window.innerWidth,
  page: document.documentElement.scrollWidth,
  images: Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]),
  decision: decision.scrollWidth - decision.clientWidth,
  summaryTop: box(document.querySelector('#summary')).top,
  summaryBottom: box(document.querySelector('#summary .summary')).bottom,
  trainBottom: box(document.querySelector('#summary dd')).bottom,
};
"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(html, tmp_path):
    """Open the report in headless Chromium at 1280 x 800 and 390 x 844: no console error, every
    image loads, the page is never wider than the screen (wide tables scroll in their wrappers;
    at 1280 px the decision table fits), the summary is on the first screen (all of it at
    1280 px), and the baseline's run link leads to its row. Screenshots of the first screen and
    of the whole page at both widths go to $BIMIX_ARTEFACTS (default: the tmp folder)."""
    found = _chromium()
    if found is None:
        message = "chromium and chromedriver not installed (Debian: chromium chromium-driver)"
        if os.environ.get("BIMIX_REQUIRE_BROWSER"):
            pytest.fail(message + " but BIMIX_REQUIRE_BROWSER is set")
        pytest.skip(message)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    artefacts = _artefacts(tmp_path)
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
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=options)
    try:
        for width, height in VIEWPORTS:
            _viewport(driver, width, height)
            driver.get(page.as_uri())
            seen = driver.execute_script(MEASURE)
            assert seen["inner"] == width
            assert len(seen["images"]) == 5
            broken = [alt for alt, complete, w in seen["images"] if not complete or w == 0]
            assert not broken, f"images that did not load: {broken}"
            assert seen["page"] <= width, f"the page is {seen['page']}px wide at {width}px"
            assert seen["summaryTop"] < height / 4 and seen["trainBottom"] <= height
            if width >= 1280:
                assert seen["summaryBottom"] <= height, "the summary runs past the first screen"
                assert seen["decision"] <= 1, f"the decision table overflows by {seen['decision']}"
            assert driver.save_screenshot(str(artefacts / f"report_{width}.png"))
            full = driver.execute_script("return document.documentElement.scrollHeight")
            _viewport(driver, width, min(full, 16_000))
            assert driver.save_screenshot(str(artefacts / f"report_{width}_full.png"))
        _viewport(driver, *VIEWPORTS[0])
        driver.get(page.as_uri())
        link = driver.find_element(By.CSS_SELECTOR, '#summary a[href^="#run-"]')
        target = link.get_attribute("href").split("#", 1)[1]
        link.click()
        assert driver.execute_script("return document.querySelector(':target').id") == target
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        title = driver.title
    finally:
        driver.quit()
    assert "Mixing-law fit report" in title


def test_a_least_squares_fit_given_is_used_as_it_is(study, monkeypatch):
    """`bimix demo` hands its least-squares fit to the report: no second fit, same table."""
    from bimix_bayes.leastsq.fit import BiMixLeastSquares
    from bimix_bayes.report import sections

    idata, fit_data, _ = study
    ls = BiMixLeastSquares(n_bootstrap=0).fit(fit_data)
    fitted_here = build_report(idata, step=50_000, n_bootstrap=0)

    def refuse(*args, **kwargs):
        raise AssertionError("the report fitted least squares again")

    monkeypatch.setattr(sections, "_least_squares_beside", refuse)
    given = build_report(idata, step=50_000, least_squares=ls)
    table = re.compile(r"least squares.*?</table>", re.S)
    assert table.search(given).group(0) == table.search(fitted_here).group(0)


def test_what_to_train_next_is_an_opt_in_section(study, html):
    """`bimix report --next K`: the proposed runs with their value and the value of stopping;
    without it no such section (it costs seconds)."""
    idata, _, _ = study
    assert '<section id="next">' not in html
    with_next = build_report(idata, step=50_000, n_bootstrap=0, next_runs=2)
    section = with_next.split('<section id="next">')[1].split("</section>")[0]
    assert "Value of stopping now" in section and "value (nats)" in section
    assert "For scale: one proxy run" in section and "own luck" in section
    assert section.count("<tr") >= 3  # a header row and two proposals
    assert 'href="#next"' in with_next


def test_the_header_says_how_runs_and_noise_are_modelled(study, html):
    """A reader of the report learns what the model assumes about the measurements: the
    likelihood, the noise that falls with the step, how run effects are shared."""
    from bimix_bayes.bayes.persistence import spec_from_idata
    from bimix_bayes.bayes.spec import likelihood_words

    idata, fit_data, _ = study
    words = likelihood_words(spec_from_idata(idata), len(fit_data.domains))
    assert "noise falling with the step" in words and "run offsets" in words
    assert f"law bimix, {words}; spec id" in html


def test_the_wall_time_counts_a_failed_first_attempt(study):
    """A fit retried with safer settings: the header gives both times, not the retry's alone."""
    idata, _, _ = study
    retried = idata.copy()
    retried.attrs = {**idata.attrs, "first_attempt_seconds": 12.5}
    page = build_report(retried, n_bootstrap=0)
    header = page.split("<dt>wall time</dt>")[1].split("</dd>")[0]
    assert "after a first attempt that failed its diagnostics (12.5 s;" in header
    assert "first attempt" not in build_report(idata, n_bootstrap=0).split("<dt>wall time")[1][:300]


def test_holdout_is_read_with_the_fits_options_when_given_none(study, tmp_path):
    """`bimix fit` records how it read its data; `report --holdout` with no data option reads
    the held-out file (an export like the fit's) the same way, and says so."""
    from bimix_bayes.cli.options import DATA_OPTIONS_ATTR, DataOptions

    idata, _, holdout = study
    recorded = idata.copy()
    recorded.attrs = {
        **idata.attrs,
        DATA_OPTIONS_ATTR: DataOptions(prop_pattern="mix/{domain}").reading_json(),
    }
    fit = save_fit(recorded, tmp_path / "fit.nc")
    late = holdout.to_long()
    late.columns = [c.replace("p_", "mix/", 1) if c.startswith("p_") else c for c in late.columns]
    path = tmp_path / "late.csv"
    late.to_csv(path, index=False)
    out = tmp_path / "report.html"
    res = run("report", str(fit), "--out", str(out), "--holdout", str(path), "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    assert f"reading {path} with the options the fit's data were read with" in res.stderr
    assert f"held-out points ({len(late)})" in out.read_text()
    recorded.attrs[DATA_OPTIONS_ATTR] = DataOptions(
        prop_pattern="mix/{domain}", exclude_domains=("nowhere",)
    ).reading_json()
    fit = save_fit(recorded, tmp_path / "fit2.nc")
    res = run("report", str(fit), "--out", str(out), "--holdout", str(path), "--bootstrap", "0")
    assert res.returncode != 0
    assert "excluded domain(s) ['nowhere'] do not occur" in res.stderr
    assert "--prop-pattern mix/{domain} --exclude-domain nowhere; give the data opt" in res.stderr
