"""Entropy proxies: exact values on tiny texts, streaming, order invariance, errors, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bimix_bayes.data.loaders import read_mixtures
from bimix_bayes.data.table import DataError
from bimix_bayes.proxy.entropy import (
    ByteTokenizer,
    DomainCounts,
    domain_entropies,
    entropy_mixtures,
    load_tokenizer,
    plugin_entropy,
    softmax_proportions,
)
from tests.test_cli import run


def h(*p: float) -> float:
    """Entropy in nats of the given probabilities."""
    return -sum(x * math.log(x) for x in p if x > 0)


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_exact_values_on_tiny_texts(tmp_path):
    """Counts known by hand: 'abab' and 'aaab'."""
    table = domain_entropies(
        {"x": write(tmp_path, "x.txt", "abab"), "y": write(tmp_path, "y.txt", "aaab")},
        measures=("se", "je", "ce"),
    )
    # abab: unigrams a,b,a,b; pairs ab, ba, ab; first tokens a, b, a.
    assert table.loc["x", "se"] == pytest.approx(math.log(2))
    assert table.loc["x", "je"] == pytest.approx(h(2 / 3, 1 / 3))
    assert table.loc["x", "ce"] == pytest.approx(0.0, abs=1e-12)  # b always follows a, a b
    # aaab: unigrams 3 a, 1 b; pairs aa, aa, ab; first tokens all a.
    assert table.loc["y", "se"] == pytest.approx(h(0.75, 0.25))
    assert table.loc["y", "je"] == pytest.approx(h(2 / 3, 1 / 3))
    assert table.loc["y", "ce"] == pytest.approx(h(2 / 3, 1 / 3))
    assert table.loc["x", "tokens"] == 4


def test_pairs_never_cross_chunks(tmp_path):
    """With chunks of 2 tokens, 'abab' is 'ab' + 'ab': one kind of pair, JE = 0."""
    table = domain_entropies(
        {"x": write(tmp_path, "x.txt", "abab")}, measures=("je",), chunk_size=2
    )
    assert table.loc["x", "je"] == pytest.approx(0.0, abs=1e-12)


def test_miller_madow_adds_the_bias_term():
    """(m - 1) / 2N is added to the plug-in entropy."""
    assert plugin_entropy(np.array([2, 2]), "miller_madow") == pytest.approx(math.log(2) + 1 / 8)
    with pytest.raises(ValueError, match="correction"):
        plugin_entropy(np.array([1, 1]), "jackknife")


def test_streaming_counts_equal_one_pass():
    """Adding blocks one by one gives the counts of the whole text (chunks span blocks)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, size=5000)
    whole = DomainCounts(256, chunk_size=64)
    whole.add(ids)
    whole.finish()
    parts = DomainCounts(256, chunk_size=64)
    for piece in np.array_split(ids, 7):
        parts.add(piece)
    parts.finish()
    assert np.array_equal(whole.unigram, parts.unigram)
    assert np.array_equal(whole.pairs, parts.pairs)
    assert whole.pairs.sum() == 5000 - math.ceil(5000 / 64)  # one pair lost per chunk


def test_domain_order_does_not_matter(tmp_path):
    """Entropies and proportions belong to the domains, whatever their order."""
    a = write(tmp_path, "a.txt", "the cat sat on the mat " * 50)
    b = write(tmp_path, "b.txt", "x = [i**2 for i in range(10)]\n" * 40)
    one = domain_entropies({"a": a, "b": b}, seed=1)
    two = domain_entropies({"b": b, "a": a}, seed=1)
    pd.testing.assert_frame_equal(one.sort_index(), two.sort_index())
    m1, m2 = entropy_mixtures(one), entropy_mixtures(two)
    pd.testing.assert_frame_equal(m1[["a", "b"]], m2[["a", "b"]])


def test_softmax_proportions():
    """Eq. 13: softmax of the entropies; a high temperature tends to uniform."""
    values = pd.Series({"a": 1.0, "b": 2.0, "c": 3.0})
    p = softmax_proportions(values)
    assert p.sum() == pytest.approx(1.0) and p.is_monotonic_increasing
    assert softmax_proportions(values, 1e6).to_numpy() == pytest.approx(np.full(3, 1 / 3), abs=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        softmax_proportions(values, 0.0)


def test_von_neumann_entropy_extremes(tmp_path):
    """Identical chunks give VNE 0; varied chunks give more, up to log(number of chunks)."""
    same = write(tmp_path, "same.txt", "abcdefgh" * 256)  # 4 identical chunks of 512 bytes
    rng = np.random.default_rng(0)
    varied = write(
        tmp_path,
        "varied.txt",
        "".join("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz "), 512)) for _ in range(4)),
    )
    table = domain_entropies({"same": same, "varied": varied}, measures=("vne",), chunk_size=512)
    assert table.loc["same", "vne"] == pytest.approx(0.0, abs=1e-8)
    assert 0.0 < table.loc["varied", "vne"] <= math.log(4) + 1e-9


def test_sampling_is_seeded(tmp_path):
    """The chunk sample for VNE is drawn with the seed: same seed, same value."""
    rng = np.random.default_rng(3)
    text = " ".join("".join(rng.choice(list("abcdef"), 5)) for _ in range(20000))
    path = write(tmp_path, "t.txt", text)
    a = domain_entropies({"t": path}, measures=("vne",), sample_chunks=10, seed=4)
    b = domain_entropies({"t": path}, measures=("vne",), sample_chunks=10, seed=4)
    assert a.loc["t", "vne"] == b.loc["t", "vne"]


def test_folders_globs_and_jsonl(tmp_path):
    """A folder, a glob and a JSONL file all give the same text stream."""
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder, "1.txt", "hello world. ")
    write(folder, "2.txt", "goodbye world. ")
    jsonl = write(
        tmp_path,
        "d.jsonl",
        "\n".join(json.dumps({"text": t}) for t in ("hello world. ", "goodbye world. ")),
    )
    t = domain_entropies({"f": folder, "g": str(folder / "*.txt"), "j": jsonl}, measures=("se",))
    assert t.loc["f", "se"] == pytest.approx(t.loc["g", "se"])
    assert t.loc["f", "se"] == pytest.approx(t.loc["j", "se"])


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("", "empty.txt", "no text to measure"),
        (b"\x00\x01\x02binary\x00", "blob.bin", "looks binary"),
        ('{"text": "a"}\nnot json\n', "bad.jsonl", "line 2 is not JSON"),
        ('{"body": "a"}\n', "field.jsonl", "line 1 has no 'text' field"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, content, name, message):
    """Empty, binary or malformed input names the file (and line) and the problem."""
    path = write(tmp_path, name, content)
    with pytest.raises(DataError, match=message):
        domain_entropies({"d": path}, measures=("se",))


def test_missing_paths_and_empty_folders(tmp_path):
    """A path that does not exist, or a folder or pattern with no file, is an error."""
    with pytest.raises(DataError, match="no such file"):
        domain_entropies({"d": tmp_path / "none.txt"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no file"):
        domain_entropies({"d": tmp_path / "empty"})
    with pytest.raises(DataError, match="matches no file"):
        domain_entropies({"d": str(tmp_path / "*.nothing")})
    with pytest.raises(ValueError, match="unknown measure"):
        domain_entropies({"d": tmp_path}, measures=("kl",))


def test_bpe_tokenizer_trains_offline(tmp_path):
    """A BPE tokenizer is trained here on a sample of the domains and used for the counts."""
    a = write(tmp_path, "a.txt", "the quick brown fox jumps over the lazy dog. " * 200)
    b = write(tmp_path, "b.txt", "def f(x):\n    return x + 1\n" * 200)
    tok = load_tokenizer("bpe", {"a": a, "b": b}, vocab_size=300)
    assert 256 <= tok.vocab_size <= 300
    table = domain_entropies({"a": a, "b": b}, tokenizer=tok, measures=("se", "ce"))
    byte = domain_entropies({"a": a, "b": b}, tokenizer=ByteTokenizer(), measures=("se",))
    assert (table["se"] > 0).all()
    assert (table["tokens"] < byte["tokens"]).all()  # merges shorten the token stream
    with pytest.raises(DataError, match="tokenizer must be"):
        load_tokenizer(str(tmp_path / "missing.json"))


def test_cli_writes_a_mixture_file(tmp_path):
    """`bimix entropy` prints the table and writes mixtures `bimix predict` can read."""
    a = write(tmp_path, "a.txt", "abcabcabd " * 300)
    b = write(tmp_path, "b.txt", "zzzzzzzzy " * 300)
    out = tmp_path / "mix.csv"
    res = run("entropy", f"a={a}", f"b={b}", "--measure", "ce", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "ce" in res.stdout and "softmax" in res.stdout
    mixtures = read_mixtures(out)
    assert list(mixtures.index) == ["ce"] and mixtures.sum(axis=1).iloc[0] == pytest.approx(1)
    assert run("entropy", "nameless").returncode == 2
    blob = write(tmp_path, "blob.bin", b"\x00" * 100)
    res = run("entropy", f"a={blob}")
    assert res.returncode == 1 and "looks binary" in res.stderr
