"""`bimix check DATA`: a loss log read as `bimix fit` reads it, and a verdict, without fitting
(a new user's trial used `fit-ls --bootstrap 0` as a validator for want of one)."""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pytest

from bimix_bayes.cli.app import main
from bimix_bayes.data.simulate import simulate_default


def _check(path, *options) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["check", str(path), *options])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def long_csv(tmp_path):
    path = tmp_path / "runs.csv"
    simulate_default(seed=0).to_long().to_csv(path, index=False)
    return path


def test_a_fittable_file_gets_its_table_and_ready(long_csv):
    rc, out, _ = _check(long_csv)
    assert rc == 0
    assert out.startswith("data: ") and "ready to fit: every domain has" in out
    for domain in simulate_default(seed=0).domains:
        assert f"\n{domain} " in out
    assert "own share" in out and "checkpoints" in out


def test_what_cannot_be_fitted_is_said_with_exit_1(long_csv, tmp_path):
    import pandas as pd

    frame = pd.read_csv(long_csv)
    one_run = frame["run"] == frame["run"].iloc[0]
    typo = frame.assign(
        domain=frame["domain"].where(~(one_run & (frame["domain"] == "web")), "webb")
    )
    path = tmp_path / "typo.csv"
    typo.to_csv(path, index=False)
    rc, out, err = _check(path)
    assert rc == 1
    assert "not ready to fit" in out and "did you mean 'web' for 'webb'" in out
    assert "note: 1 run(s) have no losses of 'web'" in out  # every note, once, in the output
    assert "have no losses" not in err


def test_evaluation_only_domains_point_to_the_laws_that_fit_them(long_csv, tmp_path):
    """... and to leaving them out, which BiMix then fits."""
    frame = pd.read_csv(long_csv)
    extra = frame[frame["domain"] == "web"].assign(domain="heldout", loss=lambda f: f["loss"] + 1)
    path = tmp_path / "extra.csv"
    pd.concat([frame, extra]).to_csv(path, index=False)
    rc, out, _ = _check(path)
    assert rc == 0
    assert "none (evaluation only)" in out and "--law loglinear" in out
    assert "or leave them out for BiMix: --exclude-domain heldout" in out
    rc, out, _ = _check(path, "--exclude-domain", "heldout")
    assert rc == 0 and "ready to fit: every domain has" in out


def test_sizes_get_their_own_rows_and_a_size_written_two_ways_is_noted(tmp_path):
    """With --size-col: one row per size (runs, checkpoints, the mixtures it lacks), and two
    sizes within 5 % (680M in some rows, 0.7B in others) are noted."""
    frame = simulate_default(seed=0).to_long()
    runs = sorted(frame["run"].unique())
    sized = []
    for size in ("122M", "310M", "680M"):
        part = frame.assign(size=size)
        if size == "680M":  # half the runs logged their size rounded
            part.loc[part["run"].isin(runs[: len(runs) // 2]), "size"] = "0.7B"
        sized.append(part)
    path = tmp_path / "sizes.csv"
    pd.concat(sized).to_csv(path, index=False)
    rc, out, _ = _check(path, "--size-col", "size")
    assert rc == 0
    assert "note: model sizes 6.8e+08 and 7e+08 differ by less than 5 %" in out
    table = out.split("mixtures not at this size")[1]
    rows = {line.split()[0]: line for line in table.splitlines() if line[:1].isdigit()}
    assert list(rows) == ["122M", "310M", "680M", "700M"]
    assert rows["122M"].rstrip().endswith("-") and "(and" in rows["680M"]
