"""Read character vectors out of an R package's lazy-load data base, without R.

An R package that ships data with ``LazyData: true`` stores it as ``data/Rdata.rdx`` (a gzipped,
serialised index: object name -> offset and length) and ``data/Rdata.rdb`` (the objects, each a
4-byte big-endian length followed by a zlib stream of R's XDR serialisation). This module
implements the part of R's serialisation format that plain data use (vectors, pairlists,
attributes, symbols, references, compact ALTREP sequences and wrappers): enough to read, for
example, the six novels of the Debian package ``r-cran-janeaustenr`` (character vectors, one
element per line of text).

Examples
--------
>>> blob = (b"X\\n" + (3).to_bytes(4, "big") + (263424).to_bytes(4, "big")
...         + (197888).to_bytes(4, "big") + (5).to_bytes(4, "big") + b"UTF-8"
...         + (16).to_bytes(4, "big") + (2).to_bytes(4, "big")
...         + (0x40009).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"hi"
...         + (9).to_bytes(4, "big") + (0xFFFFFFFF).to_bytes(4, "big"))
>>> unserialize(blob)
['hi', None]
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
import zlib
from pathlib import Path
from typing import Any

__all__ = ["RDataError", "RObject", "read_lazyload_db", "unserialize"]

# SEXP types (R Internals, "Serialization Formats")
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 9, 10, 13, 14, 15, 16
DOTSXP, VECSXP, EXPRSXP, RAWSXP = 17, 19, 20, 24
ALTREP_SXP, EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP = 238, 242, 241, 253
ATTRLISTSXP, ATTRLANGSXP = 239, 240
REFSXP, NILVALUE_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247

_NA_INTEGER = -(2**31)
_LATIN1_MASK = 1 << 2


class RDataError(ValueError):
    """The bytes are not an R serialisation this reader understands."""


class RObject:
    """An R value that is not a plain vector: its type code, payload and attributes."""

    def __init__(self, sexptype: int, value: Any = None, attributes: dict | None = None) -> None:
        self.sexptype = sexptype
        self.value = value
        self.attributes = attributes or {}

    def __repr__(self) -> str:
        return f"RObject(type={self.sexptype}, attributes={sorted(self.attributes)})"


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.refs: list[Any] = []

    def fail(self, message: str) -> RDataError:
        return RDataError(f"{self.source}: {message} (at byte {self.pos})")

    def int(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self.fail("unexpected end of data")
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def bytes(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"cannot read {n} bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two more ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + (lo & 0xFFFFFFFF)
        return n

    def header(self) -> None:
        if self.bytes(2) != b"X\n":
            raise self.fail(
                "not an XDR R serialisation (expected 'X\\n'; ascii and native "
                "formats are not supported)"
            )
        version = self.int()
        self.int()  # writer's R version
        self.int()  # minimal reader version
        if version == 3:
            self.bytes(self.int())  # native encoding name
        elif version != 2:
            raise self.fail(f"unsupported serialisation version {version}")

    def attributes(self) -> dict:
        pairs = self.item()
        return pairs if isinstance(pairs, dict) else {}

    def item(self) -> Any:  # one branch per SEXP type, as in R's serialize.c
        flags = self.int()
        kind = flags & 0xFF
        levels = flags >> 12
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if kind == NILVALUE_SXP:
            return None
        if kind in (
            EMPTYENV_SXP,
            BASEENV_SXP,
            GLOBALENV_SXP,
            UNBOUNDVALUE_SXP,
            MISSINGARG_SXP,
            BASENAMESPACE_SXP,
        ):
            return RObject(kind)
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == PERSISTSXP:
            name = self.item()
            obj = RObject(kind, name)
            self.refs.append(obj)
            return obj
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind in (PACKAGESXP, NAMESPACESXP):
            obj = RObject(kind, self.item())
            self.refs.append(obj)
            return obj
        if kind == ENVSXP:
            obj = RObject(kind)
            self.refs.append(obj)
            self.int()  # locked
            enclos, frame, hashtab, attrs = self.item(), self.item(), self.item(), self.item()
            obj.value = {"enclos": enclos, "frame": frame, "hashtab": hashtab}
            obj.attributes = attrs if isinstance(attrs, dict) else {}
            return obj
        if kind in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLISTSXP, ATTRLANGSXP):
            return self.pairlist(flags)
        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return None
            raw = self.bytes(n)
            return raw.decode("latin-1" if levels & _LATIN1_MASK else "utf-8", "replace")
        if kind == ALTREP_SXP:
            info, state, attrs = self.item(), self.item(), self.item()
            return self.altrep(info, state, attrs)
        value: Any
        if kind in (LGLSXP, INTSXP):
            n = self.length()
            ints = struct.unpack_from(f">{n}i", self.bytes(4 * n))
            value = [None if v == _NA_INTEGER else v for v in ints]
            if kind == LGLSXP:
                value = [None if v is None else bool(v) for v in value]
        elif kind == REALSXP:
            n = self.length()
            value = list(struct.unpack_from(f">{n}d", self.bytes(8 * n)))
        elif kind == CPLXSXP:
            n = self.length()
            parts = struct.unpack_from(f">{2 * n}d", self.bytes(16 * n))
            value = [complex(parts[2 * i], parts[2 * i + 1]) for i in range(n)]
        elif kind in (STRSXP, VECSXP, EXPRSXP):
            value = [self.item() for _ in range(self.length())]
        elif kind == RAWSXP:
            value = self.bytes(self.length())
        else:
            raise self.fail(f"unsupported R object type {kind}")
        if has_attr:
            attrs = self.attributes()
            if kind == VECSXP and "names" in attrs and "class" not in attrs:
                names = attrs["names"]
                if isinstance(names, list) and len(names) == len(value):
                    return dict(zip(names, value, strict=True))
            if attrs:
                return RObject(kind, value, attrs)
        del has_tag
        return value

    def pairlist(self, flags: int) -> Any:
        """A pairlist as a dict (tag -> value) when every node is tagged, else a list."""
        items: list[tuple[Any, Any]] = []
        kind = flags & 0xFF
        while True:
            has_attr = bool(flags & (1 << 9))
            has_tag = bool(flags & (1 << 10))
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            items.append((tag, self.item()))
            flags = self.int()
            if flags & 0xFF not in (LISTSXP, LANGSXP, ATTRLISTSXP, ATTRLANGSXP):
                self.pos -= 4
                self.item()  # the final CDR (NILVALUE)
                break
        if kind in (LISTSXP, ATTRLISTSXP) and all(isinstance(t, str) for t, _ in items):
            return dict(items)
        return RObject(kind, items)

    def altrep(self, info: Any, state: Any, attrs: Any) -> Any:
        name = info.value[0][1] if isinstance(info, RObject) else info
        if isinstance(info, list):
            name = info[0]
        if name == "compact_intseq" and isinstance(state, list):
            n, start, step = (int(v) for v in state[:3])
            return list(range(start, start + n * step, step))
        if name == "compact_realseq" and isinstance(state, list):
            n, start, step = state[:3]
            return [start + i * step for i in range(int(n))]
        if isinstance(name, str) and name.startswith("wrap_") and isinstance(state, list):
            return state[0]
        if name == "deferred_string":
            arg = state.value[0][1] if isinstance(state, RObject) else state
            return [None if v is None else str(v) for v in arg] if isinstance(arg, list) else arg
        raise self.fail(f"unsupported ALTREP class {name!r}")


def unserialize(data: bytes, source: str = "<bytes>") -> Any:
    """Decode one XDR-serialised R object into Python values.

    Character and numeric vectors become lists (``NA`` -> ``None``); a named list becomes a
    ``dict``; anything with other attributes (a data frame, a factor) an :class:`RObject`.
    """
    reader = _Reader(data, source)
    reader.header()
    return reader.item()


def _decompress(blob: bytes, compressed: int, source: str) -> bytes:
    if len(blob) < 5:
        raise RDataError(f"{source}: an object of the lazy-load data base is truncated")
    size = int.from_bytes(blob[:4], "big")
    if compressed == 0:
        return blob[4:]
    try:
        if compressed == 1:
            out = zlib.decompress(blob[4:])
        else:
            kind, payload = blob[4:5], blob[5:]
            if kind == b"Z":
                out = zlib.decompress(payload)
            elif kind == b"2":
                out = bz2.decompress(payload)
            elif kind == b"X":
                out = lzma.decompress(payload)
            elif kind == b"0":
                out = payload
            else:
                raise RDataError(f"{source}: unknown compression marker {kind!r}")
    except (zlib.error, OSError, lzma.LZMAError) as exc:
        raise RDataError(f"{source}: cannot decompress an object ({exc})") from exc
    if len(out) != size:
        raise RDataError(f"{source}: object size {len(out)} != recorded {size}")
    return out


def read_lazyload_db(prefix: str | os.PathLike[str]) -> dict[str, Any]:
    """Read every object of a lazy-load data base ``prefix.rdx`` / ``prefix.rdb``.

    Parameters
    ----------
    prefix
        Path without suffix, e.g. ``.../janeaustenr/data/Rdata``.

    Returns
    -------
    dict
        Object name -> decoded value (see :func:`unserialize`).
    """
    prefix = Path(prefix)
    rdx, rdb = prefix.with_suffix(".rdx"), prefix.with_suffix(".rdb")
    for path in (rdx, rdb):
        if not path.is_file():
            raise RDataError(f"{path}: no such file (expected an R lazy-load data base)")
    try:
        index = unserialize(gzip.decompress(rdx.read_bytes()), str(rdx))
    except (OSError, EOFError) as exc:
        raise RDataError(f"{rdx}: not a gzipped R index ({exc})") from exc
    if not isinstance(index, dict) or not isinstance(index.get("variables"), dict):
        raise RDataError(f"{rdx}: no 'variables' table in the index")
    compressed = index.get("compressed", [True])
    compressed = int(compressed[0]) if isinstance(compressed, list) else 1
    data = rdb.read_bytes()
    out = {}
    for name, (offset, length) in index["variables"].items():
        blob = data[offset : offset + length]
        out[name] = unserialize(_decompress(blob, compressed, str(rdb)), f"{rdb}[{name}]")
    return out
