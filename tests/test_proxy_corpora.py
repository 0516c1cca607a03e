"""The corpus builder of the proxy study on small local fixtures (no network, no torch)."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bimix_bayes.cli.proxy import add_commands
from bimix_bayes.proxy import corpora as cp
from bimix_bayes.proxy.rdata import RDataError, read_lazyload_db, unserialize


# ------------------------------------------------------------------------------ R fixtures
def _i(v: int) -> bytes:
    return struct.pack(">i", v)


def _char(s: str | None, latin1: bool = False) -> bytes:
    if s is None:
        return _i(9) + _i(-1)
    raw = s.encode("latin-1" if latin1 else "utf-8")
    levels = 1 << 2 if latin1 else (1 << 6 if s.isascii() else 1 << 3)
    return _i((levels << 12) | 9) + _i(len(raw)) + raw


def _strs(xs: list[str | None]) -> bytes:
    return _i(16) + _i(len(xs)) + b"".join(_char(x) for x in xs)


def _ints(xs: list[int]) -> bytes:
    return _i(13) + _i(len(xs)) + b"".join(_i(x) for x in xs)


def _named_list(d: dict[str, bytes]) -> bytes:
    names_attr = _i(2 | (1 << 10)) + _i(1) + _char("names") + _strs(list(d)) + _i(254)
    return _i(19 | (1 << 9)) + _i(len(d)) + b"".join(d.values()) + names_attr


def _serial(body: bytes) -> bytes:
    return b"X\n" + _i(3) + _i(0x40201) + _i(0x30500) + _i(5) + b"UTF-8" + body


def write_r_data(folder: Path, objects: dict[str, list[str | None]]) -> Path:
    """A lazy-load data base ``folder/Rdata.{rdx,rdb}`` holding character vectors."""
    folder.mkdir(parents=True, exist_ok=True)
    rdb, index = b"", {}
    for name, lines in objects.items():
        raw = _serial(_strs(lines))
        blob = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = _ints([len(rdb), len(blob)])
        rdb += blob
    rdx = _named_list(
        {
            "variables": _named_list(index),
            "references": _named_list({}),
            "compressed": _i(10) + _i(1) + _i(1),
        }
    )
    (folder / "Rdata.rdb").write_bytes(rdb)
    (folder / "Rdata.rdx").write_bytes(gzip.compress(_serial(rdx)))
    return folder / "Rdata"


# ------------------------------------------------------------------------------ package trees
def make_tree(domain: str, root: Path) -> None:
    """A miniature of each package, laid out like the real one."""
    if domain == "python":
        lib = root / "usr/lib/python3.11"
        (lib / "json").mkdir(parents=True)
        (lib / "pydoc_data").mkdir()
        for i in range(6):
            (lib / f"mod{i}.py").write_text(
                f'"""Module {i}."""\r\n\ndef f{i}(x):  \n    return x\n'
            )
        (lib / "json/__init__.py").write_text("import sys\n\x00\n")
        (lib / "pydoc_data/topics.py").write_text("topics = {'a': 'manual text'}\n")
        os.symlink(lib / "missing.py", lib / "_sysconfigdata.py")  # a dangling link
    elif domain == "licenses":
        folder = root / "package/licenses"
        folder.mkdir(parents=True)
        for name in ("MIT", "ISC", "0BSD", "Apache-2.0"):
            entry = {"name": f"{name} License", "licenseText": f"Permission {name}.\n\nTerms."}
            (folder / f"{name}.json").write_text(json.dumps(entry))
        (folder / "Empty.json").write_text(json.dumps({"name": "Empty", "licenseText": ""}))
    elif domain == "wordnet":
        folder = root / "usr/share/wordnet"
        folder.mkdir(parents=True)
        header = "  1 This software and database is being provided to you\n"
        lines = {
            "noun": "00001740 03 n 02 entity 0 physical_entity 0 000 | that which exists\n",
            "verb": "00001740 29 v 01 breathe 0 000 | draw air into the lungs  \n",
            "adj": "00001740 00 a 01 able(p) 0 000 | having the means to do something\n",
            "adv": "00001740 02 r 01 barely 0 000 | only just\n",
        }
        for part, line in lines.items():
            (folder / f"data.{part}").write_text(header + line + line.replace("01740", "01741"))
    elif domain == "austen":
        write_r_data(
            root / "usr/lib/R/site-library/janeaustenr/data",
            {
                "emma": ["EMMA", "", "CHAPTER I", "Emma Woodhouse,", None, "CHAPTER II", "Mr."],
                "persuasion": ["Persuasion", "Chapter 1", "Sir Walter Elliot"],
            },
        )
    elif domain == "pydoc":
        folder = root / "usr/share/info"
        folder.mkdir(parents=True)
        text = (
            "This is python3.11.info\n\n"
            "\x1f\nFile: python3.11.info,  Node: Top,  Next: Intro,  Up: (dir)\n\nPython\n"
            "* Menu:\n\n* Intro::\n\n"
            "\x1f\nFile: python3.11.info,  Node: Intro,  Prev: Top\n\nSee *note ValueError: "
            "1c8. and *note Glossary:: for *note len(): 2f, details.\n"
            "\x1f\nFile: python3.11.info,  Node: Index,  Prev: Intro\n\n* abs: 12.\n"
            "\x1f\nTag Table:\nNode: Top\x7f123\n\x1f\nEnd Tag Table\n"
        )
        (folder / "python3.11.info.gz").write_bytes(gzip.compress(text.encode()))


def fake_fetch(source: cp.Source, work: Path) -> cp.Fetched:
    root = work / source.domain / "tree"
    make_tree(source.domain, root)
    archive = work / source.domain / f"{source.package}_1.0.deb"
    archive.write_bytes(b"fake archive " + source.domain.encode())
    return cp.Fetched(root, "1.0-1", archive)


# ------------------------------------------------------------------------------ tests
def test_clean_text() -> None:
    assert cp.clean_text("\ufeffa \t\r\nb\x00\x1f\n\n\n\nc") == "a\nb\n\nc\n"
    assert cp.clean_text("\n \n") == ""
    assert cp.clean_text("e\u0301") == "\u00e9\n"  # NFC


def test_rdata_reads_character_vectors(tmp_path: Path) -> None:
    prefix = write_r_data(tmp_path, {"a": ["x", None, "caf\u00e9"], "b": []})
    assert read_lazyload_db(prefix) == {"a": ["x", None, "caf\u00e9"], "b": []}
    latin = _serial(_i(16) + _i(1) + _char("caf\u00e9", latin1=True))
    assert unserialize(latin) == ["caf\u00e9"]
    with pytest.raises(RDataError, match="not an XDR"):
        unserialize(b"A\n")
    with pytest.raises(RDataError, match="no such file"):
        read_lazyload_db(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("python", {"mod0.py", "json/__init__.py"}),
        ("licenses", {"MIT", "Apache-2.0"}),
        ("wordnet", {"noun/00001740", "adj/00001741"}),
        ("austen", {"emma/000", "emma/002", "persuasion/001"}),
        ("pydoc", {"Top", "Intro"}),
    ],
)
def test_extractors(tmp_path: Path, domain: str, expected: set[str]) -> None:
    make_tree(domain, tmp_path)
    source = next(s for s in cp.SOURCES if s.domain == domain)
    docs = dict(source.extract(tmp_path))
    assert expected <= set(docs)
    if domain == "python":
        assert "pydoc_data/topics.py" not in docs and "_sysconfigdata.py" not in docs
    if domain == "licenses":
        assert "Empty" not in docs and docs["MIT"].startswith("MIT License\n\nPermission MIT.")
    if domain == "wordnet":
        assert docs["noun/00001740"] == "entity, physical entity (noun): that which exists"
        assert docs["adj/00001740"].startswith("able (adjective): having")
    if domain == "austen":
        assert docs["emma/001"] == "CHAPTER I\nEmma Woodhouse,\n"
        assert docs["persuasion/001"].startswith("Chapter 1")
    if domain == "pydoc":
        assert "Index" not in docs and "* Menu" not in docs["Top"]
        assert "See ValueError and Glossary for len(), details." in docs["Intro"]


def test_extractor_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(cp.CorpusError, match="WordNet folder"):
        list(cp.extract_wordnet(tmp_path))
    make_tree("wordnet", tmp_path)
    (tmp_path / "usr/share/wordnet/data.adv").write_text("garbage line\n")
    with pytest.raises(cp.CorpusError, match=r"data\.adv:1: not a WordNet data line"):
        list(cp.extract_wordnet(tmp_path))


def test_split_is_deterministic_and_sized() -> None:
    docs = [(f"d{i}", "x" * (10 + i)) for i in range(50)]
    train, valid = cp.split_documents(docs, "dom", 0.1)
    assert (train, valid) == cp.split_documents(docs, "dom", 0.1)
    assert {n for n, _ in train} | {n for n, _ in valid} == {n for n, _ in docs}
    assert not {n for n, _ in train} & {n for n, _ in valid}
    share = sum(len(t) for _, t in valid) / sum(len(t) for _, t in docs)
    assert 0.1 <= share < 0.15
    assert [n for n, _ in train] == sorted((n for n, _ in train), key=lambda n: int(n[1:]))
    # another domain name gives another split; a cap keeps a hash-ordered subset
    assert cp.split_documents(docs, "other", 0.1)[1] != valid
    t2, v2 = cp.split_documents(docs, "dom", 0.1, max_bytes=300)
    assert sum(len(t) for _, t in t2 + v2) <= 300
    with pytest.raises(ValueError, match="at least 2"):
        cp.split_documents(docs[:1], "dom", 0.1)
    with pytest.raises(ValueError, match="valid_fraction"):
        cp.split_documents(docs, "dom", 1.5)


def test_build_corpora_writes_files_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "corpora"
    logs: list[str] = []
    manifest = cp.build_corpora(
        out,
        min_bytes=10,
        valid_fraction=0.2,
        fetch=fake_fetch,
        workdir=tmp_path / "dl",
        log=logs.append,
    )
    assert list(manifest["domains"]) == ["python", "licenses", "wordnet", "austen", "pydoc"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert cp.read_manifest(out) == manifest
    for domain, entry in manifest["domains"].items():
        assert entry["version"] == "1.0-1" and entry["license"]
        assert len(entry["archive_sha256"]) == 64
        for split in ("train", "valid"):
            data = (out / domain / f"{split}.txt").read_bytes()
            assert len(data) == entry["bytes"][split] > 0
            assert entry["sha256"][split] == cp._sha256_file(out / domain / f"{split}.txt")
            text = data.decode("utf-8")
            assert "\r" not in text and "\x00" not in text and "\x1f" not in text
    assert any("python" in line and "MB" in line for line in logs)
    # deterministic: a second build is byte-identical
    again = cp.build_corpora(
        tmp_path / "again", min_bytes=10, valid_fraction=0.2, fetch=fake_fetch, log=lambda m: None
    )
    assert again == manifest


def test_build_corpora_errors(tmp_path: Path) -> None:
    with pytest.raises(cp.CorpusError, match="fewer than the required"):
        cp.build_corpora(tmp_path / "o", domains=["licenses"], fetch=fake_fetch, log=print)
    with pytest.raises(cp.CorpusError, match="unknown domain"):
        cp.build_corpora(tmp_path / "o", domains=["klingon"], fetch=fake_fetch)
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_read_manifest_refuses_missing_or_changed(tmp_path: Path) -> None:
    with pytest.raises(cp.CorpusError, match="bimix corpora --out"):
        cp.read_manifest(tmp_path)
    cp.build_corpora(
        tmp_path, domains=["licenses"], min_bytes=0, fetch=fake_fetch, log=lambda m: None
    )
    with (tmp_path / "licenses/train.txt").open("a") as f:
        f.write("more")
    with pytest.raises(cp.CorpusError, match="changed after it was built"):
        cp.read_manifest(tmp_path)


def test_fetch_reports_missing_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cp.shutil, "which", lambda name: None)
    with pytest.raises(cp.CorpusError, match="'apt-get' is not installed"):
        cp.fetch_package(cp.SOURCES[0], tmp_path)
    bad = cp.Source("x", "pypi", "x", "MIT", "x", cp.extract_spdx)
    with pytest.raises(cp.CorpusError, match="unknown registry"):
        cp.fetch_package(bad, tmp_path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bimix")
    add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_cli_corpora(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    args = _parser().parse_args(["corpora", "--out", str(tmp_path), "--domains", "klingon"])
    assert args.func(args) == 2
    assert "unknown domain" in capsys.readouterr().err
    monkeypatch.setattr(cp, "fetch_package", fake_fetch)
    args = _parser().parse_args(
        ["corpora", "--out", str(tmp_path), "--domains", "licenses,wordnet", "--min-mb", "0"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "licenses" in out and "wordnet" in out and "manifest.json" in out
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["corpora", "--out", "x", "--valid-fraction", "2"])
    assert exc.value.code == 2


def test_core_modules_do_not_import_torch() -> None:
    code = (
        "import sys, bimix_bayes.cli.proxy, bimix_bayes.proxy.study, bimix_bayes.proxy.trainer; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_missing_torch_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from bimix_bayes.proxy.tinygpt import import_torch

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"pip install -e '\.\[proxy\]'"):
        import_torch()
    cp.build_corpora(tmp_path, domains=["licenses"], min_bytes=0, fetch=fake_fetch,
                     log=lambda m: None)  # fmt: skip
    args = _parser().parse_args(
        ["train", "--corpora", str(tmp_path), "--mixture", "licenses=1", "--out", str(tmp_path)]
    )
    assert args.func(args) == 1
    assert "pip install -e '.[proxy]'" in capsys.readouterr().err
