"""Variable projection machinery of the refinement: the weighted linear sub-problem solved exactly at every step
(background free, scales non-negative), Kaufman's Jacobian, the bounded nonlinear least squares, the covariance
of all parameters and the profile over the dispersion.

Units as in :mod:`~qdots_bluesky.refine.fit`.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from scipy.linalg.lapack import dgeqrf, dgesv, dorgqr
from scipy.optimize import nnls

from ..sim.physics.cluster_basis import ClusterBasis, population_targets
from .basis import decimated_basis
from .data import FitData
from .model import DotModel

__all__ = ["Problem", "fit_nonlinear", "covariance", "dispersion_profile", "volume_diameter", "PROFILE_STEP",
           "levenberg_marquardt"]

#: The profile over the dispersion refits at the optimum +- PROFILE_STEP covariance e.s.d.s (at least 0.005); a first
#: step that raises chi^2 by more than PROFILE_MAX_RISE x chi2_red is shrunk 5-fold, up to PROFILE_SHRINK_TRIES times.
PROFILE_STEP = 2.0
PROFILE_MAX_RISE = 100.0
PROFILE_SHRINK_TRIES = 3
#: A flat plate's forward-difference Jacobian is recomputed every JACOBIAN_REFRESH accepted steps, Broyden-updated
#: between (see :func:`levenberg_marquardt`).
JACOBIAN_REFRESH = 3
#: Each profile refit: at most PROFILE_NFEV evaluations, relative cost tolerance PROFILE_TOL: the profile's chi^2 rises
#: by ~4 chi2_red over its steps, and 1e-4 of a cost of (bins x chi2_red) is a few per cent of that (on the measured
#: development set the e.s.d.s move by <= 2 % against 1e-6, in 10-25 % less time).
PROFILE_NFEV = 30
PROFILE_TOL = 1e-4


def _nnls_projected(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """argmin ||A s - y|| with s >= 0, solved on the normal equations (columns normalised): the unconstrained
    solution where it is non-negative, else :func:`scipy.optimize.nnls` on their Cholesky factor."""
    norms = np.sqrt(np.einsum("ij,ij->j", A, A))
    live = norms > 1e-300
    if not live.any():
        return np.zeros(A.shape[1])
    An = A[:, live] / norms[live]
    return _nnls_normal(An.T @ An, An.T @ y, norms, live)


def _nnls_normal(G: np.ndarray, b: np.ndarray, norms: np.ndarray, live: np.ndarray) -> np.ndarray:
    """:func:`_nnls_projected` from the normal equations of its normalised live columns: Gram matrix ``G`` and
    right-hand side ``b`` (their products with the data), the columns' ``norms`` and which are ``live``."""
    s = np.zeros(norms.size)
    G = G.copy()
    G.flat[::G.shape[0] + 1] += 1e-10
    _, _, x, info = dgesv(G, b)  # LAPACK's LU solve, as numpy.linalg.solve's, without its 4 us of checks
    if info != 0:  # singular
        x = -np.ones(b.size)
    if np.any(x < 0):
        L = np.linalg.cholesky(G)
        x, _ = nnls(L.T, solve_triangular(L, b, lower=True))
    s[live] = x / norms[live]
    return s


#: Solves (and a capillary's evaluations) kept per problem: a least-squares step's accepted point and its last trial,
#: so that the optimum after a fit whose last trials were rejected is not evaluated again (solution, covariance).
KEPT_SOLVES = 2


class Problem:
    """Weighted variable-projection problem: free (background) columns projected out once."""

    def __init__(self, model: DotModel, data: FitData, fixed: np.ndarray, free: np.ndarray,
                 fixed_params: dict[int, float] | None = None) -> None:
        self.model = model
        #: nonlinear parameters held at given values in every fit (index -> value), e.g. a known instrument
        self.fixed_params = dict(fixed_params or {})
        self.data, self.fixed, self.free = data, fixed, free
        self.w = 1.0 / data.sigma
        self.yw = data.y * self.w
        self.free_w = free * self.w[:, None]
        self.fixed_w = fixed * self.w[:, None]
        self.Qc = np.linalg.qr(self.free_w)[0] if free.shape[1] else np.zeros((data.y.size, 0))
        self.yp = self._proj(self.yw)
        self.fixed_p = self._proj(self.fixed_w)
        # the fixed columns' share of the linear solve's normal equations, the same at every step
        self._fixed_norms = np.sqrt(np.einsum("ij,ij->j", self.fixed_p, self.fixed_p))
        self._fixed_live = self._fixed_norms > 1e-300
        self._fixed_n = self.fixed_p[:, self._fixed_live] / self._fixed_norms[self._fixed_live]
        self._fixed_gram = self._fixed_n.T @ self._fixed_n
        self._fixed_b = self._fixed_n.T @ self.yp
        self.nfev = 0
        self._solves: list[tuple] = []  # the last KEPT_SOLVES solves, the newest last

    def subsampled(self, stride: int) -> "Problem":
        """The same problem on every ``stride``-th point (a start search)."""
        d = self.data
        sub = FitData(d.q[::stride], None if d.tth is None else d.tth[::stride], d.y[::stride], d.sigma[::stride],
                      d.n_raw)
        model = DotModel(self.model.basis, sub.q, self.model.wavelength_a, self.model.geometry, sub.tth)
        return Problem(model, sub, self.fixed[::stride], self.free[::stride], self.fixed_params)

    def binned(self, factor: int) -> "Problem":
        """The same problem on bins of up to ``factor`` consecutive points, never across a gap (excluded ranges,
        a blank's missing points): the means of Q, 2theta, intensity and of the fixed and free columns, sigma =
        sqrt(sum sigma^2) / n (the statistics are kept); the dot columns are the model read at the bins' mean Q (it
        differs from the model's bin average by its curvature over a bin). A cheaper fit where the points oversample
        the peaks; a flat plate's auxiliary 2theta grid coarsens by the same factor, and the model is read from
        every (factor // 2)-th point of the basis (:func:`~qdots_bluesky.refine.basis.decimated_basis`: still two
        basis points per bin)."""
        if factor <= 1:
            return self
        d = self.data
        steps = np.diff(d.q)
        gap = np.flatnonzero(steps > 1.5 * np.median(steps)) + 1 if steps.size else np.zeros(0, dtype=int)
        bounds = np.concatenate([[0], gap, [d.q.size]])
        starts = np.concatenate([np.arange(lo, hi, factor) for lo, hi in zip(bounds[:-1], bounds[1:])])
        counts = np.diff(np.append(starts, d.q.size)).astype(float)

        def mean(a: np.ndarray) -> np.ndarray:
            total = np.add.reduceat(a, starts, axis=0)
            return total / (counts if a.ndim == 1 else counts[:, None])

        sigma = np.sqrt(np.add.reduceat(d.sigma**2, starts)) / counts
        sub = FitData(mean(d.q), None if d.tth is None else mean(d.tth), mean(d.y), sigma, d.n_raw)
        aux_step = None if self.model.aux_step is None else self.model.aux_step * factor
        model = DotModel(decimated_basis(self.model.basis, factor // 2), sub.q, self.model.wavelength_a,
                         self.model.geometry, sub.tth, family_q=self.model.family_range, aux_step=aux_step)
        return Problem(model, sub, mean(self.fixed), mean(self.free), self.fixed_params)

    def _proj(self, A: np.ndarray) -> np.ndarray:
        return A - self.Qc @ (self.Qc.T @ A)

    def solve(self, theta: np.ndarray, dots: bool = True,
              with_jacobian: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residual (weighted), non-negative scales (dot columns then fixed), dot columns (unweighted).
        ``with_jacobian``: an analytic model's derivatives come with its column, kept for :meth:`jacobian` at the
        same theta. The solves at the last ``KEPT_SOLVES`` thetas are kept: asked again (the optimum after a fit, the
        covariance) they are returned, not recomputed (nor counted in :attr:`nfev`)."""
        key = theta.tobytes()
        kept = self._kept(key) if dots else None
        if kept is not None and (kept[5] is not None or not with_jacobian or not self.model.analytic):
            return kept[1], kept[2], kept[4]
        self.nfev += 1
        d_cols = None
        if not dots:
            cols = np.zeros((self.yw.size, 0))
        elif with_jacobian and self.model.analytic:
            col, d_cols = self.model.columns_jacobian(theta)
            cols = col[:, None]
        else:
            cols = self.model.columns(theta)
        Ap = np.hstack([self._proj(cols * self.w[:, None]), self.fixed_p])
        s = self._scales(Ap[:, :cols.shape[1]])
        r = self.yp - Ap @ s
        if dots:
            for a in (r, s, Ap, cols) + ((d_cols,) if d_cols is not None else ()):
                a.flags.writeable = False  # kept and handed out again: an in-place change would corrupt later steps
            self._solves = [k for k in self._solves if k[0] != key][-(KEPT_SOLVES - 1):] + [(key, r, s, Ap, cols, d_cols)]
        return r, s, cols

    def _kept(self, key: bytes) -> tuple | None:
        """The kept solve at theta (as bytes), or None."""
        return next((k for k in self._solves if k[0] == key), None)

    def _scales(self, dots_p: np.ndarray) -> np.ndarray:
        """:func:`_nnls_projected` of the projected weighted dot columns ``dots_p`` beside the fixed ones, whose part
        of the normal equations is computed once."""
        norms_d = np.sqrt(np.einsum("ij,ij->j", dots_p, dots_p))
        live_d = norms_d > 1e-300
        norms = np.concatenate([norms_d, self._fixed_norms])
        live = np.concatenate([live_d, self._fixed_live])
        if not live.any():
            return np.zeros(norms.size)
        Dn = dots_p[:, live_d] / norms_d[live_d]
        m = Dn.shape[1]
        G = np.empty((m + self._fixed_b.size,) * 2)
        G[:m, :m] = Dn.T @ Dn
        G[:m, m:] = Dn.T @ self._fixed_n
        G[m:, :m] = G[:m, m:].T
        G[m:, m:] = self._fixed_gram
        return _nnls_normal(G, np.concatenate([Dn.T @ self.yp, self._fixed_b]), norms, live)

    def residual(self, theta: np.ndarray, with_jacobian: bool = False) -> np.ndarray:
        return self.solve(theta, with_jacobian=with_jacobian)[0]

    def jacobian(self, theta: np.ndarray, wanted: np.ndarray | None = None) -> np.ndarray:
        """Kaufman's variable-projection Jacobian of :meth:`residual`: -P (dA/dtheta s), P the projector off the
        active linear columns (capillary: analytic derivatives of the dot column). ``wanted``: the parameter indices
        whose columns are needed (others are 0; a flat plate's forward differences skip them)."""
        if self._kept(theta.tobytes()) is None:
            self.solve(theta)
        _, _, s, Ap, cols, d_cols = self._kept(theta.tobytes())
        m = cols.shape[1]
        k = self.model.instrument_index
        skip = set(self.fixed_params) | (set(range(theta.size)) - {int(i) for i in wanted} if wanted is not None
                                         else set())
        if self.model.analytic:  # (the column's evaluation is kept on the model: its Jacobian builds on it)
            G = (d_cols if d_cols is not None else
                 self.model.columns_jacobian(theta, instrument=not {k, k + 1} <= skip)[1]) * s[0]
        else:  # forward differences of the dot columns (not of the whole projected solve), exact instrument columns
            base = cols @ s[:m]
            G = np.empty((base.size, theta.size))
            if not {k, k + 1} <= skip:
                d_g, d_l = self.model.instrument_derivatives(theta)
                G[:, k], G[:, k + 1] = d_g @ s[:m], d_l @ s[:m]
            for i in range(theta.size):
                if i in skip:
                    G[:, i] = 0.0
                    continue
                if i in (k, k + 1):
                    continue
                h = 1e-4 * max(1.0, abs(theta[i]))
                th = theta.copy()
                th[i] += h
                G[:, i] = (self.model.columns(th) @ s[:m] - base) / h
        D = self._proj(G * self.w[:, None])
        active = Ap[:, s > 0]
        if active.shape[1]:
            factor, tau, _, _ = dgeqrf(active)  # numpy.linalg.qr's LAPACK calls (same Q), without its wrapper's cost
            U = dorgqr(factor, tau)[0]
            D = D - U @ (U.T @ D)
        return -D

    def background(self, scales: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Free coefficients for given scales (least squares on the weighted free columns)."""
        if not self.free_w.shape[1]:
            return np.zeros(0)
        A = np.hstack([cols, self.fixed_w / self.w[:, None]]) * self.w[:, None]
        return np.linalg.lstsq(self.free_w, self.yw - A @ scales, rcond=None)[0]


def fit_nonlinear(problem: Problem, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, fixed: dict[int, float] | None = None,
         max_nfev: int = 200, tol: float = 1e-6, hold_clipped: bool = False):
    """:func:`levenberg_marquardt` over the nonlinear parameters not in ``fixed`` (index -> value) nor the problem's
    own (``hold_clipped`` passed on); returns (all parameters, weighted sum of squares)."""
    fixed = {**problem.fixed_params, **(fixed or {})}
    free = np.array([i for i in range(x0.size) if i not in fixed])
    full = x0.copy()
    for i, v in fixed.items():
        full[i] = v

    def fun(p):
        theta = full.copy()
        theta[free] = p
        return problem.residual(theta)  # the column only: a rejected step needs no Jacobian

    def jac(p):
        theta = full.copy()
        theta[free] = p
        return problem.jacobian(theta, free)[:, free]

    scale = problem.model.x_scale(x0)[:x0.size]
    p0 = np.clip(full[free], lo[free], hi[free])
    p, cost = levenberg_marquardt(fun, jac, p0, lo[free], hi[free], scale[free], tol=tol, max_nfev=max_nfev,
                                  refresh=1 if problem.model.analytic else JACOBIAN_REFRESH, hold_clipped=hold_clipped)
    theta = full.copy()
    theta[free] = p
    return theta, cost


def _bounded_step(p: np.ndarray, step: np.ndarray, move: np.ndarray, M: np.ndarray, g: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """A damped step (in units of ``scale``) whose parameters beyond a bound are held at it and the others re-solved
    (the minimum of the damped quadratic model M, g given the held ones): the clipped step alone keeps the other
    parameters' moves that assumed the clipped one went further, and overshoots."""
    target = p + step * scale
    hit = move & ((target < lo) | (target > hi))
    rest = move & ~hit
    if not hit.any() or not rest.any():
        return step
    held = (np.clip(target, lo, hi) - p) / scale
    out = step.copy()
    out[hit] = held[hit]
    try:
        out[rest] = np.linalg.solve(M[np.ix_(rest, rest)], -(g[rest] + M[np.ix_(rest, hit)] @ held[hit]))
    except np.linalg.LinAlgError:
        return step
    return out


def levenberg_marquardt(fun, jac, p0: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: np.ndarray, *,
                        tol: float = 1e-6, max_nfev: int = 200, refresh: int = 1,
                        damping: float = 1e-3, hold_clipped: bool = False) -> tuple[np.ndarray, float]:
    """Bounded Levenberg-Marquardt for a handful of parameters: (p, sum of squared residuals).

    ``fun(p)`` gives the residuals, ``jac(p)`` their Jacobian at the p of the last ``fun`` call that was accepted
    (a capillary's analytic one builds on the evaluation of the residuals, so a rejected step costs no Jacobian).
    Steps solve the Marquardt-scaled normal equations (J^T J + lambda diag(J^T J)) d = -J^T r in units of
    ``scale``; a parameter at a bound whose gradient points out of the box is held there for the step, the others
    are clipped into it (``hold_clipped``: a parameter the step takes beyond a bound is held at it and the others
    re-solved, :func:`_bounded_step`; the profile's capillary refits, whose first steps overshot, take 5-7
    evaluations instead of 8-10); lambda follows
    Nielsen's rule from ``damping`` (shrunk by the gain ratio on success, doubled-and-doubling on failure). Stops
    when, with lambda below 1 (steps near Gauss-Newton's, not the short gradient steps of a heavily damped
    solver) and a fresh Jacobian, an accepted step lowers the cost by less than ``tol`` relatively or moves every
    parameter by less than ``tol`` of its scale; or when no parameter can move; or after ``max_nfev`` evaluations. The parameters are few (<= 7) and the normal equations tiny, so each step
    costs one evaluation (SciPy's trust-region solver spends as much again on its own bookkeeping).

    ``refresh`` > 1 (an expensive ``jac``, e.g. forward differences): between calls of ``jac`` every ``refresh``
    accepted steps the Jacobian follows Broyden's rank-one secant update, J += (dr - J dp) dp^T / dp^T dp; a
    rejected step after an update asks ``jac`` again before growing lambda.
    """
    p = np.clip(np.asarray(p0, dtype=float), lo, hi)
    r = fun(p)
    cost = float(r @ r)
    nfev, lam, nu = 1, float(damping), 2.0
    J = jac(p) * scale
    since_jac = 0
    while nfev < max_nfev:
        g = J.T @ r
        A = J.T @ J
        at_lo = (p <= lo) & (g > 0)
        at_hi = (p >= hi) & (g < 0)
        move = ~(at_lo | at_hi)
        if not move.any():
            break
        diag = np.maximum(np.diag(A), 1e-12 * max(float(np.max(np.diag(A))), 1e-300))
        Am = A + lam * np.diag(diag) if move.all() else A[np.ix_(move, move)] + lam * np.diag(diag[move])
        _, _, step_m, info = dgesv(Am, -g[move])  # as numpy.linalg.solve, without its checks
        if info != 0:  # singular
            lam *= nu
            nu *= 2.0
            continue
        step = np.zeros_like(p)
        step[move] = step_m
        if hold_clipped:
            step = _bounded_step(p, step, move, A + lam * np.diag(diag), g, lo, hi, scale)
        trial = np.minimum(np.maximum(p + step * scale, lo), hi)  # np.clip's values, without its wrapper's cost
        actual_step = (trial - p) / scale
        if not np.any(actual_step):
            break
        r_new = fun(trial)
        nfev += 1
        cost_new = float(r_new @ r_new)
        predicted = -(2.0 * g @ actual_step + actual_step @ A @ actual_step)
        if cost_new < cost:
            gain = (cost - cost_new) / predicted if predicted > 0 else 0.0
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3)
            nu = 2.0
            converging = lam < 1.0 and since_jac == 0  # a near-Gauss-Newton step from an exact Jacobian
            small_cost = cost - cost_new <= tol * cost
            small_step = np.all(np.abs(actual_step) <= tol * (np.abs(trial / scale) + tol))
            r_old = r
            p, r, cost = trial, r_new, cost_new
            if converging and (small_cost or small_step):
                break
            since_jac += 1
            if since_jac >= refresh:
                J = jac(p) * scale
                since_jac = 0
            else:
                J = J + np.outer(r - r_old - J @ actual_step, actual_step) / float(actual_step @ actual_step)
        elif since_jac:  # the secant Jacobian may have misled the step: a fresh one first (jac re-solves at p)
            J = jac(p) * scale
            since_jac = 0
        else:
            lam *= nu
            nu *= 2.0
            # even a tiny (damped, gradient-like) step does not lower the cost: a minimum to working precision
            if lam > 1e16 or np.all(np.abs(actual_step) <= tol * (np.abs(p / scale) + tol)):
                break
    return p, cost


#: A nonlinear parameter within this fraction of its range from a bound is at the bound.
AT_BOUND = 1e-3


def at_bound(theta: np.ndarray, lo: np.ndarray, hi: np.ndarray, side: str = "either") -> np.ndarray:
    """Which parameters sit at a bound (within ``AT_BOUND`` of their range): at ``side`` "lower", "upper" or
    "either"."""
    room = {"lower": theta - lo, "upper": hi - theta, "either": np.minimum(theta - lo, hi - theta)}[side]
    return room < AT_BOUND * (hi - lo)


def covariance(problem: Problem, theta: np.ndarray, scales: np.ndarray, cols: np.ndarray, chi2_red: float,
               hi: np.ndarray):
    """Covariance of (nonlinear params, active scales, background) from the full weighted Jacobian x chi2_red;
    the problem's fixed parameters have no column (their rows and columns of the covariance are 0). Returns the
    nonlinear parameters' block and the e.s.d.s of the scales (NaN for inactive ones). ``hi``: the upper bounds (a
    flat plate's forward differences step down from them)."""
    w = problem.w[:, None]
    lin_cols = np.hstack([cols, problem.fixed_w / w])

    def calc(th):
        return problem.model.columns(th) @ scales[:cols.shape[1]]

    if problem.model.analytic:
        k = problem.model.instrument_index
        Jnl = problem.model.columns_jacobian(theta, instrument=not {k, k + 1} <= set(problem.fixed_params))[1] * scales[0]
    else:
        base = calc(theta)
        J = []
        for i in range(theta.size):
            h = 1e-4 * max(1.0, abs(theta[i]))
            step = h if theta[i] + h <= hi[i] else -h
            th = theta.copy()
            th[i] += step
            J.append((calc(th) - base) / step)
        Jnl = np.stack(J, axis=1)
    Jnl = Jnl.copy()
    Jnl[:, list(problem.fixed_params)] = 0.0  # a zero column: pinv gives it zero variance and no correlation
    active = scales > 0
    Jfull = np.hstack([Jnl, lin_cols[:, active], problem.free_w / w]) * w
    norms = np.sqrt(np.einsum("ij,ij->j", Jfull, Jfull))
    norms[norms == 0] = 1.0
    Jn = Jfull / norms
    cov = np.linalg.pinv(Jn.T @ Jn, rcond=1e-12) / np.outer(norms, norms) * chi2_red
    std_scales = np.full(scales.size, np.nan)
    lin = slice(theta.size, theta.size + active.sum())
    std_scales[active] = np.sqrt(np.maximum(np.diag(cov)[lin], 0.0))
    return cov[:theta.size, :theta.size], std_scales


def dispersion_profile(problem: Problem, theta: np.ndarray, cost: float, disp_std: float, lo, hi, chi2_red: float, basis,
                       cov: np.ndarray | None = None):
    """Profile over the dispersion: (dispersion e.s.d., dD/d disp, dDv/d disp) or None where it fails.

    Three points: the optimum, one step to one side, and one step to the other side (or, at a bound, two steps on
    the side with room: the curvature of chi^2 there gives the e.s.d., the width of the valley, not the steep rise
    of its slope). The step is PROFILE_STEP covariance e.s.d.s, at least 0.005, at most 0.45 of the room to the
    farther bound, shrunk 5-fold where it raises chi^2 beyond PROFILE_MAX_RISE x chi2_red (a covariance e.s.d.
    that means little, as at a bound). Each refit starts along the covariance's valley (``cov``); a capillary's refits
    hold a parameter their step takes beyond a bound at it and re-solve the others (``hold_clipped`` of
    :func:`levenberg_marquardt`: 5-7 evaluations instead of 8-10)."""
    room = max(theta[1] - lo[1], hi[1] - theta[1])
    delta = min(max(PROFILE_STEP * disp_std, 0.005), 0.45 * room)  # two steps fit on the side with room

    def refit(value: float) -> tuple[float, float, float, float]:
        start = theta.copy()
        if cov is not None and cov[1, 1] > 0:  # along the covariance's valley: near the refit's optimum
            start = np.clip(theta + cov[:, 1] / cov[1, 1] * (value - theta[1]), lo, hi)
        current, c = fit_nonlinear(problem, start, lo, hi, fixed={1: value}, max_nfev=PROFILE_NFEV, tol=PROFILE_TOL,
                                   hold_clipped=problem.model.analytic)
        return value, c, current[0], volume_diameter(basis, current)

    pts = [(theta[1], cost, theta[0], volume_diameter(basis, theta))]
    side = -1.0 if theta[1] - delta > lo[1] else 1.0
    first = refit(theta[1] + side * delta)
    for _ in range(PROFILE_SHRINK_TRIES):  # a step far beyond the e.s.d. (a poor covariance, e.g. at a bound)
        if first[1] - cost <= PROFILE_MAX_RISE * chi2_red:
            break
        delta /= 5.0
        first = refit(theta[1] + side * delta)
    pts.append(first)
    for value in (theta[1] - side * delta, theta[1] + 2 * side * delta, theta[1] - 2 * side * delta):
        if len(pts) == 3:
            break
        if lo[1] < value < hi[1]:  # at a bound: one side at 1 and 2 steps
            pts.append(refit(value))
    if len(pts) < 3:
        return None
    p = np.array(sorted(pts))
    curv = np.polyfit(p[:, 0] - theta[1], p[:, 1], 2)[0]  # at a bound: the valley's curvature on one side
    if not curv > 0:
        return None
    disp_esd = float(np.sqrt(chi2_red / curv))
    slope_d = float(np.polyfit(p[:, 0], p[:, 2], 1)[0])
    slope_v = float(np.polyfit(p[:, 0], p[:, 3], 1)[0])
    return disp_esd, slope_d, slope_v


def volume_diameter(basis: ClusterBasis, theta: np.ndarray) -> float:
    return float(population_targets(basis.n, basis.unit_nm, theta[0], theta[1], theta[2])["volume_diameter_nm"][0])


