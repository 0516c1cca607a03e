"""Random draws keyed by what they are for, so a forecast does not depend on its neighbours.

A forecast draws each target's fresh run effects and each checkpoint's noise. Drawn from one
generator, the values a mixture gets depend on which targets come before it (``bimix predict``
of a mixture alone and of the same mixture in a file of candidates differed in the fourth
digit). :class:`KeyedStreams` gives every index along the keyed axes its own generator, seeded
from the forecast's seed, a stream number and a key naming the target (and step): the same
target at the same step gets the same draws whatever else is asked, and two different targets
independent ones.

Examples
--------
>>> keys = target_keys(["new mixture"] * 2, ["a", "b"], [[0.5, 0.5], [1, 0]])
>>> both = KeyedStreams(0, 2, keys).standard_normal((2, 3, 2, 4))
>>> alone = KeyedStreams(0, 2, keys[1:]).standard_normal((2, 3, 1, 4))
>>> bool(np.array_equal(both[:, :, 1:], alone))
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from bimix_bayes.data.labels import OBSERVED

__all__ = ["KeyedStreams", "step_key", "target_keys"]


def target_keys(
    sources: Sequence[str], names: Sequence[str], shares: Sequence[Sequence[float]] | np.ndarray
) -> list[bytes]:
    """The key of each forecast target.

    A new mixture is keyed by its shares (whatever its name: a mixture predicted from a file
    and the same one given as a dict agree) and by how many targets of the request had the
    same shares before it, so that two in one request (a recommended mixture equal to the
    baseline) are two runs with their own luck. An observed run is keyed by its id.

    Examples
    --------
    >>> a, b, c = target_keys(["new mixture"] * 3, ["x", "y", "z"], [[.5, .5], [.5, .5], [1, 0]])
    >>> a == target_keys(["new mixture"], ["other name"], [[0.5, 0.5]])[0], a == b
    (True, False)
    """
    seen: dict[bytes, int] = {}
    keys = []
    for source, name, row in zip(sources, names, np.asarray(shares, dtype=float), strict=True):
        what = name.encode() if source == OBSERVED else np.round(row, 12).tobytes()
        base = b"\x00".join([source.encode(), what])
        seen[base] = seen.get(base, -1) + 1
        keys.append(base + b"\x00" + str(seen[base]).encode())
    return keys


def step_key(target: bytes, step: float) -> bytes:
    """The key of one checkpoint of a target (its noise).

    Examples
    --------
    >>> step_key(b"t", 1000) == step_key(b"t", 1000.0)
    True
    """
    return target + b"\x01" + np.float64(step).tobytes()


def _seed_words(key: bytes) -> list[int]:
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return np.frombuffer(digest, dtype=np.uint32).tolist()


class KeyedStreams:
    """A stand-in for :class:`numpy.random.Generator` whose draws along the keyed axes come
    from one generator per key.

    Parameters
    ----------
    seed, stream
        The forecast's seed and the number of the random stream (each kind of draw its own).
    keys
        One key per index of the keyed axes: a sequence (one axis) or a nested sequence /
        object array (several axes), of bytes (:func:`target_keys`, :func:`step_key`).
    axis
        Position of the first keyed axis in the shapes asked for (2: after chain and draw).

    Notes
    -----
    Only what the forecast's draws call is provided: :meth:`standard_normal` and
    :meth:`gamma`. Each index's generator is created once and continues from call to call,
    so a sequence of calls gives each key the same values whatever the other keys are.
    """

    def __init__(self, seed: int, stream: int, keys: Sequence | np.ndarray, axis: int = 2):
        table = np.empty(np.shape(np.asarray(keys, dtype=object)), dtype=object)
        table[...] = np.asarray(keys, dtype=object)
        self._keyed = table.shape
        self._axis = axis
        self._gens = [np.random.default_rng([seed, stream, *_seed_words(k)]) for k in table.flat]

    def _fill(self, shape: tuple[int, ...], draw: Callable[..., np.ndarray]) -> np.ndarray:
        a, k = self._axis, len(self._keyed)
        if tuple(shape[a : a + k]) != self._keyed:
            raise ValueError(f"axes {a}..{a + k - 1} of {shape} must be the keys' {self._keyed}")
        out = np.empty(shape)
        lead = (slice(None),) * a
        for gen, idx in zip(self._gens, np.ndindex(*self._keyed), strict=True):
            out[lead + idx] = draw(gen, lead + idx)
        return out

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normals of ``shape``."""
        a, k = self._axis, len(self._keyed)
        rest = (*shape[:a], *shape[a + k :])
        return self._fill(tuple(shape), lambda gen, at: gen.standard_normal(rest))

    def gamma(self, shape: np.ndarray | float, scale: np.ndarray | float = 1.0) -> np.ndarray:
        """Gamma draws with (broadcast) shape and scale parameters."""
        shape_p, scale_p = np.broadcast_arrays(np.asarray(shape), np.asarray(scale))
        return self._fill(shape_p.shape, lambda gen, at: gen.gamma(shape_p[at], scale_p[at]))
