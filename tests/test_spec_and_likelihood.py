"""Model specs (files, merging, errors) and the curve likelihood (exact against SciPy)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal, multivariate_t

from bimix_bayes.bayes.likelihood import (
    CurveLayout,
    CurveSums,
    curve_log_likelihood,
    curve_residual_sums,
    draw_offsets,
    offset_conditional,
)
from bimix_bayes.bayes.spec import SCHEMA, SpecError, load_spec, merge_spec, spec_id
from bimix_bayes.data.simulate import simulate_default
from bimix_bayes.laws.bimix import bimix_log_loss

REPO = Path(__file__).resolve().parents[1]


def _keys(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        out |= _keys(value, path) if isinstance(value, dict) else {path}
    return out


def test_models_file_is_the_default_and_documents_every_key():
    """models/bimix.toml is the default spec, and every key of the schema is in it."""
    path = REPO / "models" / "bimix.toml"
    assert load_spec(path) == load_spec()
    assert _keys(tomllib.loads(path.read_text())) == _keys(SCHEMA)
    text = path.read_text()
    for section in ("[data]", "[likelihood]", "[sampler]", "[diagnostics]", "[priors.log_beta]"):
        assert section in text


def test_partial_spec_files_merge_over_the_default(tmp_path):
    """A TOML or YAML file holding only changes keeps every other default."""
    toml = tmp_path / "m.toml"
    toml.write_text('[likelihood]\nfamily = "student_t"\n[sampler]\ndraws = 200\n')
    yaml = tmp_path / "m.yaml"
    yaml.write_text("likelihood:\n  family: student_t\nsampler:\n  draws: 200\n")
    a, b = load_spec(toml), load_spec(yaml)
    assert a == b
    assert a["likelihood"]["family"] == "student_t" and a["sampler"]["chains"] == 4
    assert spec_id(a) != spec_id(load_spec())


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"sampler": {"drawz": 10}}, r"sampler\.drawz: unknown key"),
        ({"prior": {}}, r"prior: unknown key"),
        ({"priors": {"log_alpha": {"loc_scale": -1}}}, r"priors\.log_alpha\.loc_scale: .*> 0"),
        ({"priors": {"log_beta": {"parametrization": "x"}}}, r"parametrization: expected one of"),
        ({"likelihood": {"family": "cauchy"}}, r"likelihood\.family: expected one of"),
        ({"likelihood": {"run_offset": "yes"}}, r"run_offset: expected true or false"),
        ({"likelihood": {"run_correlation": "yes"}}, r"run_correlation: .*\"auto\" or \"common\""),
        ({"sampler": {"chains": 2.5}}, r"sampler\.chains: expected an integer"),
        ({"sampler": {"target_accept": 1.0}}, r"target_accept: expected a number < 1"),
        ({"data": {"s_ref": -3}}, r"data\.s_ref: expected \"geometric_mean\" or a positive"),
        ({"diagnostics": {"max_rhat": 0.9}}, r"max_rhat: expected a number >= 1"),
    ],
)
def test_bad_specs_name_the_key(update, message):
    """An unknown key or an invalid value is an error that names the key."""
    with pytest.raises(SpecError, match=message):
        merge_spec(update)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.toml", None, "cannot read"),
        ("bad.toml", "[sampler\n", r"bad\.toml: not valid TOML"),
        ("spec.json", "{}", r"use \.toml or \.yaml"),
        ("typo.toml", "[sampler]\ndrawz = 3\n", r"typo\.toml: sampler\.drawz"),
    ],
)
def test_spec_file_errors_name_the_file(file_at, name, text, message):
    """Unreadable, unparsable or unknown-format files say which file."""
    with pytest.raises(SpecError, match=message):
        load_spec(file_at(name, text))


residuals = st.lists(st.floats(-0.2, 0.2), min_size=1, max_size=8)
scales = st.floats(0.002, 0.2)


@settings(max_examples=60, deadline=None)
@given(e=residuals, sigma=scales, tau=st.floats(0.0, 0.2))
def test_normal_curve_likelihood_is_exact(e, sigma, tau):
    """The closed form equals the multivariate normal with covariance sigma^2 I + tau^2 J."""
    e = np.array(e)
    n = len(e)
    cov = sigma**2 * np.eye(n) + tau**2 * np.ones((n, n))
    expected = multivariate_normal(np.zeros(n), cov).logpdf(e)
    got = curve_log_likelihood(e.sum(), (e**2).sum(), n, sigma, tau)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(e=residuals, sigma=scales, tau=st.floats(0.0, 0.2), nu=st.floats(1.0, 30.0))
def test_student_t_curve_likelihood_is_exact(e, sigma, tau, nu):
    """The Student-t option equals SciPy's multivariate t with the same scale matrix."""
    e = np.array(e)
    n = len(e)
    shape = sigma**2 * np.eye(n) + tau**2 * np.ones((n, n))
    expected = multivariate_t(np.zeros(n), shape, df=nu).logpdf(e)
    got = curve_log_likelihood(e.sum(), (e**2).sum(), n, sigma, tau, family="student_t", nu=nu)
    assert got == pytest.approx(expected, rel=1e-8, abs=1e-8)


def test_likelihood_is_the_same_in_pytensor():
    """The PyMC model evaluates the very same expression."""
    s1, s2, n, sig, tau = (pt.dscalar(k) for k in ("s1", "s2", "n", "sig", "tau"))
    for family in ("normal", "student_t"):
        f = pytensor.function(
            [s1, s2, n, sig, tau],
            curve_log_likelihood(s1, s2, n, sig, tau, family=family, nu=4.0, math=pt),
        )
        args = (0.05, 0.01, 7.0, 0.02, 0.01)
        assert f(*args) == pytest.approx(
            curve_log_likelihood(*args, family=family, nu=4.0), rel=1e-12
        )


def test_offset_conditional_matches_gaussian_conditioning():
    """The offset of an observed curve: mean and variance of u given its residuals."""
    rng = np.random.default_rng(0)
    sigma, tau, n = 0.02, 0.03, 6
    e = rng.normal(0, 0.03, n)
    cond = offset_conditional(e.sum(), (e**2).sum(), n, sigma, tau)
    cov = sigma**2 * np.eye(n) + tau**2 * np.ones((n, n))
    k = tau**2 * np.ones(n)  # cov(u, e)
    mean = k @ np.linalg.solve(cov, e)
    var = tau**2 - k @ np.linalg.solve(cov, k)
    assert cond["mean"] == pytest.approx(mean, rel=1e-10)
    assert cond["var"] == pytest.approx(var, rel=1e-10)
    u, scale = draw_offsets(cond, np.random.default_rng(1), (20_000,))
    assert np.all(scale == 1.0)
    assert u.mean() == pytest.approx(mean, abs=4 * np.sqrt(var / 20_000))


def _posterior(domains: list[str], rng: np.random.Generator, **extra: float) -> xr.Dataset:
    """A small fake posterior (2 chains x 3 draws) of the law and noise parameters."""
    dims, shape = ("chain", "draw", "domain"), (2, 3, len(domains))
    ranges = {"log_floor": (0.5, 1.0), "log_reducible": (0.0, 1.0), "alpha": (0.05, 0.3)}
    ranges |= {"beta": (0.2, 0.6), "sigma": (0.01, 0.03)} | {k: (v, v) for k, v in extra.items()}
    return xr.Dataset(
        {k: (dims, rng.uniform(lo, hi, shape)) for k, (lo, hi) in ranges.items()},
        coords={"domain": domains},
    )


def test_curve_residual_sums_have_one_return_type():
    """Curve sums come as one CurveSums, whose slope fields are None unless asked for."""
    data = simulate_default(seed=1)
    layout = CurveLayout.from_data(data, s_ref=5000.0)
    post = _posterior(list(data.domains), np.random.default_rng(0), tau=0.02)
    plain = curve_residual_sums(post, layout)
    assert isinstance(plain, CurveSums) and plain.sxe is None and plain.kappa is None
    assert plain.slope(layout) is None
    assert plain.s1.shape == plain.tau.shape == (2, 3, len(layout.n))
    # One curve by hand: residuals of its observations at draw (1, 2).
    c, d = 4, layout.curve_domain[4]
    obs = data.observations.iloc[np.flatnonzero(layout.obs_curve == c)]
    p = {k: float(post[k][1, 2, d]) for k in ("log_floor", "log_reducible", "alpha", "beta")}
    x = np.log(obs["step"].to_numpy() / 5000.0)
    e = np.log(obs["loss"].to_numpy()) - bimix_log_loss(layout.curve_log_r[c], x, **p)
    assert plain.s1[1, 2, c] == pytest.approx(e.sum(), rel=1e-12)
    assert plain.s2[1, 2, c] == pytest.approx((e**2).sum(), rel=1e-12)
    slope = curve_residual_sums(post, layout, with_slope=True)
    assert slope.sxe[1, 2, c] == pytest.approx((x * e).sum(), rel=1e-12)
    assert np.all(slope.kappa == 0)  # no kappa in the posterior
    sx, sxx = layout.x_sums()
    assert np.array_equal(slope.slope(layout)[1], sx) and np.array_equal(
        slope.slope(layout)[2], sxx
    )
    # kappa = 0: the slope conditional is the offset-only one
    for family in ("normal", "student_t"):
        a = plain.conditional(layout, family=family, nu=5.0)
        b = slope.conditional(layout, family=family, nu=5.0)
        assert a["mean"].shape == plain.s1.shape
        assert np.allclose(a["mean"], b["mean"], rtol=1e-10)
        assert np.allclose(a["var"], b["var"], rtol=1e-10)
        assert np.allclose(b["slope_var"], 0) and "slope_var" not in a
    no_tau = curve_residual_sums(post.drop_vars("tau"), layout)
    assert np.all(no_tau.tau == 0)


def test_curve_residual_sums_do_not_depend_on_threads(monkeypatch):
    """The sums are computed in chunks of draws spread over threads: four threads give exactly
    what one gives (cell means included: added in chunk order), and one draw per chunk what
    one chunk per chain gives, to rounding."""
    import bimix_bayes.bayes.likelihood as likelihood

    data = simulate_default(seed=2)
    layout = CurveLayout.from_data(data, s_ref=5000.0)
    post = _posterior(list(data.domains), np.random.default_rng(3), tau=0.02)
    whole = curve_residual_sums(post, layout, cell_means=True)  # one chunk per chain
    monkeypatch.setattr(likelihood, "_CHUNK_VALUES", 1)  # one draw per chunk: 6 chunks
    by_threads = {}
    for threads in (1, 4):
        monkeypatch.setattr(likelihood.os, "cpu_count", lambda n=threads: n)
        by_threads[threads] = curve_residual_sums(post, layout, cell_means=True)
    for name in ("s1", "s2", "mean_residual", "mean_weight"):
        np.testing.assert_array_equal(getattr(by_threads[4], name), getattr(by_threads[1], name))
        np.testing.assert_allclose(getattr(by_threads[4], name), getattr(whole, name), rtol=1e-12)


@pytest.mark.parametrize(
    ("law", "schedule", "drift"),
    [("bimix", "cosine:total=20000,warmup=200,final=0.1", False), ("bimix_cross", None, False),
     ("loglinear", None, False), ("effective", None, False), ("bimix", None, True),
     ("bimix_cross", "cosine:total=20000,warmup=200,final=0.1", True)],
)  # fmt: skip
def test_curve_residual_sums_match_the_law_cell_by_cell(law, schedule, drift):
    """The sums evaluate the mixture term per curve and the step factor per (domain, grid
    step); they equal the law evaluated at every cell (``Law.log_loss``), for every law, with
    a learning-rate schedule (its annealing term) and with the exponent's drift."""
    from bimix_bayes.bayes.law_params import TRAIN_DIM, gather, posterior_params
    from bimix_bayes.data.simulate import default_parameters, random_mixtures, simulate
    from bimix_bayes.laws.registry import get_law

    params = default_parameters()
    data = simulate(params, random_mixtures(6, params.index, seed=4), [1e3, 3e3, 9e3, 2e4],
                    seed=4, schedule=schedule)  # fmt: skip
    layout = CurveLayout.from_data(data, s_ref=5000.0)
    rng = np.random.default_rng(5)
    post = _posterior(list(data.domains), rng, tau=0.02)
    post["own"] = post["alpha"] * 5
    post["anneal"] = post["alpha"]
    n_train = len(layout.training_domains)
    post["cross"] = (("chain", "draw", "domain", TRAIN_DIM), rng.normal(0, 0.1, (2, 3, 5, n_train)))
    post.attrs["law"] = law
    if schedule is None:
        post = post.drop_vars("anneal")
    if drift:
        post["alpha_drift"] = post["alpha"] * 0 + rng.normal(0, 0.01, post["alpha"].shape)
    sums = curve_residual_sums(post, layout)
    by_cell = gather(posterior_params(post, get_law(law)), layout.curve_domain)
    mu = get_law(law).log_loss(
        layout.curve_shares[:, None, :],
        layout.curve_own_share[:, None],
        layout.x,
        {k: v[..., None, :] if k == "cross" else v[..., None] for k, v in by_cell.items()},
        u=layout.u if layout.has_schedule else None,
    )
    e = (layout.y - mu) * layout.mask
    np.testing.assert_allclose(sums.s1, e.sum(axis=-1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sums.s2, (e**2).sum(axis=-1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("centre", [False, True])
def test_a_fixed_population_sd_is_a_constant_not_a_parameter(centre):
    """sd_prior = "fixed": log_alpha[d] ~ Normal(mu, sd_scale) with mu sampled and no
    population sd to sample (the default for the mixture exponent)."""
    from scipy.stats import norm

    from bimix_bayes.bayes.graph import build_pymc_model
    from bimix_bayes.bayes.likelihood import CurveLayout

    prior = {"pooled": True, "sd_prior": "fixed", "sd_scale": 0.5}
    spec = merge_spec(
        {"priors": {"log_alpha": prior}, "sampler": {"centre_share": centre, "exponent": "free"}}
    )
    model = build_pymc_model(CurveLayout.placeholder(3), spec)
    names = {v.name for v in model.free_RVs}
    assert "mu_log_alpha" in names and "sd_log_alpha" not in names
    point = model.initial_point()
    point["mu_log_alpha"] = np.array(-2.5)
    point["log_alpha"] = np.array([-3.0, -2.0, -4.0])
    logp = model.compile_logp(vars=[model["log_alpha"]], sum=True)(point)
    assert logp == pytest.approx(norm.logpdf(point["log_alpha"], -2.5, 0.5).sum())
    with pytest.raises(SpecError, match="sd_prior"):
        merge_spec({"priors": {"log_alpha": {"sd_prior": "fixd"}}})
