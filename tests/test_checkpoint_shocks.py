"""Checkpoint shocks (``likelihood.checkpoint_sd_scale``): one shock per (domain, fitted step)
shared by every run, in the graph, the residual sums, the forecasts and the spec."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bimix_bayes.bayes.checkpoints import (
    CHECKPOINT_DIM,
    CHECKPOINT_SD,
    CHECKPOINT_Z,
    checkpoint_slots,
    checkpoint_terms,
    forecast_shocks,
    slot_index,
)
from bimix_bayes.bayes.graph import build_pymc_model, data_names, has_checkpoint_shocks
from bimix_bayes.bayes.likelihood import CurveLayout, curve_residual_sums
from bimix_bayes.bayes.spec import SpecError, merge_spec
from bimix_bayes.data.simulate import simulate_default

SPEC = merge_spec({"likelihood": {"checkpoint_sd_scale": 0.01}})


def _posterior_with_shocks(layout: CurveLayout, rng: np.random.Generator) -> xr.Dataset:
    domains = list(layout.domains)
    dims, shape = ("chain", "draw", "domain"), (2, 3, len(domains))
    ranges = {"log_floor": (0.5, 1.0), "log_reducible": (0.0, 1.0), "alpha": (0.05, 0.3)}
    ranges |= {"beta": (0.2, 0.6), "sigma": (0.01, 0.03), "tau": (0.02, 0.02)}
    post = xr.Dataset(
        {k: (dims, rng.uniform(lo, hi, shape)) for k, (lo, hi) in ranges.items()},
        coords={"domain": domains},
    )
    slots = checkpoint_slots(len(layout.step_grid))
    post[CHECKPOINT_SD] = (dims, rng.uniform(0.005, 0.02, shape))
    post[CHECKPOINT_Z] = ((*dims, CHECKPOINT_DIM), rng.normal(size=(*shape, slots)))
    post.attrs["law"] = "bimix"
    return post


def test_slots_are_powers_of_two_that_hold_every_step():
    for n in range(1, 70):
        slots = checkpoint_slots(n)
        assert slots >= max(4, n) and slots & (slots - 1) == 0 and slots < max(8, 2 * n)


def test_residual_sums_subtract_each_cells_shock_dense_reference():
    """Against a dense reference: every observation's residual is its log loss minus the law
    minus the shock of its (domain, step), looked up by value, not through the index tables."""
    data = simulate_default(seed=1)
    layout = CurveLayout.from_data(data, s_ref=5000.0)
    post = _posterior_with_shocks(layout, np.random.default_rng(3))
    with_shocks = curve_residual_sums(post, layout)
    without = curve_residual_sums(post.drop_vars([CHECKPOINT_Z, CHECKPOINT_SD]), layout)
    steps = np.unique(data.observations["step"].to_numpy(dtype=float))
    obs = data.observations
    dom = np.array([layout.domains.index(d) for d in obs["domain"]])
    slot = np.searchsorted(steps, obs["step"].to_numpy(dtype=float))
    shocks = post[CHECKPOINT_Z].values * post[CHECKPOINT_SD].values[..., None]
    cell = shocks[:, :, dom, slot]  # (chain, draw, observation)
    expected = np.zeros_like(without.s1)
    np.add.at(expected, (slice(None), slice(None), layout.obs_curve), cell)
    np.testing.assert_allclose(without.s1 - with_shocks.s1, expected, rtol=1e-10, atol=1e-12)


def test_graph_gathers_each_cells_shock_of_its_domain_and_step():
    """The graph samples a (domain, slot) shock table and its ``checkpoint_index`` container
    sends each cell to the shock of its own domain and step (looked up by value here)."""
    data = simulate_default(seed=1)
    layout = CurveLayout.from_data(data, s_ref=5000.0)
    model = build_pymc_model(layout, SPEC)
    assert {CHECKPOINT_SD, CHECKPOINT_Z} <= set(model.named_vars)
    assert "checkpoint_index" in data_names(SPEC, len(layout.domains), evaluation_only=False)
    slots = checkpoint_slots(len(layout.step_grid))
    assert model.named_vars[CHECKPOINT_Z].eval().shape == (len(layout.domains), slots)
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.01, 0.02, len(layout.domains))
    z = rng.normal(size=(len(layout.domains), slots))
    index = model["checkpoint_index"].get_value()
    np.testing.assert_array_equal(
        index, slot_index(layout.grid_index, len(layout.step_grid), slots)
    )
    shock = (sd[:, None] * z).ravel()[index]
    steps = np.unique(data.observations["step"].to_numpy(dtype=float))
    for c, pos in [(0, 0), (7, 2), (len(layout.n) - 1, 1)]:
        obs = data.observations.iloc[
            np.flatnonzero((layout.obs_curve == c) & (layout.obs_pos == pos))
        ]
        k = int(np.searchsorted(steps, float(obs["step"].iloc[0])))
        assert shock[c, pos] == pytest.approx(
            sd[layout.curve_domain[c]] * z[layout.curve_domain[c], k]
        )


def test_forecasts_take_the_posterior_shock_at_fitted_steps_and_a_fresh_one_elsewhere():
    rng = np.random.default_rng(1)
    post = xr.Dataset(
        {
            CHECKPOINT_Z: (
                ("chain", "draw", "domain", CHECKPOINT_DIM),
                rng.normal(size=(2, 4000, 2, 4)),
            ),
            CHECKPOINT_SD: (("chain", "draw", "domain"), np.tile([0.01, 0.03], (2, 4000, 1))),
        }
    )
    fitted = [1e3, 2e3, 4e3]
    out = forecast_shocks(post, fitted, [2e3, 8e3], np.random.default_rng(0))
    expected = post[CHECKPOINT_Z].values[..., 1] * post[CHECKPOINT_SD].values
    np.testing.assert_allclose(out.isel(step=0).values, expected)
    fresh = out.isel(step=1).values.reshape(-1, 2)
    np.testing.assert_allclose(fresh.std(axis=0), [0.01, 0.03], rtol=0.05)
    assert abs(np.corrcoef(fresh.T)[0, 1]) < 0.05  # domains' fresh shocks independent
    mean, var = checkpoint_terms(post, fitted, np.array([4e3, 5e3]), np.array([1, 1]))
    np.testing.assert_allclose(mean[..., 0], post[CHECKPOINT_Z].values[:, :, 1, 2] * 0.03)
    assert (
        np.all(mean[..., 1] == 0) and np.allclose(var[..., 1], 0.03**2) and np.all(var[..., 0] == 0)
    )


def test_spec_key_is_validated_and_off_by_default():
    assert not has_checkpoint_shocks(merge_spec({}))
    assert has_checkpoint_shocks(SPEC)
    with pytest.raises(SpecError, match="checkpoint_sd_scale"):
        merge_spec({"likelihood": {"checkpoint_sd_scale": -0.1}})


def test_model_sizes_are_refused_with_the_key_to_change():
    layout = CurveLayout.placeholder(3, sizes=True)
    with pytest.raises(ValueError, match="checkpoint_sd_scale"):
        build_pymc_model(layout, SPEC)


@pytest.mark.slow
def test_a_fit_with_shocks_saves_loads_and_forecasts(tmp_path):
    """End to end: fit with shocks, save, load; forecasts at a fitted step and one beyond it
    (a fresh shock) are finite and the same after loading (the unit tests above check which
    shock each takes)."""
    from bimix_bayes.bayes.forecast import predict
    from bimix_bayes.bayes.model import BiMixModel
    from bimix_bayes.bayes.persistence import load_fit, save_fit

    data = simulate_default(seed=1)
    spec = {"likelihood": {"checkpoint_sd_scale": 0.01}, "sampler": {"draws": 200, "tune": 300}}
    idata = BiMixModel(spec=spec).fit(data, seed=0, progress_bar=False, retry=False)
    assert {CHECKPOINT_SD, CHECKPOINT_Z} <= set(idata.posterior.data_vars)
    back = load_fit(save_fit(idata, tmp_path / "fit.nc"))
    last = float(data.observations["step"].max())
    runs = list(data.runs)[:2]
    before = predict(idata, steps=[last, last * 1.01], runs=runs)
    after = predict(back, steps=[last, last * 1.01], runs=runs)
    numeric = before.select_dtypes("number").columns
    np.testing.assert_allclose(before[numeric].to_numpy(), after[numeric].to_numpy())
    assert np.isfinite(before[numeric].to_numpy()).all()
    # a step's fresh shock comes from its own stream: the same alone or after another new step
    both = predict(idata, steps=[last * 1.01, last * 1.02], runs=runs)
    alone = predict(idata, steps=[last * 1.02], runs=runs)
    later = both[both["step"] == last * 1.02].reset_index(drop=True)
    np.testing.assert_allclose(alone[numeric].to_numpy(), later[numeric].to_numpy())
