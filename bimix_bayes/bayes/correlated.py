"""Run effects correlated across domains, integrated out per run (Woodbury), written once.

A run ``j`` gives every evaluation domain ``d`` an offset ``u[j, d]`` (and, opt-in, a slope
``v[j, d]`` in the centred log step ``x``). A run that is lucky on web text is often lucky on
code too, so the effects of one run are correlated across domains::

    u[j] ~ Normal(0, Sigma_u),  Sigma_u = L_u L_u^T = diag(tau) R_u diag(tau)    (D x D)
    v[j] ~ Normal(0, Sigma_v),  Sigma_v = L_v L_v^T = diag(kappa) R_v diag(kappa)

with ``R`` a correlation matrix (LKJ prior). The run's residual vector ``e`` (observed minus law
log loss, every checkpoint of every domain of the run) is then Normal with covariance
``N + Z Sigma Z^T``: ``N = diag(sigma[d]^2)`` the checkpoint noise, ``Z`` the design that puts
``u[d]`` (and ``x v[d]``) on domain ``d``'s checkpoints, ``Sigma = L L^T`` with
``L = blockdiag(L_u, L_v)``. The effects are integrated out with the Woodbury identity and the
matrix determinant lemma in the ``K x K`` *capacitance* matrix (``K = D``, or ``2 D`` with
slopes)::

    A = Z^T N^-1 Z      per domain: [[n, Sx], [Sx, Sxx]] / sigma^2, zero across domains
    b = Z^T N^-1 e      per domain: [S1, Sxe] / sigma^2
    M = I + L^T A L     c = L^T b
    logdet(N + Z Sigma Z^T) = sum_d n_d log sigma_d^2 + log det M
    e^T (N + Z Sigma Z^T)^-1 e = sum_d S2_d / sigma_d^2 - c^T M^-1 c

Why the capacitance matrix and not a Cholesky of the run's block: a run has ``n`` = domains x
checkpoints residuals (50 to 500), the capacitance matrix is ``K x K`` (5 to 40) whatever the
number of checkpoints, it only needs per-(run, domain) sums (``n``, ``S1``, ``S2``, ``Sx``,
``Sxx``, ``Sxe``) that the per-curve model already computes, and it is well conditioned
(``M >= I``) even when a population sd tends to zero, where ``Sigma^-1`` would not exist.
Writing it as ``I + L^T A L`` rather than ``Sigma^-1 + A`` is what makes that so. Domains a run
did not observe have zero rows in ``A`` and ``b`` and drop out by themselves.

``M`` depends on a run's design (``n``, ``Sx``, ``Sxx`` per domain) and the parameters, not on
its residuals, and most runs share their design (the same checkpoints in every domain: 2
distinct designs among the 60 SlimPajama 122M runs, 13 among the 61 mixtures of all its sizes).
So the model factorises ``M`` once per distinct design (:class:`RunPatterns`) and gathers
``log det M`` and ``M^-1`` per run: the batched small-matrix work of a gradient falls from one
per run to one per design, which was most of a gradient's cost.

Given the residuals, the effects are Normal: with ``gamma = L eta``,
``eta | e ~ Normal(M^-1 c, W M^-1)`` (:func:`run_conditional`), which is how an observed run's
later checkpoints are forecast. The Student-t option is the multivariate t with the same scale
matrix (one variance factor ``W ~ InvGamma(nu/2, nu/2)`` per run, as for a curve in
:mod:`~bimix_bayes.bayes.likelihood`). Every function takes ``math=numpy`` or
``math=pytensor.tensor``; leading batch dimensions (chain, draw) broadcast.

Examples
--------
>>> import numpy as np
>>> from scipy.stats import multivariate_normal
>>> rng = np.random.default_rng(0)
>>> x = np.log([1.0, 2.0, 4.0]) - np.log(2.0)          # one run, 2 domains, 3 checkpoints
>>> e = rng.normal(0, 0.02, size=(2, 3))
>>> sums = RunSums.from_residuals(e, x)
>>> sigma = np.array([0.01, 0.02])
>>> l_u = np.linalg.cholesky(np.diag([0.03, 0.02]) @ [[1, 0.8], [0.8, 1]] @ np.diag([0.03, 0.02]))
>>> lp = run_log_likelihood(sums, sigma, l_u)
>>> z = np.kron(np.eye(2), np.ones((3, 1)))            # offsets on each domain's checkpoints
>>> cov = np.diag(np.repeat(sigma**2, 3)) + z @ l_u @ l_u.T @ z.T
>>> bool(np.isclose(lp[0], multivariate_normal(np.zeros(6), cov).logpdf(e.ravel())))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bimix_bayes.bayes.likelihood import gaussian_log_density

__all__ = [
    "RunPatterns",
    "RunSums",
    "block_diag",
    "corr_cholesky",
    "draw_run_effects",
    "effect_cholesky",
    "lkj_cpc_shapes",
    "run_conditional",
    "run_log_likelihood",
]


@dataclass(frozen=True)
class RunSums:
    """Per (run, domain) sums of a run's residuals and design, arrays shaped (..., run, domain).

    Attributes
    ----------
    n, sx, sxx
        Number of checkpoints, ``sum(x)`` and ``sum(x^2)`` (data; zero where not observed).
    s1, s2, sxe
        ``sum(e)``, ``sum(e^2)`` and ``sum(x e)`` of the residuals (per posterior draw).
    count, log_v
        With the noise falling with the step (:mod:`~bimix_bayes.bayes.noise`) every sum above
        is weighted by ``1 / v`` (``n = sum(1 / v)``); ``count`` is then the number of
        checkpoints and ``log_v`` the sum of ``log v``. None: constant noise (``count = n``).
    """

    n: Any
    sx: Any
    sxx: Any
    s1: Any
    s2: Any
    sxe: Any
    count: Any = None
    log_v: Any = None

    @property
    def checkpoints(self) -> Any:
        """Number of checkpoints per (run, domain)."""
        return self.n if self.count is None else self.count

    @classmethod
    def from_residuals(
        cls, e: np.ndarray, x: np.ndarray, mask: np.ndarray | None = None
    ) -> RunSums:
        """Sums of one run's residuals ``e`` (domain x checkpoint) at centred log steps ``x``.

        For tests and examples: the model builds the sums from its curve layout.
        """
        mask = np.ones_like(e) if mask is None else mask
        e, x = e * mask, np.broadcast_to(x, e.shape) * mask
        return cls(
            n=mask.sum(-1)[None],
            sx=x.sum(-1)[None],
            sxx=(x**2).sum(-1)[None],
            s1=e.sum(-1)[None],
            s2=(e**2).sum(-1)[None],
            sxe=(x * e).sum(-1)[None],
        )


def lkj_cpc_shapes(n: int, eta: float) -> np.ndarray:
    """Beta shapes of the canonical partial correlations that make ``R ~ LKJ(eta)``.

    The factor of :func:`corr_cholesky` is filled row by row from partial correlations
    ``z[i, m]`` (``m < i``). Writing the LKJ density ``det(R)^(eta - 1)`` with the Jacobian of
    that map (Lewandowski, Kurowicka and Joe 2009; Stan's ``cholesky_corr`` transform) gives
    independent ``(z + 1) / 2 ~ Beta(b_m, b_m)`` with ``b_m = eta - 1 + (n - m) / 2``: each
    ``log(1 - z[i, m]^2)`` collects ``1`` (its own step), ``1/2`` from each later entry of the
    row and ``(n - i - 1 + 2 eta - 2) / 2`` from ``log L_ii``. So the prior is a product of
    Betas that PyMC can sample, for prior checks as well as NUTS.

    Examples
    --------
    >>> lkj_cpc_shapes(3, 2.0).tolist()  # z[1,0]; z[2,0], z[2,1]
    [2.5, 2.5, 2.0]
    """
    return np.array([eta - 1 + (n - m) / 2 for i in range(1, n) for m in range(i)])


def corr_cholesky(z: Any, n: int, *, math: ModuleType = np) -> Any:
    """The Cholesky factor of a correlation matrix from its ``n (n - 1) / 2`` partial correlations.

    ``z`` in (-1, 1), row-major over the strict lower triangle (the order of
    :func:`lkj_cpc_shapes`). Every such ``z`` gives a valid factor: ``R = L L^T`` has a unit
    diagonal and is positive definite.

    Examples
    --------
    >>> chol = corr_cholesky(np.array([0.3, -0.2, 0.5]), 3)
    >>> corr = chol @ chol.T
    >>> bool(np.allclose(np.diag(corr), 1.0)), round(float(corr[1, 0]), 2)
    (True, 0.3)
    """
    rows: list[list[Any]] = [[1.0]]
    k = 0
    for i in range(1, n):
        row: list[Any] = []
        sum_sqs: Any = 0.0
        for _ in range(i):
            entry = z[k] * math.sqrt(1.0 - sum_sqs)
            sum_sqs = sum_sqs + entry**2
            row.append(entry)
            k += 1
        rows.append([*row, math.sqrt(1.0 - sum_sqs)])
    full = [[*r, *([0.0] * (n - len(r)))] for r in rows]
    if math is np:
        return np.array([[float(v) for v in r] for r in full])
    return math.stack([math.stack([math.as_tensor_variable(v) for v in r]) for r in full])


def effect_cholesky(sd: Any, corr_chol: Any | None = None, *, math: ModuleType = np) -> Any:
    """``L = diag(sd) C``: the Cholesky factor of ``diag(sd) R diag(sd)`` from that of ``R``.

    ``corr_chol`` None means independent domains (``L = diag(sd)``).
    """
    if corr_chol is None:
        eye = np.eye(sd.shape[-1]) if math is np else math.eye(sd.shape[-1])
        return sd[..., :, None] * eye
    return sd[..., :, None] * corr_chol


@dataclass(frozen=True)
class RunPatterns:
    """The distinct run designs: what the capacitance matrix of a run depends on besides the
    parameters (its ``n``, ``sum(x)`` and ``sum(x^2)`` per domain).

    Attributes
    ----------
    member
        ``(run, pattern)``: 1 where the run has that design, else 0 (a product with it gathers
        per-design values per run).
    n, sx, sxx
        Per design and domain, ``(pattern, domain)``.

    Examples
    --------
    >>> n = np.array([[10.0, 10.0], [10.0, 10.0], [10.0, 9.0]])
    >>> p = RunPatterns.of(n, np.zeros_like(n), np.zeros_like(n))
    >>> p.index.tolist(), p.n.tolist()
    ([1, 1, 0], [[10.0, 9.0], [10.0, 10.0]])
    """

    member: Any
    n: Any
    sx: Any
    sxx: Any

    @property
    def index(self) -> np.ndarray:
        """Per run, its design (numpy)."""
        return np.asarray(self.member).argmax(axis=-1)

    def design_means(self, per_run: Any) -> Any:
        """Per design, the mean of ``per_run`` (..., run, domain) over its runs: a value the
        runs of one design share (such as the weighted design sums of a noise that falls with
        the step, :mod:`~bimix_bayes.bayes.noise`), for numpy and pytensor alike."""
        member = self.member
        return (member.T @ per_run) / member.sum(axis=0)[:, None]

    @classmethod
    def of(
        cls, n: np.ndarray, sx: np.ndarray, sxx: np.ndarray, extra: np.ndarray | None = None
    ) -> RunPatterns:
        """Group runs by their design ``(run, domain)`` arrays (identical rows share one);
        ``extra`` (run, k): more of each run's design that must match (e.g. its steps)."""
        d = n.shape[-1]
        design = np.concatenate([n, sx, sxx, *([] if extra is None else [extra])], axis=-1)
        unique, index = np.unique(design, axis=0, return_inverse=True)
        return cls(
            member=np.eye(len(unique))[np.asarray(index).ravel()],
            n=unique[:, :d],
            sx=unique[:, d : 2 * d],
            sxx=unique[:, 2 * d : 3 * d],
        )


def _sandwich(left: Any, a: Any, right: Any) -> Any:
    """``sum_d left[d, k] a[j, d] right[d, l]`` per run ``j``: ``L1^T diag(a_j) L2``."""
    return (
        left[..., None, :, :, None] * a[..., :, :, None, None] * right[..., None, :, None, :]
    ).sum(axis=-3)


def _project(chol: Any, b: Any) -> Any:
    """``L^T b_j`` per run: ``sum_d L[d, k] b[j, d]``."""
    return (chol[..., None, :, :] * b[..., :, :, None]).sum(axis=-2)


def _capacitance(
    sums: RunSums,
    sigma: Any,
    l_u: Any,
    l_v: Any | None,
    math: ModuleType,
    patterns: RunPatterns | None = None,
) -> tuple[Any, Any, Any]:
    """``(M, c, inv_s2)``: the capacitance matrix (per run, or per design of ``patterns``),
    ``L^T b`` per run, and ``1 / sigma^2``."""
    inv_s2 = 1.0 / sigma[..., None, :] ** 2
    design = sums if patterns is None else patterns
    m = _sandwich(l_u, design.n * inv_s2, l_u)
    c = _project(l_u, sums.s1 * inv_s2)
    if l_v is not None:
        uv = _sandwich(l_u, design.sx * inv_s2, l_v)
        vv = _sandwich(l_v, design.sxx * inv_s2, l_v)
        m = math.concatenate(
            [
                math.concatenate([m, uv], axis=-1),
                math.concatenate([math.swapaxes(uv, -1, -2), vv], axis=-1),
            ],
            axis=-2,
        )
        c = math.concatenate([c, _project(l_v, sums.sxe * inv_s2)], axis=-1)
    k = m.shape[-1]
    eye = np.eye(k) if math is np else math.eye(k)
    return m + eye, c, inv_s2


def _solve(m: Any, c: Any, math: ModuleType) -> Any:
    if math is np:
        return np.linalg.solve(m, c[..., None])[..., 0]
    from pytensor.tensor.slinalg import solve

    return solve(m, c[..., None], assume_a="pos")[..., 0]


def _logdet(m: Any, math: ModuleType) -> Any:
    if math is np:
        return np.linalg.slogdet(m)[1]
    from pytensor.tensor.nlinalg import slogdet

    return slogdet(m)[1]


def _inverse(m: Any, math: ModuleType) -> Any:
    if math is np:
        return np.linalg.inv(m)
    from pytensor.tensor.nlinalg import matrix_inverse

    return matrix_inverse(m)


def run_log_likelihood(
    sums: RunSums,
    sigma: Any,
    l_u: Any,
    l_v: Any | None = None,
    *,
    family: str = "normal",
    nu: float = 5.0,
    math: ModuleType = np,
    patterns: RunPatterns | None = None,
) -> Any:
    """Log density of each run's residual vector, its correlated effects integrated out.

    Parameters
    ----------
    sums
        Per (run, domain) sums (:class:`RunSums`), shaped (..., run, domain).
    sigma
        Checkpoint noise sd per domain, shaped (..., domain).
    l_u, l_v
        Cholesky factors of the offsets' and (opt-in) slopes' covariance across domains, shaped
        (..., domain, domain) (:func:`effect_cholesky`); ``l_v`` None: offsets only.
    family, nu
        ``"normal"`` or ``"student_t"`` (multivariate t per run with ``nu`` degrees of freedom).
    math
        ``numpy`` or ``pytensor.tensor``.
    patterns
        The runs' designs (:meth:`RunPatterns.of` of ``sums.n, sums.sx, sums.sxx``): the
        capacitance matrix is then factorised once per design and gathered per run (the same
        value, fewer small-matrix operations); None: once per run.

    Returns
    -------
    array
        One log density per run, shaped (..., run).
    """
    m, c, inv_s2 = _capacitance(sums, sigma, l_u, l_v, math, patterns)
    n_run = sums.checkpoints.sum(axis=-1)
    log_s2 = math.log(sigma[..., None, :] ** 2)
    if patterns is None:
        logdet_m = _logdet(m, math)
        c_m_c = (c * _solve(m, c, math)).sum(axis=-1)
    else:  # M^-1 of each design (M >= I: well conditioned), gathered per run by a product
        # with the (run, design) indicator matrix (a BLAS product runs fast even in code
        # compiled without optimisation, unlike a broadcast masked sum)
        member = patterns.member
        logdet_m = _logdet(m, math) @ member.T
        m_inv = _inverse(m, math)
        lead = tuple(m_inv.shape[i] for i in range(m_inv.ndim - 3))
        k = m.shape[-1]
        m_inv = member @ m_inv.reshape((*lead, member.shape[1], k * k))
        m_inv = m_inv.reshape((*lead, member.shape[0], k, k))
        c_m_c = (c[..., :, None] * m_inv * c[..., None, :]).sum(axis=(-2, -1))
    logdet = (sums.checkpoints * log_s2).sum(axis=-1) + logdet_m
    if sums.log_v is not None:  # the whitening of a noise that falls with the step
        logdet = logdet + sums.log_v.sum(axis=-1)
    q = (sums.s2 * inv_s2).sum(axis=-1) - c_m_c
    return gaussian_log_density(n_run, logdet, q, family=family, nu=nu, math=math)


def run_conditional(
    sums: RunSums,
    sigma: np.ndarray,
    l_u: np.ndarray,
    l_v: np.ndarray | None = None,
    *,
    family: str = "normal",
    nu: float = 5.0,
) -> dict[str, Any]:
    """The effects of each observed run given its residuals (numpy), for forecasting it.

    Returns
    -------
    dict
        ``mean`` (..., run, K) and ``cov`` (..., run, K, K) of ``gamma = (u, v)`` given ``W``
        (``K = D`` or ``2 D``), and ``w``: the Inverse-Gamma ``(shape, rate)`` of the run's
        variance factor ``W`` (None under the Normal family, where ``W = 1``).
    """
    m, c, inv_s2 = _capacitance(sums, sigma, l_u, l_v, np)
    chol = l_u if l_v is None else block_diag(l_u, l_v)
    m_inv = np.linalg.inv(m)
    eta = (m_inv @ c[..., None])[..., 0]
    mean = (chol[..., None, :, :] @ eta[..., None])[..., 0]
    cov = chol[..., None, :, :] @ m_inv @ np.swapaxes(chol, -1, -2)[..., None, :, :]
    out: dict[str, Any] = {"mean": mean, "cov": cov, "w": None}
    if family == "student_t":
        n_run = sums.checkpoints.sum(axis=-1)
        q = (sums.s2 * inv_s2).sum(axis=-1) - (c * eta).sum(axis=-1)
        out["w"] = ((nu + n_run) / 2, (nu + q) / 2)
    return out


def block_diag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Batched block-diagonal matrix ``[[a, 0], [0, b]]`` over leading dimensions."""
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    k1, k2 = a.shape[-1], b.shape[-1]
    out = np.zeros((*shape, k1 + k2, k1 + k2))
    out[..., :k1, :k1] = a
    out[..., k1:, k1:] = b
    return out


def draw_run_effects(
    cond: dict[str, Any], rng: np.random.Generator, n_domains: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint draws ``(u, sqrt(W), v)`` of each run's effects, shaped (..., run, domain).

    ``cond`` comes from :func:`run_conditional` (observed runs) or, for fresh runs, is
    ``{"mean": 0 (..., run, K), "cov": L L^T (..., run, K, K), "w": (nu/2, nu/2) or None}``.
    ``v`` is zero when ``K = D`` (no slopes).
    """
    mean = np.asarray(cond["mean"])
    cov = np.asarray(cond["cov"])
    shape = np.broadcast_shapes(mean.shape, cov.shape[:-1])
    # A covariance may be singular (a population sd of zero): jitter relative to its scale.
    scale_k = np.maximum(np.einsum("...kk->...k", cov).max(axis=-1, keepdims=True), 1e-300)
    chol = np.linalg.cholesky(cov + 1e-12 * scale_k[..., None] * np.eye(cov.shape[-1]))
    z = rng.standard_normal(shape)
    w_scale = np.ones(shape[:-1])
    if cond["w"] is not None:
        shape_w, rate_w = (np.broadcast_to(a, shape[:-1]) for a in cond["w"])
        w_scale = np.sqrt(1.0 / rng.gamma(shape_w, 1.0 / rate_w))
    gamma = mean + w_scale[..., None] * (chol @ z[..., None])[..., 0]
    u = gamma[..., :n_domains]
    v = gamma[..., n_domains:] if shape[-1] > n_domains else np.zeros_like(u)
    scale = np.broadcast_to(w_scale[..., None], u.shape).copy()
    return u, scale, v
