"""Entropy proxies: candidate mixtures from the domains' text, with no training (BiMix §4).

For every domain the text is tokenised (bytes by default), concatenated and cut into chunks of
``chunk_size`` tokens, as in the paper. Then, in nats:

* **SE**, Shannon entropy of the tokens: ``-sum p(x) log p(x)``;
* **JE**, joint entropy of consecutive pairs inside a chunk: ``H(X_t, X_t+1)``;
* **CE**, conditional entropy ``H(X_t+1 | X_t) = H(X_t, X_t+1) - H(X_t)`` (the paper's best
  proxy), with ``H(X_t)`` the entropy of the first token of each pair;
* **VNE**, von Neumann entropy ``-sum l log l`` of the eigenvalues ``l`` of the normalised cosine
  kernel ``K = E E^T / n`` of ``n`` sampled chunks (``E``: one unit-norm embedding per chunk).
  The paper embedded with FastText; this package uses an offline embedding that needs no model
  download: hashed character 1-4-gram counts (scikit-learn ``HashingVectorizer``, 2^18
  features) re-weighted by TF-IDF and L2-normalised.

Plug-in entropies are biased low on small samples (by about ``(m - 1) / 2N`` nats for ``m`` seen
symbols and ``N`` samples); ``correction="miller_madow"`` adds that term back.

The proportions are ``softmax(H / temperature)`` over domains (paper Eq. 13), written as a mixture
file that ``bimix predict --mixture`` (and later the decision commands) read.

Text is streamed: files are read in blocks and only counts (and a seeded reservoir sample of
chunks for VNE) are kept, so several GB of text never sit in memory at once.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     _ = (pathlib.Path(d) / "a.txt").write_text("abab")
...     _ = (pathlib.Path(d) / "b.txt").write_text("aaab")
...     table = domain_entropies({"a": pathlib.Path(d) / "a.txt", "b": pathlib.Path(d) / "b.txt"},
...                              measures=("se",))
>>> round(float(table.loc["a", "se"]), 4)   # two symbols, equally often: log 2
0.6931
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bimix_bayes.data.table import DataError

__all__ = [
    "MEASURES",
    "ByteTokenizer",
    "DomainCounts",
    "domain_entropies",
    "entropy_mixtures",
    "iter_texts",
    "load_tokenizer",
    "plugin_entropy",
    "softmax_proportions",
]

MEASURES = ("se", "ce", "je", "vne")
_BLOCK = 1 << 20  # bytes read at once
_BINARY_SNIFF = 8192


# ------------------------------------------------------------------------------ reading text
def _files(path: Path | str) -> list[Path]:
    """The files behind a domain's path: a file, a folder (recursively) or a glob pattern."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not found:
            raise DataError(f"{text}: the pattern matches no file")
        return found
    p = Path(path)
    if p.is_dir():
        found = sorted(q for q in p.rglob("*") if q.is_file())
        if not found:
            raise DataError(f"{p}: the folder holds no file")
        return found
    if p.is_file():
        return [p]
    raise DataError(f"{p}: no such file or folder")


_CONTROL = bytes(set(range(32)) - {9, 10, 12, 13})


def _check_text(path: Path, head: bytes) -> None:
    """Refuse files that look binary: NUL bytes, or many control characters, at the start.

    Text in another encoding than UTF-8 is accepted (bytes are counted as they are).
    """
    if not head:
        return
    control = len(head) - len(head.translate(None, _CONTROL))
    if b"\x00" in head or control > 0.1 * len(head):
        raise DataError(
            f"{path}: looks binary (NUL or control bytes at its start); pass text "
            "files, a folder of them, or JSONL"
        )


def iter_texts(path: Path | str, text_field: str = "text") -> Iterator[bytes]:
    """Stream a domain's text as UTF-8 byte blocks: plain files in blocks, JSONL line by line.

    A ``.jsonl`` file yields the ``text_field`` of each record (a missing field is an error
    naming the line). Binary or unreadable files are errors naming the file.
    """
    for file in _files(path):
        try:
            with open(file, "rb") as fh:
                head = fh.read(_BINARY_SNIFF)
                _check_text(file, head)
                if file.suffix.lower() == ".jsonl":
                    fh.seek(0)
                    yield from _jsonl(file, fh, text_field)  # line by line: streamed
                    continue
                block = head
                while block:
                    yield block
                    block = fh.read(_BLOCK)
        except OSError as exc:
            raise DataError(f"{file}: cannot be read ({exc.strerror or exc})") from exc


def _jsonl(file: Path, stream: Any, text_field: str) -> Iterator[bytes]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}: line {number} is not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or text_field not in record:
            raise DataError(
                f"{file}: line {number} has no {text_field!r} field (choose it with --text-field)"
            )
        yield str(record[text_field]).encode("utf-8")


# ------------------------------------------------------------------------------ tokenisers
class ByteTokenizer:
    """Bytes as tokens (vocabulary 256): nothing to download or train."""

    name = "byte"
    vocab_size = 256

    def encode(self, block: bytes) -> np.ndarray:
        """Token ids of a block of UTF-8 bytes."""
        return np.frombuffer(block, dtype=np.uint8).astype(np.int64)


@dataclass
class HFTokenizer:
    """A ``tokenizers`` tokenizer (a trained BPE or a tokenizer file)."""

    tokenizer: Any
    name: str

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def encode(self, block: bytes) -> np.ndarray:
        """Token ids of a block of UTF-8 text."""
        text = block.decode("utf-8", errors="replace")
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)


def load_tokenizer(
    spec: str,
    sources: Mapping[str, Any] | None = None,
    *,
    vocab_size: int = 4096,
    sample_bytes: int = 2_000_000,
    seed: int = 0,
) -> ByteTokenizer | HFTokenizer:
    """``"byte"``, ``"bpe"`` (trained here on a seeded sample of every domain) or a file path.

    BPE uses the ``tokenizers`` library's byte-level BPE, trained on up to ``sample_bytes`` of
    each domain (blocks picked with ``seed``), so nothing is downloaded.
    """
    if spec == "byte":
        return ByteTokenizer()
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError as exc:  # pragma: no cover - tokenizers is a dependency
        raise DataError("the 'tokenizers' package is needed for BPE tokenisers") from exc
    if spec == "bpe":
        if not sources:
            raise ValueError("training a BPE tokenizer needs the domains' sources")
        rng = np.random.default_rng(seed)
        sample: list[str] = []
        for path in sources.values():
            taken = 0
            for block in iter_texts(path):
                if rng.random() < 0.5 or taken == 0:
                    sample.append(block.decode("utf-8", errors="replace"))
                    taken += len(block)
                if taken >= sample_bytes:
                    break
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(sample, trainer=trainer)
        return HFTokenizer(tok, f"bpe (trained here, vocabulary {tok.get_vocab_size()})")
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"{spec}: tokenizer must be 'byte', 'bpe' or a tokenizer file")
    try:
        return HFTokenizer(Tokenizer.from_file(str(path)), f"file {path.name}")
    except Exception as exc:
        raise DataError(f"{path}: not a tokenizers file ({exc})") from exc


# ------------------------------------------------------------------------------ counting
@dataclass
class DomainCounts:
    """Streaming counts of one domain: unigrams, within-chunk pairs, a chunk sample for VNE."""

    vocab_size: int
    chunk_size: int = 1024
    sample_chunks: int = 500
    seed: int = 0
    tokens: int = 0
    unigram: dict[int, int] | np.ndarray = field(init=False)
    pairs: dict[int, int] | np.ndarray = field(init=False)
    chunks_seen: int = 0
    sample: list[np.ndarray] = field(default_factory=list)
    _carry: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        dense = self.vocab_size <= 256  # 65,536 pair cells; larger vocabularies count sparsely
        self.unigram = np.zeros(self.vocab_size, np.int64)
        self.pairs = np.zeros(self.vocab_size**2, np.int64) if dense else {}
        self._carry = np.zeros(0, np.int64)
        self._rng = np.random.default_rng(self.seed)

    def add(self, ids: np.ndarray) -> None:
        """Add a block of token ids (chunks continue across blocks)."""
        ids = np.concatenate([self._carry, ids])
        n_full = len(ids) // self.chunk_size * self.chunk_size
        self._count(ids[:n_full])
        self._carry = ids[n_full:]

    def finish(self) -> None:
        """Count the last, partial chunk."""
        self._count(self._carry)
        self._carry = np.zeros(0, np.int64)

    def _count(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        self.tokens += ids.size
        self.unigram += np.bincount(ids, minlength=self.vocab_size)
        for start in range(0, ids.size, self.chunk_size):
            self._sample(ids[start : start + self.chunk_size])
        # Pairs inside each chunk only (a chunk boundary is not a real succession); ids start
        # at a chunk boundary, so pair i crosses one when (i + 1) is a multiple of chunk_size.
        codes = ids[:-1] * self.vocab_size + ids[1:]
        codes = codes[(np.arange(1, ids.size) % self.chunk_size) != 0]
        if isinstance(self.pairs, np.ndarray):
            self.pairs += np.bincount(codes, minlength=self.pairs.size)
        else:
            keys, counts = np.unique(codes, return_counts=True)
            for k, c in zip(keys.tolist(), counts.tolist(), strict=True):
                self.pairs[k] = self.pairs.get(k, 0) + c

    def _sample(self, chunk: np.ndarray) -> None:
        """Reservoir sampling of chunks (seeded): a uniform sample of fixed size."""
        self.chunks_seen += 1
        if len(self.sample) < self.sample_chunks:
            self.sample.append(chunk.copy())
        else:
            j = int(self._rng.integers(0, self.chunks_seen))
            if j < self.sample_chunks:
                self.sample[j] = chunk.copy()

    def pair_counts(self) -> np.ndarray:
        """Counts of every seen pair (zeros dropped)."""
        if isinstance(self.pairs, np.ndarray):
            return self.pairs[self.pairs > 0]
        return np.fromiter(self.pairs.values(), dtype=np.int64)

    def first_counts(self) -> np.ndarray:
        """Counts of the first token of each pair (the marginal of X_t)."""
        if isinstance(self.pairs, np.ndarray):
            marginal = self.pairs.reshape(self.vocab_size, self.vocab_size).sum(axis=1)
        else:
            marginal = np.zeros(self.vocab_size, np.int64)
            for k, c in self.pairs.items():
                marginal[k // self.vocab_size] += c
        return marginal[marginal > 0]


def plugin_entropy(counts: np.ndarray, correction: str = "none") -> float:
    """Entropy in nats of a histogram; ``correction="miller_madow"`` adds ``(m - 1) / 2N``.

    Examples
    --------
    >>> round(plugin_entropy(np.array([1, 1, 1, 1])), 6) == round(float(np.log(4)), 6)
    True
    >>> round(plugin_entropy(np.array([2, 2]), "miller_madow") - float(np.log(2)), 6)
    0.125
    """
    counts = np.asarray(counts, dtype=float)
    counts = counts[counts > 0]
    total = counts.sum()
    if total <= 0:
        return float("nan")
    p = counts / total
    h = float(-(p * np.log(p)).sum())
    if correction == "miller_madow":
        h += float((counts.size - 1) / (2 * total))
    elif correction != "none":
        raise ValueError(f"correction must be 'none' or 'miller_madow', got {correction!r}")
    return h


def von_neumann_entropy(chunks: Sequence[np.ndarray], tokenizer: Any) -> float:
    """Von Neumann entropy of the normalised cosine kernel of the chunks' embeddings.

    Embedding: hashed character 1-4-grams of the chunk's text, TF-IDF, L2 norm (offline).
    """
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    if len(chunks) < 2:
        return float("nan")
    texts = [_decode(chunk, tokenizer) for chunk in chunks]
    hashed = HashingVectorizer(
        analyzer="char", ngram_range=(1, 4), n_features=2**18, alternate_sign=False, norm=None
    ).transform(texts)
    emb = TfidfTransformer(norm="l2").fit_transform(hashed)
    gram = (emb @ emb.T).toarray() / len(texts)  # trace 1: rows have unit norm
    eig = np.linalg.eigvalsh(gram)
    eig = eig[eig > 1e-12]
    return float(-(eig * np.log(eig)).sum())


def _decode(chunk: np.ndarray, tokenizer: Any) -> str:
    if isinstance(tokenizer, ByteTokenizer):
        return chunk.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
    return tokenizer.tokenizer.decode(chunk.tolist())


# ------------------------------------------------------------------------------ entry points
def _progress(domain: str, done: int, total: int, enabled: bool) -> None:
    """A one-line progress bar on stderr (only when asked: by default in a terminal)."""
    if enabled:
        frac = min(1.0, done / total) if total else 1.0
        bar = "#" * int(30 * frac)
        print(
            f"\rentropy {domain}: [{bar:<30}] {100 * frac:5.1f}% of {total / 1e6:,.2f} MB",
            end="",
            file=sys.stderr,
        )


def count_domain(
    path: Any,
    tokenizer: Any,
    *,
    chunk_size: int = 1024,
    sample_chunks: int = 500,
    seed: int = 0,
    text_field: str = "text",
    progress: bool = False,
    name: str = "",
) -> DomainCounts:
    """Stream one domain's text through the tokenizer into :class:`DomainCounts`."""
    counts = DomainCounts(tokenizer.vocab_size, chunk_size, sample_chunks, seed)
    total = sum(f.stat().st_size for f in _files(path)) if progress else 0
    read = 0
    for block in iter_texts(path, text_field):
        counts.add(tokenizer.encode(block))
        read += len(block)
        _progress(name, read, total, progress)
    counts.finish()
    if progress:
        print(file=sys.stderr)
    if counts.tokens < 2:
        raise DataError(f"{path}: domain {name!r} has no text to measure (empty input)")
    return counts


def _check_vne_size(counts: DomainCounts, path: Any, name: str) -> None:
    """The von Neumann entropy compares chunks: a domain needs at least two.

    Raises
    ------
    DataError
        Naming the domain, its size and the least it needs.

    Examples
    --------
    >>> counts = DomainCounts(256, chunk_size=1024, tokens=700, chunks_seen=1)
    >>> _check_vne_size(counts, "web.txt", "web")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bimix_bayes.data.table.DataError: web.txt: domain 'web' has 700 tokens, 1 chunk of 1024; ...
    """
    if counts.chunks_seen >= 2:
        return
    size, tokens = counts.chunk_size, counts.tokens
    smaller = f"lower --chunk-size (below {tokens}), " if tokens > 2 else ""
    raise DataError(
        f"{path}: domain {name!r} has {tokens} tokens, {counts.chunks_seen} chunk of {size}; the "
        f"von Neumann entropy (vne) compares chunks and needs at least 2 (more than {size} "
        f"tokens). Add text, {smaller}or choose another measure (--measure ce)"
    )


def domain_entropies(
    sources: Mapping[str, Any],
    *,
    measures: Iterable[str] = MEASURES,
    tokenizer: str | Any = "byte",
    chunk_size: int = 1024,
    sample_chunks: int = 500,
    correction: str = "none",
    seed: int = 0,
    text_field: str = "text",
    progress: bool | None = None,
) -> pd.DataFrame:
    """Entropy measures (nats) of each domain's text: one row per domain, one column per measure.

    Parameters
    ----------
    sources
        Domain name -> a text file, a folder of files, a glob pattern or a ``.jsonl`` file.
    measures
        Any of ``"se"``, ``"ce"``, ``"je"``, ``"vne"``.
    tokenizer
        ``"byte"`` (default), ``"bpe"`` (trained here on a sample) or a tokenizer file path.
    chunk_size
        Tokens per chunk (pairs never cross a chunk boundary; VNE embeds chunks).
    sample_chunks
        Chunks kept per domain (seeded reservoir sample) for the von Neumann entropy.
    correction
        ``"none"`` or ``"miller_madow"`` for SE, JE and CE.
    """
    measures = tuple(dict.fromkeys(m.lower() for m in measures))
    unknown = [m for m in measures if m not in MEASURES]
    if unknown:
        raise ValueError(f"unknown measure(s) {unknown}; choose from {list(MEASURES)}")
    if not sources:
        raise ValueError("no domains given")
    if chunk_size < 2:
        raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
    tok = load_tokenizer(tokenizer, sources, seed=seed) if isinstance(tokenizer, str) else tokenizer
    progress = sys.stderr.isatty() if progress is None else progress
    rows = {}
    for name, path in sources.items():
        c = count_domain(
            path,
            tok,
            chunk_size=chunk_size,
            sample_chunks=sample_chunks,
            seed=seed,
            text_field=text_field,
            progress=progress,
            name=name,
        )
        row: dict[str, float] = {"tokens": float(c.tokens)}
        je = plugin_entropy(c.pair_counts(), correction)
        if "se" in measures:
            row["se"] = plugin_entropy(c.unigram, correction)
        if "je" in measures:
            row["je"] = je
        if "ce" in measures:
            row["ce"] = je - plugin_entropy(c.first_counts(), correction)
        if "vne" in measures:
            _check_vne_size(c, path, name)
            row["vne"] = von_neumann_entropy(c.sample, tok)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "domain"
    table.attrs["tokenizer"] = getattr(tok, "name", "custom")
    return table


def softmax_proportions(values: pd.Series, temperature: float = 1.0) -> pd.Series:
    """``softmax(values / temperature)`` (paper Eq. 13): proportions summing to 1.

    Examples
    --------
    >>> softmax_proportions(pd.Series({"a": 0.0, "b": float(np.log(3))})).round(2).tolist()
    [0.25, 0.75]
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = values.astype(float) / temperature
    z = np.exp(z - z.max())
    return z / z.sum()


def entropy_mixtures(table: pd.DataFrame, temperature: float = 1.0) -> pd.DataFrame:
    """One candidate mixture per measure: rows named by the measure, columns the domains.

    The layout is the mixture-file layout read by ``bimix predict --mixture``.
    """
    rows = {m: softmax_proportions(table[m], temperature) for m in MEASURES if m in table}
    out = pd.DataFrame(rows).T
    out.index.name = "mixture"
    return out


def write_mixtures(mixtures: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write candidate mixtures as CSV (atomic): ``mixture,<domain>,...``."""
    from bimix_bayes.data.files import atomic_write_with

    return atomic_write_with(path, lambda p: mixtures.to_csv(p, float_format="%.10g"))
