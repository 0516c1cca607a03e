"""The registry sources of the proxy corpora: which package gives each domain, and how its text
is extracted.

:data:`SOURCES` is the declarative table (one :class:`Source` per domain); each source names its
registry (``"debian"`` or ``"npm"``), package, licence and extractor. An extractor takes the
unpacked package tree and yields documents ``(name, text)`` (a source file, a licence, a synset,
a chapter, a manual node); cleaning, splitting and writing are
:mod:`bimix_bayes.proxy.corpora`'s.

Examples
--------
>>> [s.domain for s in SOURCES]
['python', 'licenses', 'wordnet', 'austen', 'pydoc']
>>> import pathlib, tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     folder = pathlib.Path(d) / "package/licenses"
...     folder.mkdir(parents=True)
...     _ = (folder / "MIT.json").write_text('{"name": "MIT License", "licenseText": "Permission"}')
...     list(extract_spdx(pathlib.Path(d)))
[('MIT', 'MIT License\\n\\nPermission')]
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bimix_bayes.data.table import DataError

__all__ = [
    "AUSTEN_BOOKS",
    "EXCLUDED_STDLIB",
    "SOURCES",
    "CorpusError",
    "Document",
    "Source",
    "extract_austen",
    "extract_python_info",
    "extract_python_stdlib",
    "extract_spdx",
    "extract_wordnet",
]

#: A document: its name (unique within a domain) and its text.
Document = tuple[str, str]


class CorpusError(DataError):
    """A corpus could not be fetched, extracted or read (the message says which and why)."""


def _find_one(root: Path, pattern: str, what: str) -> Path:
    found = sorted(root.glob(pattern))
    if not found:
        raise CorpusError(f"{root}: no {what} (looked for {pattern!r}); is this the right package?")
    return found[0]


EXCLUDED_STDLIB = ("pydoc_data", "site-packages", "dist-packages", "test")


def extract_python_stdlib(root: Path) -> Iterator[Document]:
    """Every ``*.py`` of ``usr/lib/python3.*`` (one document per file), without the generated
    ``pydoc_data`` (a copy of the manual), ``site-packages``/``dist-packages`` and links.
    """
    lib = _find_one(root, "usr/lib/python3.*", "Python library folder")
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if path.is_symlink() or rel.parts[0] in EXCLUDED_STDLIB:
            continue
        yield str(rel), path.read_text(encoding="utf-8", errors="replace")


def extract_spdx(root: Path) -> Iterator[Document]:
    """The ``licenseText`` of every ``licenses/*.json`` of npm ``spdx-license-list`` (one
    document per licence, headed by its name).
    """
    folder = _find_one(root, "package/licenses", "licenses/ folder")
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorpusError(f"{path}: not a JSON licence entry ({exc})") from exc
        text = entry.get("licenseText", "") if isinstance(entry, dict) else ""
        if text.strip():
            yield path.stem, f"{entry.get('name', path.stem)}\n\n{text}"


_WN_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def extract_wordnet(root: Path) -> Iterator[Document]:
    """One document per WordNet synset: ``word, word (pos): gloss`` from ``data.{noun,...}``.

    The licence header of each file (lines starting with two spaces) is skipped.
    """
    folder = _find_one(root, "usr/share/wordnet", "WordNet folder")
    for part in ("noun", "verb", "adj", "adv"):
        path = folder / f"data.{part}"
        if not path.is_file():
            raise CorpusError(f"{path}: missing; is this the wordnet-base package?")
        with path.open(encoding="utf-8", errors="replace") as stream:
            for lineno, line in enumerate(stream, 1):
                if line.startswith("  ") or not line.strip():
                    continue
                head, sep, gloss = line.partition(" | ")
                fields = head.split()
                try:
                    n_words = int(fields[3], 16)
                    words = [w.replace("_", " ") for w in fields[4 : 4 + 2 * n_words : 2]]
                    pos = _WN_POS[fields[2]]
                except (IndexError, ValueError, KeyError) as exc:
                    raise CorpusError(
                        f"{path}:{lineno}: not a WordNet data line ({exc}): {line[:80]!r}"
                    ) from exc
                words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]  # adjective markers
                text = f"{', '.join(words)} ({pos})"
                if sep:
                    text += f": {gloss.strip()}"
                yield f"{part}/{fields[0]}", text


_CHAPTER = re.compile(r"^\s*chapter\s+[0-9IVXLC]+\b", re.IGNORECASE)
AUSTEN_BOOKS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)


def extract_austen(root: Path) -> Iterator[Document]:
    """Jane Austen's six novels, read from the R data base of ``r-cran-janeaustenr`` without R;
    one document per chapter (the front matter before chapter 1 is a chapter of its own).
    """
    from bimix_bayes.proxy.rdata import RDataError, read_lazyload_db

    rdb = _find_one(root, "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb", "R data base")
    try:
        objects = read_lazyload_db(rdb.with_suffix(""))
    except RDataError as exc:
        raise CorpusError(str(exc)) from exc
    books = [b for b in AUSTEN_BOOKS if b in objects] or sorted(objects)
    for book in books:
        lines = objects[book]
        if not isinstance(lines, list) or not all(isinstance(x, str | None) for x in lines):
            raise CorpusError(f"{rdb}: object {book!r} is not a character vector")
        chapter, buffer = 0, []
        for line in lines:
            line = line or ""
            if _CHAPTER.match(line) and buffer:
                yield f"{book}/{chapter:03d}", "\n".join(buffer)
                chapter, buffer = chapter + 1, []
            buffer.append(line)
        if buffer:
            yield f"{book}/{chapter:03d}", "\n".join(buffer)


_INFO_NODE = re.compile(r"^File: [^,]+,\s+Node: ([^,\n]+)")
_MENU_LINE = re.compile(r"^\* .*::.*$|^\* Menu:\s*$", re.MULTILINE)
# cross references: "*note ValueError: 1c8." (an anchor id) and "*note Glossary::"
_XREF = re.compile(r"\*[Nn]ote\s+([^:*]+?)(?::\s+[0-9a-f]+(?=[.,])(,?)\.?|::)")


def extract_python_info(root: Path) -> Iterator[Document]:
    """One document per node of the Python manual's GNU info file (``usr/share/info``),
    without the node headers, the menus, the index nodes and the tag table.
    """
    path = _find_one(root, "usr/share/info/python3*.info*", "info file")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    for chunk in raw.decode("utf-8", errors="replace").split("\x1f"):
        chunk = chunk.lstrip("\n")
        m = _INFO_NODE.match(chunk)
        if not m:
            continue  # the preamble, the tag table, local variables
        name = m.group(1).strip()
        if name.endswith("Index"):
            continue
        body = _MENU_LINE.sub("", chunk[m.end() :].partition("\n")[2])
        yield name, _XREF.sub(r"\1\2", body)


# ------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class Source:
    """One domain: where its package comes from, its licence, and how to read its text.

    Examples
    --------
    >>> SOURCES[0].domain, SOURCES[0].registry, SOURCES[0].package
    ('python', 'debian', 'libpython3.11-stdlib')
    """

    domain: str
    registry: str  # "debian" or "npm"
    package: str
    license: str
    description: str
    extract: Callable[[Path], Iterable[Document]]


SOURCES: tuple[Source, ...] = (
    Source(
        "python",
        "debian",
        "libpython3.11-stdlib",
        "PSF-2.0",
        "Python 3.11 standard-library source code (*.py), one document per file",
        extract_python_stdlib,
    ),
    Source(
        "licenses",
        "npm",
        "spdx-license-list",
        "CC0-1.0 (the list); each text is the licence's own published text",
        "full texts of the SPDX licences, one document per licence",
        extract_spdx,
    ),
    Source(
        "wordnet",
        "debian",
        "wordnet-base",
        "WordNet-3.0 (permissive, Princeton University)",
        "WordNet 3.0 synsets: synonyms, part of speech and gloss, one document per synset",
        extract_wordnet,
    ),
    Source(
        "austen",
        "debian",
        "r-cran-janeaustenr",
        "MIT (package); the novels are in the public domain",
        "Jane Austen's six completed novels, one document per chapter",
        extract_austen,
    ),
    Source(
        "pydoc",
        "debian",
        "python3.11-doc",
        "PSF-2.0",
        "the Python 3.11 manual (GNU info file), one document per node",
        extract_python_info,
    ),
)
