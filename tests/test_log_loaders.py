"""Loss logs where teams keep them: TensorBoard folders and MLflow stores, written here with the
real libraries (``pip install '.[logs]'``, and MLflow for writing) and read by ``load_data``
through the same validation as CSV input: the same runs give the same table as the same CSV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.loaders import load_data
from bimix_bayes.data.run_logs import MissingExtraError
from bimix_bayes.data.table import DataError, DataWarning, MixtureData

SHARES = {"mix-a": 0.25, "mix-b": 0.5, "mix-c": 0.75}  # share of web; code has the rest
STEPS = (100, 200, 400, 800)
BIMIX = Path(sys.executable).with_name("bimix")


def loss_of(domain: str, share: float, step: int) -> float:
    """A loss exact in float32 (TensorBoard's precision), falling with the share and the step."""
    base = 3.0 if domain == "web" else 1.5
    return float(np.float32(base + (1 - share) / 4 + 64 / step))


def mixture(web: float) -> dict[str, float]:
    return {"web": web, "code": 1 - web}


def same_csv(tmp_path: Path, shares: dict[str, float] = SHARES, **kwargs) -> MixtureData:
    """The same runs, written as the long CSV and read by the CSV loader."""
    rows = [
        {"run": run, "step": step, "domain": d, "loss": loss_of(d, mixture(w)[d], step)}
        | {f"p_{k}": v for k, v in mixture(w).items()}
        for run, w in shares.items()
        for step in STEPS
        for d in ("web", "code")
    ]
    path = tmp_path / "same.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return load_data(path, **kwargs)


def quiet_load(path: Path, **kwargs) -> MixtureData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_data(path, **kwargs)


def bimix(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    return subprocess.run(
        [str(BIMIX), *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


# ------------------------------------------------------------------------------ TensorBoard
@pytest.fixture
def tb_writer():
    pytest.importorskip("tbparse")
    return pytest.importorskip("tensorboard.summary").Writer


def write_tb(root: Path, writer_cls, shares=SHARES, tag="eval/{domain}_loss", files="json"):
    """One run folder per mixture, written with tensorboard's own writer (scalar tensors)."""
    for run, web in shares.items():
        writer = writer_cls(str(root / run))
        for step in STEPS:
            for domain, share in mixture(web).items():
                writer.add_scalar(tag.format(domain=domain), loss_of(domain, share, step), step)
            writer.add_scalar("train/loss", 9.0, step)  # ignored: not a domain's loss
        writer.close()
        if files == "json":
            (root / run / "mixture.json").write_text(json.dumps(mixture(web)))
    return root


def test_tensorboard_folder_reads_like_the_same_csv(tmp_path, tb_writer):
    root = write_tb(tmp_path / "tb", tb_writer)
    (root / "mix-c" / "mixture.json").unlink()  # one run with a one-row mixture.csv instead
    (root / "mix-c" / "mixture.csv").write_text("web,code\n0.75,0.25\n")
    data = load_data(root)
    assert isinstance(data, MixtureData)
    assert data.runs == tuple(SHARES) and set(data.domains) == {"web", "code"}
    assert data.source == str(root) and data.volume == "steps"
    assert data.fingerprint() == same_csv(tmp_path).fingerprint()


@pytest.mark.parametrize("source", ["table", "name", "parent"])
def test_tensorboard_mixture_sources(tmp_path, tb_writer, source):
    """A top-level mixtures.csv, shares in the run names (percent), or a mixture.json above."""
    kwargs: dict[str, object] = {}
    if source == "name":
        names = {f"web{int(w * 100)}_code{int(100 - w * 100)}": w for w in SHARES.values()}
        root = write_tb(tmp_path / "tb", tb_writer, names, files="none")
        kwargs["run_name_pattern"] = r"web(?P<web>\d+)_code(?P<code>\d+)"
        expected = same_csv(tmp_path, names)
    elif source == "table":
        root = write_tb(tmp_path / "tb", tb_writer, files="none")
        rows = "".join(f"{run},{w},{1 - w}\n" for run, w in SHARES.items())
        (root / "mixtures.csv").write_text("run,web,code\n" + rows)
        expected = same_csv(tmp_path)
    else:  # seeds of one mixture each below a folder holding that mixture
        root = tmp_path / "tb"
        for run, w in SHARES.items():
            write_tb(root / run, tb_writer, {"seed0": w}, files="none")
            (root / run / "mixture.json").write_text(json.dumps({"mixture": mixture(w)}))
        data = quiet_load(root)
        assert data.runs == tuple(f"{run}/seed0" for run in SHARES)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_data(root, **kwargs)
    assert data.fingerprint() == expected.fingerprint()
    if source == "name":
        assert any("percent" in str(w.message) for w in caught)


def test_tensorboard_hparams_from_torch_writer(tmp_path):
    """PyTorch's SummaryWriter: classic scalars, hparams in the subfolder add_hparams makes,
    an evaluation at step 0 (left out, with a note)."""
    pytest.importorskip("tbparse")
    summary_writer = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
    root = tmp_path / "tb"
    for run, web in SHARES.items():
        writer = summary_writer(str(root / run))
        for step in (0, *STEPS):
            for domain, share in mixture(web).items():
                writer.add_scalar(f"loss/{domain}", loss_of(domain, share, max(step, 1)), step)
        hparams = {"share_web": web, "share_code": 1 - web, "weight_decay": 0.1, "lr": 3e-4}
        writer.add_hparams(hparams, {"hparam/final": 1.0})
        writer.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_data(root)
    assert data.fingerprint() == same_csv(tmp_path).fingerprint()
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(said) == 2, said
    assert "left out 6 value(s) at step 0 or below" in said[1]
    assert "hparams of 3 run(s) were read from the subfolder that PyTorch's" in said[0]


def test_tensorboard_restarted_run_keeps_the_later_write(tmp_path, tb_writer):
    root = write_tb(tmp_path / "tb", tb_writer)
    again = tb_writer(str(root / "mix-a"))  # a restart logs step 800 again, later
    again.add_scalar("eval/web_loss", 7.5, 800, wall_time=4e9)
    again.close()
    with pytest.warns(DataWarning, match="logged twice"):
        data = load_data(root)
    obs = data.observations.set_index(["run", "domain", "step"])
    assert obs.loc[("mix-a", "web", 800.0), "loss"] == 7.5


def test_tensorboard_token_counts_from_a_tag(tmp_path, tb_writer):
    root = write_tb(tmp_path / "tb", tb_writer)
    for run in SHARES:
        writer = tb_writer(str(root / run))
        for step in STEPS:
            writer.add_scalar("train/tokens", step * 4096, step)
        writer.close()
    data = load_data(root, step_col="train/tokens", loss_pattern="eval/{domain}_loss")
    assert data.volume == "tokens"
    assert sorted(data.observations["step"].unique()) == [s * 4096 for s in STEPS]


def test_tensorboard_errors_say_what_where_and_how(tmp_path, tb_writer):
    root = write_tb(tmp_path / "tb", tb_writer)
    (root / "mix-b" / "mixture.json").unlink()
    with pytest.raises(DataError, match=r"1 run\(s\) have losses but no mixture: mix-b; .*mixture"):
        load_data(root)
    (root / "mix-b" / "mixture.json").write_text('{"web": "lots"}')
    with pytest.raises(DataError, match=r"mix-b/mixture.json: the share\(s\) of \['web'\]"):
        load_data(root)
    (root / "mix-b" / "mixture.json").write_text(json.dumps(mixture(0.5)))
    with pytest.raises(DataError, match=r"no scalar tag matches the loss pattern 'val/\{domain\}'"):
        load_data(root, loss_pattern="val/{domain}")
    with pytest.raises(DataError, match="--layout, --domain-col describe"):
        load_data(root, layout="long", domain_col="domain")


def test_tensorboard_folder_without_logs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither TensorBoard event files"):
        load_data(tmp_path / "empty")


def test_tensorboard_validation_is_the_csv_validation(tmp_path, tb_writer):
    """A NaN loss is refused as in a CSV, and dropped with a count under missing_policy='drop'."""
    root = write_tb(tmp_path / "tb", tb_writer)
    writer = tb_writer(str(root / "mix-c"))
    writer.add_scalar("eval/code_loss", float("nan"), 1600)
    writer.close()
    with pytest.raises(DataError, match=r"1 loss value\(s\) are missing/NaN .*mix-c/events"):
        load_data(root)
    data = quiet_load(root, missing_policy="drop")
    assert data.fingerprint() == same_csv(tmp_path).fingerprint()
    assert any("dropped 1 observation(s) with a missing loss" in n for n in data.notes)


def test_tensorboard_without_the_extra_says_how_to_install(tmp_path, tb_writer, monkeypatch):
    root = write_tb(tmp_path / "tb", tb_writer)
    monkeypatch.setitem(sys.modules, "tbparse", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'bimix-bayes\[logs\]'") as info:
        load_data(root)
    assert isinstance(info.value, ImportError) and isinstance(info.value, DataError)


# ------------------------------------------------------------------------------ MLflow
@pytest.fixture
def mlflow_client(tmp_path, monkeypatch):
    """A client of an MLflow file store in tmp_path/mlruns (MLflow 3 asks to allow it)."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())


def write_mlflow(client, experiment: str, shares=SHARES, params="share", key="eval/{domain}_loss"):
    """One MLflow run per mixture: the shares as params, the losses as metrics by step."""
    exp_id = client.create_experiment(experiment)
    ids = {}
    for run, web in shares.items():
        run_id = client.create_run(exp_id, run_name=run).info.run_id
        if params == "share":
            for domain, share in mixture(web).items():
                client.log_param(run_id, f"share_{domain}", share)
        elif params == "dict":
            client.log_param(run_id, "mixture", mixture(web))
        client.log_param(run_id, "weight_decay", 0.1)
        for step in STEPS:
            for domain, share in mixture(web).items():
                value = loss_of(domain, share, step)
                client.log_metric(run_id, key.format(domain=domain), value, step=step)
            client.log_metric(run_id, "train/loss", 9.0, step=step)
        client.set_terminated(run_id)
        ids[run] = run_id
    return exp_id, ids


def test_mlflow_file_store_reads_like_the_same_csv(tmp_path, mlflow_client):
    exp_id, _ = write_mlflow(mlflow_client, "mix")
    expected = same_csv(tmp_path).fingerprint()
    data = load_data(tmp_path / "mlruns")
    assert sorted(data.runs) == sorted(SHARES) and set(data.domains) == {"web", "code"}
    assert data.fingerprint() == expected
    assert load_data(tmp_path / "mlruns" / exp_id).fingerprint() == expected  # one experiment


def test_mlflow_dict_param_and_hugging_face_keys(tmp_path, mlflow_client):
    write_mlflow(mlflow_client, "mix", params="dict", key="eval_{domain}_loss")
    assert load_data(tmp_path / "mlruns").fingerprint() == same_csv(tmp_path).fingerprint()


def test_mlflow_experiments_groups_and_dropped_runs(tmp_path, mlflow_client):
    _, ids = write_mlflow(mlflow_client, "small")
    write_mlflow(mlflow_client, "large", {f"{r}-large": w for r, w in SHARES.items()})
    with pytest.raises(DataError, match=r"runs of 2 experiments .*--group-col experiment"):
        load_data(tmp_path / "mlruns")
    data = load_data(tmp_path / "mlruns", group_col="experiment", group="small")
    assert sorted(data.runs) == sorted(SHARES) and data.group == "small"
    mlflow_client.delete_run(ids["mix-b"])
    with pytest.raises(DataError, match=r"too few distinct|distinct"):
        quiet_load(tmp_path / "mlruns", group_col="experiment", group="small", min_mixtures=3)
    data = quiet_load(tmp_path / "mlruns", group_col="experiment", group="small")
    assert sorted(data.runs) == ["mix-a", "mix-c"]
    assert any("left out 1 deleted run(s)" in n for n in data.notes)


def test_mlflow_run_without_mixture_and_unfinished_runs(tmp_path, mlflow_client):
    exp_id, _ids = write_mlflow(mlflow_client, "mix")
    run_id = mlflow_client.create_run(exp_id, run_name="no-shares").info.run_id
    for step in STEPS:
        mlflow_client.log_metric(run_id, "eval/web_loss", 3.0 + 64 / step, step=step)
    mlflow_client.set_terminated(run_id, status="FAILED")
    with pytest.raises(DataError, match=r"have losses but no mixture: no-shares; log each run"):
        quiet_load(tmp_path / "mlruns")
    mlflow_client.log_param(run_id, "share_web", 0.5)
    mlflow_client.log_param(run_id, "share_code", 0.5)
    with pytest.warns(DataWarning, match=r"did not finish.*no-shares \(FAILED\)"):
        data = load_data(tmp_path / "mlruns")
    assert "no-shares" in data.runs


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_mlflow_sqlite_store_reads_like_the_same_csv(tmp_path):
    """MLflow 3's default store, ``mlflow.db`` (writing it needs SQLAlchemy and Alembic)."""
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    db = tmp_path / "mlflow.db"
    write_mlflow(mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}"), "mix")
    assert load_data(db).fingerprint() == same_csv(tmp_path).fingerprint()


# ------------------------------------------------------------------------------ the command line
def test_bimix_reads_log_folders(tmp_path, tb_writer, mlflow_client):
    """`bimix fit-ls DATA` takes a TensorBoard folder or an mlruns folder as DATA."""
    write_tb(tmp_path / "tb", tb_writer)
    write_mlflow(mlflow_client, "mix")
    for path in (tmp_path / "tb", tmp_path / "mlruns"):
        res = bimix("fit-ls", str(path), "--bootstrap", "0")
        assert res.returncode == 0, res.stderr
        assert "24 observations from 3 runs; 2 evaluation domains" in res.stdout
        assert f"source: {path}" in res.stdout
    res = bimix("fit-ls", str(tmp_path / "mlruns"), "--loss-pattern", "val/{domain}")
    assert res.returncode == 1
    assert res.stderr.startswith("bimix: error: ") and "no metric matches" in res.stderr
