"""Tests of :func:`load_data` through real CSV / Parquet files written to ``tmp_path``."""

from __future__ import annotations

import gzip
import re
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.table import DataError, DataWarning, MixtureData

MIXTURES = {"a": (0.2, 0.8), "b": (0.5, 0.5), "c": (0.8, 0.2)}  # (web, code); exact sums
STEPS = (100, 200, 400)
DOMAINS = ("web", "code")
N_OBS = len(MIXTURES) * len(STEPS) * len(DOMAINS)

PROPERTY = settings(max_examples=30, deadline=None)


# ---------------------------------------------------------------- factories
def loss_of(share: float, step: float, offset: float = 0.0) -> float:
    """A loss that falls with the step and the share (never repeated across steps)."""
    return round(2.0 + share + 100.0 / step + offset, 6)


def long_frame(steps=STEPS, mixtures=MIXTURES, step_col: str = "step") -> pd.DataFrame:
    """Long layout: one row per (run, step, domain); row i is written on CSV line i + 2."""
    rows = []
    for run, shares in mixtures.items():
        for step in steps:
            for domain, share in zip(DOMAINS, shares, strict=True):
                rows.append(
                    {
                        "run": run,
                        step_col: step,
                        "domain": domain,
                        "loss": loss_of(share, step),
                        "p_web": shares[0],
                        "p_code": shares[1],
                    }
                )
    return pd.DataFrame(rows)


def wide_frame(steps=STEPS, mixtures=MIXTURES, run_col: bool = False) -> pd.DataFrame:
    """Wide layout like the SlimPajama file: one row per (run, step), ``n_tokens`` volume."""
    rows = []
    for run, (web, code) in mixtures.items():
        for step in steps:
            row = {"run": run} if run_col else {}
            row |= {"weight_web": web, "weight_code": code, "n_tokens": step}
            row |= {"web_loss": loss_of(web, step), "code_loss": loss_of(code, step)}
            rows.append(row)
    return pd.DataFrame(rows)


def write(directory: Path, frame: pd.DataFrame, name: str = "runs.csv") -> Path:
    """Write ``frame`` as ``name`` (CSV, TSV, .csv.gz or Parquet by the suffix)."""
    path = directory / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if ".tsv" in name else ",")
    return path


def with_cell(frame: pd.DataFrame, row: int, column: str, text: str) -> pd.DataFrame:
    """A text copy of ``frame`` with one cell replaced (row i is CSV line i + 2)."""
    out = frame.astype(str)
    out.loc[row, column] = text
    return out


def load(path: Path, **kwargs) -> MixtureData:
    """``load_data`` failing on any DataWarning: clean files load without notes."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        return load_data(path, **kwargs)


def at(location: str) -> str:
    """A regex matching ``location`` as a whole word (``line 5`` but not ``line 50``)."""
    return re.escape(location) + r"\b"


def reference() -> MixtureData:
    """The default long data built directly with ``from_frames``."""
    frame = long_frame()
    mixtures = frame.drop_duplicates("run").set_index("run")[["p_web", "p_code"]]
    mixtures.columns = list(DOMAINS)
    return MixtureData.from_frames(mixtures, frame[["run", "step", "domain", "loss"]])


@pytest.fixture
def long_csv(tmp_path) -> Path:
    return write(tmp_path, long_frame())


# ---------------------------------------------------------------- valid files
def test_long_csv(long_csv):
    """A clean long CSV loads into the canonical table without notes."""
    data = load(long_csv)
    assert data.domains == DOMAINS
    assert data.runs == ("a", "b", "c")
    assert len(data.observations) == N_OBS
    assert data.volume == "steps" and data.group is None
    assert data.source == str(long_csv)
    assert data.notes == ()
    assert data.fingerprint() == reference().fingerprint()


@pytest.mark.parametrize("name", ["runs.parquet", "runs.tsv", "runs.csv.gz"])
def test_file_formats_agree(tmp_path, name):
    """Parquet, TSV and gzip-compressed CSV give the same data as plain CSV."""
    if name.endswith(".gz"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(long_frame().to_csv(index=False).encode()))
    else:
        path = write(tmp_path, long_frame(), name)
    assert load(path).fingerprint() == reference().fingerprint()


def test_path_may_be_text(long_csv):
    """The path can be given as a string."""
    assert load(str(long_csv)).fingerprint() == reference().fingerprint()


def test_column_names_detected_loosely(tmp_path):
    """Usual alternative names and capitalisation are detected."""
    frame = long_frame().rename(columns={"run": "Run_ID", "step": "Step", "loss": "val_loss"})
    frame = frame.rename(columns={"domain": "eval_domain"})
    assert load(write(tmp_path, frame)).fingerprint() == reference().fingerprint()


def test_whitespace_around_cells_and_names(tmp_path):
    """Spaces around names and values do not matter."""
    text = long_frame().to_csv(index=False).replace(",", " , ")
    path = tmp_path / "spaced.csv"
    path.write_text(text)
    assert load(path).fingerprint() == reference().fingerprint()


def test_utf8_bom_is_ignored(tmp_path):
    """A byte-order mark (Excel's UTF-8 export) does not hide the first column."""
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + long_frame().to_csv(index=False).encode())
    assert load(path).runs == ("a", "b", "c")


def test_explicit_columns_and_pattern(tmp_path):
    """Columns with unusual names are given explicitly, proportions by pattern."""
    frame = long_frame().rename(
        columns={
            "run": "id",
            "step": "it",
            "domain": "task",
            "loss": "ce",
            "p_web": "share_web",
            "p_code": "share_code",
        }
    )
    path = write(tmp_path, frame)
    data = load(
        path,
        layout="long",
        run_col="id",
        step_col="it",
        domain_col="task",
        loss_col="ce",
        prop_pattern="share_{domain}",
    )
    assert data.fingerprint() == reference().fingerprint()


def test_explicit_column_not_in_file(long_csv):
    """A column name given by the user that is not in the file is named with the columns."""
    with pytest.raises(DataError, match=r"no column 'val' for the loss; columns: \['run'"):
        load(long_csv, loss_col="val")


def test_prop_pattern_not_matching(long_csv):
    """A proportion pattern that matches nothing is refused."""
    with pytest.raises(DataError, match=r"no column matches the proportion pattern 'w_\{domain\}'"):
        load(long_csv, prop_pattern="w_{domain}")


def test_prop_pattern_needs_placeholder(long_csv):
    """A pattern without ``{domain}`` is a usage error."""
    with pytest.raises(ValueError, match=r"must contain '\{domain\}'"):
        load(long_csv, prop_pattern="p_web")


def test_unknown_layout(long_csv):
    """Only auto, long and wide layouts exist."""
    with pytest.raises(ValueError, match="layout must be"):
        load(long_csv, layout="tall")


# ---------------------------------------------------------------- wide layout
def test_wide_with_run_column(tmp_path):
    """A wide file with a run column gives the same data as the long file."""
    path = write(tmp_path, wide_frame(run_col=True))
    data = load(path, volume="steps")
    assert data.runs == ("a", "b", "c")
    assert data.fingerprint() == reference().fingerprint()


def test_wide_without_run_column_identifies_runs_by_mixture(tmp_path):
    """Without a run column each distinct mixture is one run, in order of appearance."""
    frame = wide_frame().sort_values("n_tokens", kind="stable")  # runs interleaved
    data = load(write(tmp_path, frame))
    assert data.n_runs == 3
    assert data.runs == ("m000", "m001", "m002")
    assert data.mixtures.loc["m000"].tolist() == [0.2, 0.8]
    assert data.mixtures.loc["m002"].tolist() == [0.8, 0.2]
    assert len(data.observations) == N_OBS
    assert data.volume == "tokens"
    assert data.mixtures.rename(index=dict(zip(data.runs, "abc", strict=True))).equals(
        reference().mixtures
    )


def test_wide_parquet(tmp_path):
    """The wide layout reads the same from Parquet as from CSV."""
    csv = load(write(tmp_path, wide_frame()))
    pq = load(write(tmp_path, wide_frame(), "runs.parquet"))
    assert pq.fingerprint() == csv.fingerprint()


def test_wide_explicit_loss_pattern(tmp_path):
    """Loss columns with unusual names are given by a pattern."""
    frame = wide_frame().rename(columns={"web_loss": "ce_web", "code_loss": "ce_code"})
    path = write(tmp_path, frame)
    with pytest.raises(DataError, match=r"cannot find loss columns"):
        load(path)
    assert load(path, loss_pattern="ce_{domain}").domains == DOMAINS


def test_wide_same_mixture_different_runs(tmp_path):
    """With a run column, two runs with one mixture (e.g. seeds) stay separate."""
    mixtures = {**MIXTURES, "a2": MIXTURES["a"]}
    frame = wide_frame(mixtures=mixtures, run_col=True)
    frame.loc[frame["run"] == "a2", ["web_loss", "code_loss"]] += 0.01
    data = load(write(tmp_path, frame))
    assert data.runs == ("a", "b", "c", "a2")


def test_wide_same_mixture_twice_without_run_column(tmp_path):
    """Without a run column, two runs with one mixture collide and are refused (not merged)."""
    frame = wide_frame(mixtures={**MIXTURES, "a2": MIXTURES["a"]})
    frame.loc[9:, ["web_loss", "code_loss"]] += 0.01
    with pytest.raises(DataError, match=r"have different losses.*line 2, column 'web_loss'"):
        load(write(tmp_path, frame))


# ---------------------------------------------------------------- missing columns
@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("run", r"cannot find the run id column"),
        ("step", r"cannot find the step \(or token count\) column"),
        ("loss", r"cannot find the loss column"),
        ("domain", r"cannot find loss columns"),  # no domain column: read as wide
    ],
)
def test_missing_column(tmp_path, column, message):
    """A file without a needed column says which one and lists the columns found."""
    path = write(tmp_path, long_frame().drop(columns=column))
    with pytest.raises(DataError, match=message) as e:
        load(path)
    assert str(e.value).startswith(str(path))
    assert "columns: [" in str(e.value)


def test_missing_proportion_columns(tmp_path):
    """A file without proportion columns says which patterns were tried and the fix."""
    path = write(tmp_path, long_frame().drop(columns=["p_web", "p_code"]))
    with pytest.raises(DataError, match=r"cannot find proportion columns.*--prop-pattern"):
        load(path)


# ---------------------------------------------------------------- non-numeric cells
@pytest.mark.parametrize("column", ["loss", "step"])
def test_long_non_numeric_cell(tmp_path, column):
    """A cell that is not a number names the column, the line and the text."""
    path = write(tmp_path, with_cell(long_frame(), 3, column, "3.x"))
    with pytest.raises(DataError, match=rf"column '{column}': 1 cell\(s\) are not numbers") as e:
        load(path)
    assert "line 5: '3.x'" in str(e.value)


@pytest.mark.parametrize(
    ("frame", "row", "column", "text", "message"),
    [
        pytest.param(long_frame, 7, "p_web", "half",
                     r"column 'p_web': 1 cell\(s\) are not numbers.*line 9: 'half'",
                     id="long-proportion-not-a-number"),
        pytest.param(long_frame, 7, "p_code", "",
                     r"column 'p_code': 1 proportion\(s\) are missing \(line 9\)",
                     id="long-proportion-missing"),
        pytest.param(wide_frame, 2, "code_loss", "n.a.",
                     r"column 'code_loss': 1 cell\(s\) are not numbers \(line 4: 'n\.a\.'\)",
                     id="wide-loss-not-a-number"),
        pytest.param(partial(wide_frame, run_col=True), 4, "weight_web", "?",
                     r"column 'weight_web'.*line 6: '\?'", id="wide-proportion-not-a-number"),
        pytest.param(long_frame, 3, "p_web", "0.3",
                     r"proportions change between rows of the same run \(run 'a': line 5",
                     id="proportion-changes-within-run"),
        pytest.param(long_frame, 3, "p_web", "0.3", r"line 5.*'p_web'|'p_web'.*line 5",
                     id="proportion-changes-within-run-names-column"),
    ],
)  # fmt: skip
def test_bad_cell_names_its_column_and_line(tmp_path, frame, row, column, text, message):
    """A proportion that is not a number, is missing or changes within a run, and a wide loss
    that is not a number: the message names the column (or the run) and the line."""
    path = write(tmp_path, with_cell(frame(), row, column, text))
    with pytest.raises(DataError, match=message):
        load(path)


def test_ragged_row(tmp_path):
    """A row with an extra field is refused with its line number."""
    lines = long_frame().to_csv(index=False).splitlines()
    lines[4] += ",9"
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"could not be read as a table.*line 5"):
        load(path)


# ---------------------------------------------------------------- missing and bad values
@pytest.mark.parametrize("missing", ["", "NaN", "NA", "null"])
def test_missing_loss_refused(tmp_path, missing):
    """A missing loss is refused by default, naming the line and the fix."""
    path = write(tmp_path, with_cell(long_frame(), 3, "loss", missing))
    with pytest.raises(DataError, match=r"1 loss value\(s\) are missing/NaN \(line 5\)") as e:
        load(path)
    assert "missing_policy='drop'" in str(e.value)


def test_missing_loss_dropped_with_count(tmp_path):
    """``missing_policy='drop'`` drops missing losses with a warning giving the count."""
    frame = with_cell(with_cell(long_frame(), 3, "loss", ""), 10, "loss", "nan")
    path = write(tmp_path, frame)
    with pytest.warns(DataWarning, match=r"dropped 2 observation\(s\) with a missing loss"):
        data = load_data(path, missing_policy="drop")
    assert len(data.observations) == N_OBS - 2
    assert any("line 5, line 12" in note for note in data.notes)


def test_wide_missing_loss_dropped(tmp_path):
    """In the wide layout a missing loss cell drops only that domain's observation."""
    path = write(tmp_path, with_cell(wide_frame(), 2, "web_loss", ""))
    with pytest.raises(DataError, match=r"\(line 4, column 'web_loss'\)"):
        load(path)
    with pytest.warns(DataWarning, match=r"dropped 1 observation\(s\).*line 4, column 'web_loss'"):
        data = load_data(path, missing_policy="drop")
    assert len(data.observations) == N_OBS - 1


def test_evaluations_at_step_0_are_left_out_with_a_note(tmp_path):
    """Most training loops evaluate before the first step; the law needs s > 0, so those rows
    are left out and said (they were refused, and --min-step could not help)."""
    frame = long_frame()
    first = frame[frame["step"] == frame["step"].min()].assign(step=0)
    path = write(tmp_path, pd.concat([first, frame], ignore_index=True))
    with pytest.warns(DataWarning, match=rf"left out {len(first)} row\(s\) at step 0 \(line 2"):
        data = load_data(path)
    assert len(data.observations) == len(frame)
    assert any("step 0" in n for n in data.notes)


def test_steps_written_with_suffixes_are_read_with_a_note(tmp_path):
    """`10k` in a step column is 10000, as `--step 10k` is (it was refused as not a number)."""
    frame = long_frame()
    plain = load(write(tmp_path, frame))
    text = frame.assign(step=[f"{s / 1000:g}k" for s in frame["step"]])
    with pytest.warns(DataWarning, match=r"written with a suffix \(line 2: '"):
        data = load_data(write(tmp_path, text, "suffixed.csv"))
    pd.testing.assert_frame_equal(data.observations, plain.observations)


@pytest.mark.parametrize(
    ("column", "text", "message"),
    [
        ("loss", "inf", r"1 loss value\(s\) are infinite: line 5 \(inf\)"),
        ("loss", "0", r"1 loss value\(s\) are <= 0.*: line 5 \(0\)"),
        ("loss", "-2.5", r"1 loss value\(s\) are <= 0.*: line 5 \(-2\.5\)"),
        ("step", "-100", r"column 'step': 1 step value\(s\) .*<= 0 \(line 5 \(-100\)\)"),
        ("step", "", r"column 'step': 1 step value\(s\) are missing.*\(line 5 \(nan\)\)"),
    ],
)
def test_bad_values_name_the_line(tmp_path, column, text, message):
    """Infinite or non-positive losses and non-positive or missing steps name the line."""
    path = write(tmp_path, with_cell(long_frame(), 3, column, text))
    with pytest.raises(DataError, match=message):
        load(path)


def test_bad_values_in_parquet_name_the_row(tmp_path):
    """In a Parquet file the message gives the (1-based) row."""
    frame = long_frame()
    frame.loc[3, "loss"] = -1.0
    path = write(tmp_path, frame, "runs.parquet")
    with pytest.raises(DataError, match=r"loss value\(s\) are <= 0.*: row 4 \(-1\)"):
        load(path)


def test_nan_in_parquet(tmp_path):
    """A null loss in Parquet is a missing loss, refused by default."""
    frame = long_frame()
    frame.loc[3, "loss"] = np.nan
    path = write(tmp_path, frame, "runs.parquet")
    with pytest.raises(DataError, match=r"missing/NaN \(row 4\)"):
        load(path)
    with pytest.warns(DataWarning, match=r"dropped 1 observation"):
        assert len(load_data(path, missing_policy="drop").observations) == N_OBS - 1


# ---------------------------------------------------------------- proportions
def run_rows(frame: pd.DataFrame, run: str) -> pd.Series:
    """The rows of one run."""
    return frame["run"] == run


@pytest.mark.parametrize(
    ("web", "code", "message"),
    [
        (1.2, -0.2, r"1 proportion\(s\) are negative \(run 'a' \(line 2\), 'code' = -0\.2\)"),
        (1.2, 0.0, r"1 proportion\(s\) are greater than 1 \(run 'a' \(line 2\), 'web' = 1\.2\)"),
    ],
)
def test_proportion_out_of_range(tmp_path, web, code, message):
    """Proportions below 0 or above 1 are refused, naming the run and domain."""
    frame = long_frame()
    frame.loc[run_rows(frame, "a"), ["p_web", "p_code"]] = [web, code]
    with pytest.raises(DataError, match=message):
        load(write(tmp_path, frame))


def test_mixture_not_summing_to_one(tmp_path):
    """A mixture off by more than the tolerance is refused, naming the run and its sum."""
    frame = long_frame()
    frame.loc[run_rows(frame, "c"), "p_web"] = 0.85
    path = write(tmp_path, frame)
    with pytest.raises(
        DataError, match=r"within tolerance 0\.001 \(run 'c' \(line 14\) sums to 1\.05\)"
    ):
        load(path)
    with pytest.warns(DataWarning, match=r"1 mixture\(s\) summed to within 0\.1 of 1"):
        data = load_data(path, sum_tol=0.1)
    assert data.mixtures.loc["c"].tolist() == pytest.approx([0.85 / 1.05, 0.2 / 1.05])


def test_mixture_within_tolerance_is_renormalised(tmp_path):
    """Proportions rounded in the file (sum 0.9995) are renormalised with a warning."""
    frame = long_frame()
    frame.loc[run_rows(frame, "b"), "p_web"] = 0.4995
    with pytest.warns(DataWarning, match=r"renormalised to sum to 1") as record:
        data = load_data(write(tmp_path, frame))
    assert len(record) == 1
    assert data.mixtures.loc["b"].sum() == pytest.approx(1.0, abs=1e-15)
    assert any("renormalised" in note for note in data.notes)


def test_wide_bad_proportion_names_line(tmp_path):
    """A proportion > 1 in a wide file without run ids is located by its line."""
    frame = wide_frame()
    frame.loc[3, ["weight_web", "weight_code"]] = [1.5, -0.5]
    with pytest.raises(DataError, match=r"line 5"):
        load(write(tmp_path, frame))


def test_wide_runs_keyed_on_value_not_text(tmp_path):
    """The same mixture written as 0.5 and 0.50 is one run."""
    frame = with_cell(wide_frame(), 3, "weight_web", "0.50")
    assert load(write(tmp_path, frame)).n_runs == 3


# ---------------------------------------------------------------- duplicates
def test_conflicting_duplicates(tmp_path):
    """Two different losses for one (run, step, domain) are refused, naming both lines."""
    frame = long_frame()
    extra = frame.iloc[[3]].assign(loss=9.5)
    path = write(tmp_path, pd.concat([frame, extra], ignore_index=True))
    with pytest.raises(DataError, match=r"run 'a' step 200 domain 'code'.*\(line 5 and line 20\)"):
        load(path)


def test_identical_duplicates_merged(tmp_path):
    """Exact duplicate rows are merged, with a warning giving the count and lines."""
    frame = long_frame()
    path = write(tmp_path, pd.concat([frame, frame.iloc[[3]]], ignore_index=True))
    with pytest.warns(DataWarning, match=r"merged 1 exact duplicate.*line 5, line 20"):
        data = load_data(path)
    assert data.fingerprint() == reference().fingerprint()


# ---------------------------------------------------------------- domains
@pytest.fixture
def with_ood(tmp_path) -> Path:
    """A long file with an extra evaluation domain ``ood`` that has no proportion."""
    frame = long_frame()
    ood = frame[frame["domain"] == "web"].assign(domain="ood", loss=lambda f: f["loss"] + 1)
    return write(tmp_path, pd.concat([frame, ood], ignore_index=True))


def test_domain_without_proportion(with_ood):
    """Losses of a domain without a proportion column are kept as an evaluation-only target;
    the note says which law fits it and how to leave it out."""
    with pytest.warns(DataWarning, match=r"\['ood'\] are not training domains"):
        data = load_data(with_ood)
    assert data.evaluation_only == ("ood",)
    note = next(n for n in data.notes if "'ood'" in n)
    assert "--law loglinear" in note and "exclude_domains" in note


def test_exclude_domains(with_ood):
    """``exclude_domains`` leaves the domain out and records it in the notes."""
    data = load(with_ood, exclude_domains=["ood"])
    assert data.fingerprint() == reference().fingerprint()
    assert any("left out 9 row(s)" in note for note in data.notes)
    assert any("excluded evaluation domain(s) by request: ['ood']" in n for n in data.notes)


def test_exclude_unknown_domain(long_csv):
    """Excluding a domain that is not in the file is refused (likely a typo)."""
    with pytest.raises(DataError, match=r"excluded domain\(s\) \['wbe'\] do not occur"):
        load(long_csv, exclude_domains=["wbe"])
    with pytest.raises(
        DataError, match=r"its domains: \[.*'code'.*\]; did you mean 'code' for 'cdoe'\?"
    ):
        load(long_csv, exclude_domains=["cdoe"])


def test_losses_named_after_the_training_domains_through_other_text(tmp_path):
    """W&B-style names (`eval/web_loss`): a wide file's loss columns are read through the
    pattern that names every one after a training domain (with a note); a long file's domain
    values are evaluation-only targets, and the note and BiMix's refusals say how to name them
    (they advised the log-linear law, whose recommendations then meant nothing)."""
    from bimix_bayes.leastsq.fit import check_least_squares_data

    wide = wide_frame().rename(columns={"web_loss": "eval/web_loss", "code_loss": "eval/code_loss"})
    with pytest.warns(DataWarning, match=r"'eval/\{domain\}_loss' names 2 "):
        data = load_data(write(tmp_path, wide))
    assert data.domains == DOMAINS and not data.evaluation_only
    pd.testing.assert_frame_equal(
        data.observations, load(write(tmp_path, wide_frame())).observations
    )

    long = long_frame().assign(domain=lambda f: "eval/" + f["domain"] + "_loss")
    with pytest.warns(DataWarning, match=r"look like the training domains' names"):
        data = load_data(write(tmp_path, long, "long.csv"))
    with pytest.raises(
        DataError, match=r"not training domains; they look like .*'eval/web_loss' ~ 'web'"
    ):
        check_least_squares_data(data)


def test_a_long_file_with_other_column_names_is_not_read_as_wide(tmp_path):
    """Columns `experiment, iteration, eval_set, val_loss`: read as wide (no column named like
    a domain column) it made up a domain 'val' and runs; it is refused naming the columns to
    give, and reads with them."""
    frame = long_frame().rename(
        columns={"run": "experiment", "step": "iteration", "domain": "eval_set", "loss": "val_loss"}
    )
    path = write(tmp_path, frame)
    with pytest.raises(
        DataError,
        match=r"column 'eval_set' holds training domains' names.*--layout long --domain-col "
        r"eval_set --run-col experiment --loss-col val_loss",
    ):
        load(path)
    data = load(path, layout="long", domain_col="eval_set", run_col="experiment",
                loss_col="val_loss")  # fmt: skip
    assert data.fingerprint() == reference().fingerprint()


@pytest.mark.parametrize("layout", ["long", "wide"])
def test_share_columns_named_after_the_domains_are_read(tmp_path, layout):
    """Bare share columns (`web, code`) were refused in loss logs (mixture files take them),
    and `--prop-pattern '{domain}'` then matched the run column too."""
    frame = long_frame() if layout == "long" else wide_frame()
    prefix = "p_" if layout == "long" else "weight_"
    bare = frame.rename(columns={f"{prefix}{d}": d for d in DOMAINS})
    path = write(tmp_path, bare)
    with pytest.warns(
        DataWarning, match=r"columns named after the domains were read as the shares"
    ):
        data = load_data(path)
    assert data.fingerprint() == load(write(tmp_path, frame, "plain.csv")).fingerprint()
    assert load(path, prop_pattern="{domain}").fingerprint() == data.fingerprint()


def test_wide_domain_without_proportion(tmp_path):
    """A wide loss column with no proportion column is an evaluation-only target, or excluded
    on request; one that differs from a proportion column only in case is refused."""
    frame = wide_frame().assign(ood_loss=lambda f: f["web_loss"] + 1)
    path = write(tmp_path, frame)
    with pytest.warns(DataWarning, match=r"\['ood'\] are not training domains"):
        assert load_data(path).evaluation_only == ("ood",)
    assert load(path, exclude_domains=["ood"]).domains == DOMAINS
    typo = wide_frame().rename(columns={"web_loss": "Web_loss"})
    with pytest.raises(DataError, match="differs only in case"):
        load(write(tmp_path, typo))


# ---------------------------------------------------------------- design
def test_too_few_steps(tmp_path):
    """Fewer than three checkpoints is refused, naming each domain and the file."""
    path = write(tmp_path, long_frame(steps=(100, 200)))
    with pytest.raises(DataError, match=r"domain 'web': 2 distinct steps \(need 3") as e:
        load(path)
    assert str(e.value).startswith(f"{path}: too few distinct")
    assert "domain 'code'" in str(e.value)


def test_too_few_mixtures(tmp_path):
    """A single mixture cannot separate the share effect and is refused per domain."""
    path = write(tmp_path, long_frame(mixtures={"a": (0.2, 0.8)}))
    with pytest.raises(DataError, match=r"domain 'web': its 1 run\(s\) give it 1 distinct"):
        load(path)
    assert load(path, min_mixtures=1).n_runs == 1


def test_tokens_named_in_design_error(tmp_path):
    """With a token count the design error speaks of tokens."""
    path = write(tmp_path, wide_frame(steps=(1000, 2000)))
    with pytest.raises(DataError, match=r"2 distinct tokens \(need 3"):
        load(path)


# ---------------------------------------------------------------- zero shares
@pytest.fixture
def zero_csv(tmp_path) -> Path:
    """Run ``a`` trains on code only (web share 0) but web is evaluated."""
    mixtures = {**MIXTURES, "a": (0.0, 1.0)}
    return write(tmp_path, long_frame(mixtures=mixtures))


def test_zero_share_refused(zero_csv):
    """Zero shares are refused by default, saying how many and where."""
    with pytest.raises(DataError, match=r"3 observation\(s\) in 1 \(run, domain\).*'a' / 'web'"):
        load(zero_csv)


def test_zero_share_dropped(zero_csv):
    """``zero_policy='drop'`` drops those observations with a warning giving the count."""
    with pytest.warns(DataWarning, match=r"dropped 3 observation\(s\)"):
        data = load_data(zero_csv, zero_policy="drop")
    assert len(data.observations) == N_OBS - 3
    assert not ((data.observations["run"] == "a") & (data.observations["domain"] == "web")).any()


def test_zero_share_epsilon(zero_csv):
    """``zero_policy='epsilon'`` keeps every observation with a small positive share."""
    with pytest.warns(DataWarning, match=r"set to epsilon = 0\.01"):
        data = load_data(zero_csv, zero_policy="epsilon", epsilon=0.01)
    assert len(data.observations) == N_OBS
    assert data.mixtures.loc["a"].tolist() == pytest.approx([0.01 / 1.01, 1 / 1.01])
    assert data.mixtures.loc["b"].tolist() == [0.5, 0.5]


# ---------------------------------------------------------------- groups
def grouped_frame(sizes=(122e6, 1.235e9)) -> pd.DataFrame:
    """Two model sizes with the same runs and steps but different losses."""
    parts = []
    for size in sizes:
        part = long_frame()
        part["loss"] += size / 1e10
        part.insert(0, "model_size", size)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(params=["csv", "parquet"])
def grouped(request, tmp_path) -> Path:
    return write(tmp_path, grouped_frame(), f"sizes.{request.param}")


def test_several_groups_without_selection(grouped):
    """A file with several groups and no group column is refused as duplicates, with the fix."""
    with pytest.raises(DataError, match=r"have different losses.*group_col"):
        load(grouped)


def test_group_required_when_several(grouped):
    """Naming the group column without a group lists the groups found."""
    with pytest.raises(DataError, match=r"'model_size' has 2 groups \(122M, 1\.235B\)"):
        load(grouped, group_col="model_size")


@pytest.mark.parametrize(
    ("wanted", "label"),
    [("122M", "122M"), ("122m", "122M"), ("122000000", "122M"), ("1.235B", "1.235B")],
)
def test_group_selected_by_size(grouped, wanted, label):
    """Sizes match loosely: "122M" selects 122000000.0; only that group's rows are kept."""
    data = load(grouped, group_col="model_size", group=wanted)
    assert data.group == label
    assert len(data.observations) == N_OBS
    expected_shift = {"122M": 122e6, "1.235B": 1.235e9}[label] / 1e10
    np.testing.assert_allclose(
        data.observations["loss"].to_numpy(),
        reference().observations["loss"].to_numpy() + expected_shift,
    )
    assert any(f"selected group {label}" in note for note in data.notes)


def test_missing_group_lists_available(grouped):
    """An unknown group is refused with the list of available ones."""
    with pytest.raises(DataError, match=r"group '7B' not found.*available: 122M, 1\.235B"):
        load(grouped, group_col="model_size", group="7B")


def test_missing_group_column(grouped):
    """A group column that is not in the file is refused with the columns."""
    with pytest.raises(DataError, match=r"no group column 'size'; columns: \['model_size'"):
        load(grouped, group_col="size", group="122M")


def test_group_without_group_column(grouped):
    """A group without a group column is refused."""
    with pytest.raises(DataError, match=r"needs --group-col"):
        load(grouped, group="122M")


def test_single_group_is_selected(tmp_path):
    """With one group in the column, it is chosen without being named."""
    path = write(tmp_path, grouped_frame(sizes=(70e6,)))
    data = load(path, group_col="model_size")
    assert data.group == "70M"
    assert not any("selected group" in note for note in data.notes)


def test_text_groups(tmp_path):
    """Text group labels (seeds) are matched exactly."""
    frame = grouped_frame()
    frame["model_size"] = frame["model_size"].map({122e6: "seed-1", 1.235e9: "seed-2"})
    data = load(write(tmp_path, frame), group_col="model_size", group="seed-2")
    assert data.group == "seed-2"


def test_group_keeps_file_line_numbers(tmp_path):
    """After selecting a group, errors still give the line in the file."""
    frame = with_cell(grouped_frame(), N_OBS + 3, "loss", "-1")
    path = write(tmp_path, frame)
    with pytest.raises(DataError, match=at(f"line {N_OBS + 5}")):
        load(path, group_col="model_size", group="1.235B")
    assert load(path, group_col="model_size", group="122M").n_runs == 3


# ---------------------------------------------------------------- volume
@pytest.mark.parametrize(
    ("step_col", "volume"),
    [("step", "steps"), ("steps", "steps"), ("n_tokens", "tokens"), ("tokens", "tokens")],
)
def test_volume_detected_from_step_column(tmp_path, step_col, volume):
    """The volume is tokens when the step column counts tokens."""
    path = write(tmp_path, long_frame(step_col=step_col))
    assert load(path).volume == volume


def test_volume_given_explicitly(tmp_path):
    """An explicit volume overrides the detection."""
    path = write(tmp_path, long_frame(step_col="n_tokens"))
    assert load(path, volume="steps").volume == "steps"


# ---------------------------------------------------------------- repeated checkpoints
@pytest.fixture
def repeated_csv(tmp_path) -> Path:
    """Run ``b`` logged its final checkpoint twice (steps 400 and 800, equal losses)."""
    frame = long_frame(steps=(*STEPS, 800))
    last = (frame["run"] == "b") & (frame["step"] == 800)
    prev = (frame["run"] == "b") & (frame["step"] == 400)
    frame.loc[last, "loss"] = frame.loc[prev, "loss"].to_numpy()
    return write(tmp_path, frame)


def test_repeated_checkpoint_reported(repeated_csv):
    """A repeated final checkpoint is kept but reported, with the option to drop it."""
    with pytest.warns(DataWarning, match=r"run 'b': 400 and 800.*drop_repeated_checkpoints"):
        data = load_data(repeated_csv)
    assert len(data.observations) == 4 * 3 * 2


def test_repeated_checkpoint_dropped(repeated_csv):
    """``drop_repeated_checkpoints=True`` keeps one copy and says so."""
    with pytest.warns(DataWarning, match=r"dropped the earlier of two checkpoints.*run 'b'"):
        data = load_data(repeated_csv, drop_repeated_checkpoints=True)
    b = data.observations[data.observations["run"] == "b"]
    assert sorted(set(b["step"])) == [100.0, 200.0, 800.0]
    assert len(data.observations) == 4 * 3 * 2 - 2


# ---------------------------------------------------------------- file errors
def test_missing_file(tmp_path):
    """A path that does not exist is a DataError naming it."""
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["runs.xlsx", "runs.json", "runs"])
def test_unknown_file_type(tmp_path, name):
    """Only CSV/TSV (possibly compressed) and Parquet are read."""
    path = tmp_path / name
    path.write_text("run,step\n")
    with pytest.raises(DataError, match=rf"{re.escape(name)}: unknown file type; use \.csv"):
        load(path)


def test_folder_instead_of_file(tmp_path):
    """A folder is refused with a clear message."""
    folder = tmp_path / "runs.csv"
    folder.mkdir()
    with pytest.raises(DataError, match="is a folder"):
        load(folder)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        pytest.param("empty.csv", "", r"empty\.csv: the file is empty", id="empty"),
        pytest.param("header.csv", "run,step,domain,loss,p_web,p_code\n",
                     r"header\.csv: the file has no data rows", id="header-only"),
        pytest.param("runs.parquet", "run,step\n1,2\n",
                     r"runs\.parquet: could not be read as a table", id="parquet-not-parquet"),
    ],
)  # fmt: skip
def test_file_without_a_table(file_at, name, text, message):
    """A zero-byte file, a header without rows, or a .parquet that is not Parquet is refused,
    naming the file."""
    with pytest.raises(DataError, match=message):
        load(file_at(name, text))


def test_empty_parquet(tmp_path):
    """A Parquet file with no rows is refused."""
    path = write(tmp_path, long_frame().iloc[:0], "runs.parquet")
    with pytest.raises(DataError, match="no data rows"):
        load(path)


# ---------------------------------------------------------------- round trip
@pytest.mark.parametrize("name", ["long.csv", "long.csv.gz", "long.parquet"])
def test_round_trip_to_long(tmp_path, name):
    """``to_long()`` written to a file and read back gives the same fingerprint."""
    data = reference()
    path = tmp_path / name
    if name.endswith(".parquet"):
        data.to_long().to_parquet(path)
    else:
        data.to_long().to_csv(path, index=False)
    back = load(path)
    assert back.fingerprint() == data.fingerprint()
    assert back.domains == data.domains and back.runs == data.runs


def test_round_trip_with_group(tmp_path):
    """A grouped table round-trips, the group column selecting its label."""
    data = reference()
    data = MixtureData.from_frames(data.mixtures, data.observations, group="122M")
    path = tmp_path / "long.csv"
    data.to_long().to_csv(path, index=False)
    back = load(path, group_col="group")
    assert back.group == "122M"
    assert back.fingerprint() == data.fingerprint()


def test_round_trip_of_tokens(tmp_path):
    """Token volumes survive the round trip when named on reading."""
    data = load(write(tmp_path, wide_frame()))
    path = tmp_path / "long.csv"
    data.to_long().to_csv(path, index=False)
    assert load(path, volume="tokens").fingerprint() == data.fingerprint()


def test_row_order_of_file_does_not_change_fingerprint(tmp_path):
    """The same rows in another order give the same fingerprint."""
    shuffled = long_frame().sample(frac=1.0, random_state=3)
    assert load(write(tmp_path, shuffled)).fingerprint() == reference().fingerprint()


def test_round_trip_of_float_rounded_mixture(tmp_path):
    """Proportions like 0.6 / 0.3 / 0.1 survive ``to_long`` -> CSV -> ``load_data``."""
    frame = long_frame().assign(p_books=0.1)
    frame.loc[run_rows(frame, "a"), ["p_web", "p_code"]] = [0.6, 0.3]
    frame.loc[run_rows(frame, "b"), ["p_web", "p_code"]] = [0.45, 0.45]
    frame.loc[run_rows(frame, "c"), ["p_web", "p_code"]] = [0.3, 0.6]
    data = load(write(tmp_path, frame))
    path = tmp_path / "long.csv"
    data.to_long().to_csv(path, index=False)
    assert load(path).fingerprint() == data.fingerprint()


# ---------------------------------------------------------------- known message defects
def test_wide_bad_step_names_step_column(tmp_path):
    """A bad token count names its own column once."""
    path = write(tmp_path, with_cell(wide_frame(), 3, "n_tokens", "abc"))
    with pytest.raises(DataError, match=r"n_tokens.*1 cell\(s\)|1 cell\(s\).*n_tokens") as e:
        load(path)
    assert "web_loss" not in str(e.value)


def test_bad_cell_names_the_files_column(tmp_path):
    """The message names the column as it is spelt in the file."""
    frame = long_frame().rename(columns={"loss": "val_loss"})
    path = write(tmp_path, with_cell(frame, 3, "val_loss", "abc"))
    with pytest.raises(DataError, match=r"'val_loss'"):
        load(path)


# ---------------------------------------------------------------- property tests
CSV_CORRUPTIONS = {
    "text loss": ("loss", "1.2.3", r"not numbers"),
    "negative loss": ("loss", "-0.5", r"loss value\(s\) are <= 0"),
    "zero loss": ("loss", "0", r"loss value\(s\) are <= 0"),
    "infinite loss": ("loss", "inf", r"loss value\(s\) are infinite"),
    "empty loss": ("loss", "", r"loss value\(s\) are missing"),
    "negative step": ("step", "-5", r"step value\(s\) are missing, not finite or <= 0"),
    "text step": ("step", "1kk", r"not numbers"),
    "text proportion": ("p_web", "abc", r"column 'p_web': 1 cell\(s\) are not numbers"),
}


@pytest.fixture(scope="module")
def prop_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


@PROPERTY
@given(st.integers(0, N_OBS - 1), st.sampled_from(sorted(CSV_CORRUPTIONS)))
def test_property_corrupted_long_cell_names_its_line(prop_dir, row, kind):
    """Any single bad cell of a long CSV is refused with that cell's line number."""
    column, text, message = CSV_CORRUPTIONS[kind]
    path = write(prop_dir, with_cell(long_frame(), row, column, text), "corrupt.csv")
    with pytest.raises(DataError, match=message) as e:
        load(path)
    assert re.search(at(f"line {row + 2}"), str(e.value)), str(e.value)
    assert str(e.value).count("line ") == 1, "only the corrupted line is named"


@PROPERTY
@given(
    st.integers(0, len(MIXTURES) * len(STEPS) - 1),
    st.sampled_from(DOMAINS),
    st.sampled_from(["-1", "abc", "", "inf", "0"]),
)
def test_property_corrupted_wide_loss_names_line_and_column(prop_dir, row, domain, text):
    """Any single bad loss of a wide CSV is refused with its line and column."""
    column = f"{domain}_loss"
    path = write(prop_dir, with_cell(wide_frame(), row, column, text), "corrupt_wide.csv")
    line = f"line {row + 2}"
    with pytest.raises(DataError) as e:
        load(path)
    message = str(e.value)
    assert f"{line}, column '{column}'" in message or (
        f"column '{column}'" in message and f"{line}:" in message
    ), message


@st.composite
def valid_tables(draw):
    """Random valid data with sorted run ids: 2-3 domains, 2-4 runs, 3-5 steps."""
    domains = ["web", "code", "math"][: draw(st.integers(2, 3))]
    runs = [f"run{i:02d}" for i in range(draw(st.integers(2, 4)))]
    cuts = st.lists(
        st.integers(1, 63), min_size=len(domains) - 1, max_size=len(domains) - 1, unique=True
    )
    # multiples of 1/64: exact in binary, so every row sums to exactly 1.0
    shares = [np.diff([0, *sorted(draw(cuts)), 64]) / 64 for _ in runs]
    mixtures = pd.DataFrame(shares, runs, domains)
    steps = draw(st.lists(st.integers(1, 10**6), min_size=3, max_size=5, unique=True))
    loss = st.floats(0.1, 10.0, allow_nan=False)
    observations = pd.DataFrame(
        [(r, float(s), d, draw(loss)) for r in runs for s in steps for d in domains],
        columns=["run", "step", "domain", "loss"],
    )
    return mixtures, observations


@PROPERTY
@given(valid_tables(), st.sampled_from(["rt.csv", "rt.parquet"]))
def test_property_round_trip(prop_dir, tables, name):
    """Any valid table survives ``to_long`` -> file -> ``load_data`` with the same fingerprint."""
    mixtures, observations = tables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = MixtureData.from_frames(mixtures, observations, min_mixtures=1)
        path = prop_dir / name
        if name.endswith(".parquet"):
            data.to_long().to_parquet(path)
        else:
            data.to_long().to_csv(path, index=False)
        back = load_data(path, min_mixtures=1)
    assert back.fingerprint() == data.fingerprint()
    assert len(back.observations) == len(observations)


# ---------------------------------------------------------------- public data, other domains
def test_redpajama_runs_have_evaluation_only_pile_groups(datasets_dir):
    """Ye et al.'s RedPajama runs: 7 training domains, the Pile's 5 groups as evaluation-only
    targets; the groups' weights make the full loss (they reproduce the authors' 'full')."""
    import json

    from bimix_bayes.data.public_loaders import (
        FIVE_MIX_GROUPS,
        load_mixinglaws,
        pile_group_weights,
    )

    data = load_mixinglaws(datasets_dir, "RedPajama", "410M")
    assert any("not training domains" in note for note in data.notes)
    assert set(data.evaluation_only) == set(FIVE_MIX_GROUPS) == set(data.domains)
    assert "CommonCrawl" in data.training_domains and len(data.training_domains) == 7
    weights = pile_group_weights(datasets_dir)
    assert np.isclose(sum(weights.values()), 1.0)
    # the authors' "observed" full loss of a 410M run at 30k steps, from their predictions file
    raw = json.loads((datasets_dir / "mixinglaws_ye2024/raw/RPJ.predictions.json").read_text())
    key, by_step = next(iter(raw["full"].items()))  # keyed by the mixture's shares
    shares = np.array([float(x) for x in key.split("-")])
    close = np.isclose(data.mixtures.to_numpy(), shares / shares.sum(), atol=1e-9).all(axis=1)
    run = data.mixtures.index[close][0]
    obs = data.observations
    at = obs[(obs["run"] == run) & (obs["step"] == 30000)]
    full = sum(weights[d] * loss for d, loss in zip(at["domain"], at["loss"], strict=True))
    assert len(at) == 5 and np.isclose(full, by_step["30000"][1], rtol=1e-9)


def test_mixinglaws_every_size_is_a_size_dimension_in_non_embedding_parameters(datasets_dir):
    """``size=None``: Ye et al.'s sizes as a dimension, counted as their pipeline counts them
    (non-embedding), the same observations as the one-size loads, one mixture per run id."""
    from bimix_bayes.data.public_loaders import MIXINGLAWS_NON_EMBEDDING, load_mixinglaws

    every = load_mixinglaws(datasets_dir, "5Mix", None)
    assert every.size_kind == "non-embedding parameters"
    assert every.sizes == tuple(float(v) for v in MIXINGLAWS_NON_EMBEDDING.values())
    one = load_mixinglaws(datasets_dir, "5Mix", "160M")
    obs = every.observations
    at = obs[obs["size"] == MIXINGLAWS_NON_EMBEDDING["160M"]].drop(columns="size")
    key = ["run", "step", "domain"]
    pd.testing.assert_frame_equal(
        at.sort_values(key).reset_index(drop=True),
        one.observations.sort_values(key).reset_index(drop=True),
    )
    assert np.allclose(every.mixtures.loc[one.mixtures.index], one.mixtures)


def test_mixinglaws_validation_runs_are_kept_on_request(datasets_dir):
    """The authors' 1B validation runs (default and optimised mixtures, trained to 100k steps)
    are left out by default and kept with ``validation_runs=True``; RedPajama's run 999 has a
    typo in its C4 share (sums to 1.0199), read as the value that makes it sum to 1, loudly."""
    from bimix_bayes.data.public_loaders import load_mixinglaws

    default = load_mixinglaws(datasets_dir, "RedPajama", None, zero_policy="keep")
    assert "999" not in default.mixtures.index
    kept = load_mixinglaws(
        datasets_dir, "RedPajama", None, zero_policy="keep", validation_runs=True
    )
    assert {"997", "999"} <= set(kept.mixtures.index)
    assert np.isclose(kept.mixtures.loc["999", "C4"], 0.1484375, atol=1e-6)
    assert any("0.168375 read as 0.1484375" in note for note in kept.notes)
    obs = kept.observations
    at_1b = obs[(obs["run"] == "999") & (obs["size"] == 805_736_448.0)]
    assert at_1b["step"].max() == 100_000


def _ye_table(tmp_path, shares_by_size):
    """A tiny 2Mix-style long file: one run id, one mixture per size, two steps."""
    rows = [
        (size, 0, "m", a, 1 - a, step, dom, 3.0 - step / 1e5)
        for size, a in shares_by_size.items()
        for step in (1000, 2000)
        for dom in ("Github", "Pile-CC")
    ]
    cols = ["model_size", "run_id", "mixture", "p_Github", "p_Pile-CC", "step", "eval_domain"]
    folder = tmp_path / "mixinglaws_ye2024"
    folder.mkdir()
    pd.DataFrame(rows, columns=[*cols, "loss"]).to_csv(folder / "2Mix_losses_long.csv", index=False)
    return tmp_path


def test_mixinglaws_every_size_refuses_a_run_id_with_two_mixtures(tmp_path):
    from bimix_bayes.data.public_loaders import load_mixinglaws

    root = _ye_table(tmp_path, {"70M": 0.25, "160M": 0.5})
    with pytest.raises(DataError, match="different mixtures at different sizes"):
        load_mixinglaws(root, "2Mix", None)


def test_mixinglaws_every_size_refuses_a_size_without_a_parameter_count(tmp_path):
    from bimix_bayes.data.public_loaders import load_mixinglaws

    root = _ye_table(tmp_path, {"70M": 0.25, "2.8B": 0.25})
    with pytest.raises(DataError, match=r"'2.8B'.*no known non-embedding"):
        load_mixinglaws(root, "2Mix", None)


def test_a_table_in_memory_loads_as_its_file_would(tmp_path):
    """`load_data(frame)` raised a TypeError (a new user's first try); it reads the table as
    the same file, its rows named in messages."""
    frame = long_frame()
    assert load_data(frame).fingerprint() == load(write(tmp_path, frame)).fingerprint()
    with pytest.raises(DataError, match=r"row 4 \(-1\)"):
        load_data(frame.assign(loss=lambda f: f["loss"].where(f.index != 3, -1.0)))


def test_a_domain_misspelt_in_one_run_is_said(tmp_path):
    """`code` written `cod` in one run's rows: the run missing `code` is noted, and the
    refusal of `cod` (one run) names the close domain, not only 'add runs'."""
    frame = long_frame()
    one_run = (frame["run"] == frame["run"].iloc[0]) & (frame["domain"] == "code")
    typo = frame.assign(domain=frame["domain"].where(~one_run, "cod"))
    noted = pytest.warns(DataWarning, match=r"1 run\(s\) have no losses of 'code', which 2 of 3")
    refused = pytest.raises(DataError, match=r"or fix a misspelt name; did you mean 'code'")
    with noted, refused:
        load_data(write(tmp_path, typo))


def test_a_loss_spike_is_noted_and_kept(tmp_path):
    """A loss 10x its neighbouring checkpoints (a logging glitch) was accepted without a word;
    it is kept (a real spike is data) and noted with its line and neighbours."""
    frame = long_frame()
    row = int(np.flatnonzero((frame["step"] == STEPS[1]).to_numpy())[0])
    spiked = frame.assign(loss=frame["loss"].where(frame.index != row, frame["loss"] * 10))
    with pytest.warns(DataWarning, match=rf"1 loss value\(s\) lie more .* line {row + 2} \("):
        data = load_data(write(tmp_path, spiked))
    assert len(data.observations) == len(frame)
    load(write(tmp_path, frame, "clean.csv"))  # no note without a spike


def test_a_misspelt_mixture_column_names_the_file_and_the_domain():
    """`book` for `books` in a candidates file: the file and the close name are given."""
    from bimix_bayes.data.table import prediction_shares

    mixtures = pd.DataFrame({"web": [0.5], "book": [0.5]}, index=["even"])
    mixtures.attrs["source"] = "cands.csv"
    message = r"cands\.csv: the mixtures lack .*\['books'\].*did you mean 'books' for 'book'"
    with pytest.raises(DataError, match=message):
        prediction_shares(mixtures, ["web", "books"])


def test_negative_losses_say_what_to_fix(tmp_path):
    """One negative loss: a logging error; all of them: a log-likelihood, to negate."""
    frame = long_frame()
    with pytest.raises(DataError, match=r"a logging error\? fix or remove those rows"):
        load(write(tmp_path, with_cell(frame, 3, "loss", "-2.5")))
    with pytest.raises(DataError, match=r"every loss is negative: a log-likelihood\?"):
        load(write(tmp_path, frame.assign(loss=-frame["loss"]), "loglik.csv"))


def test_find_datasets_takes_a_folder(tmp_path):
    from bimix_bayes.data.public_loaders import find_datasets

    assert find_datasets(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no datasets folder"):
        find_datasets(tmp_path / "nope")


def test_a_wide_file_whose_runs_are_named_after_domains_is_read(tmp_path):
    """Single-domain baselines named `web`, `code` in the run column: a wide file, not a long
    one (the long-layout check read the run column as domains; review of the change)."""
    frame = wide_frame(run_col=True)
    frame["run"] = frame["run"].map({"a": "web", "b": "code", "c": "mixC"})
    assert sorted(load(write(tmp_path, frame)).runs) == ["code", "mixC", "web"]


def test_a_table_keeps_the_columns_in_its_named_index():
    frame = long_frame()
    assert load_data(frame.set_index("run")).fingerprint() == load_data(frame).fingerprint()


def test_wandb_names_with_a_held_out_set_read_the_training_ones(tmp_path):
    """`eval/web_loss, eval/code_loss` and a held-out `eval/ood_loss`: the two are read as
    web and code, the third stays an evaluation-only target."""
    wide = wide_frame().rename(columns={"web_loss": "eval/web_loss", "code_loss": "eval/code_loss"})
    wide["eval/ood_loss"] = wide["eval/web_loss"] + 1
    with pytest.warns(DataWarning, match=r"\['eval/ood_loss'\] stay evaluation-only"):
        data = load_data(write(tmp_path, wide))
    assert set(data.domains) == {*DOMAINS, "eval/ood"}
