"""The bounded Levenberg-Marquardt of the refinement (qdots_bluesky.refine.solver.levenberg_marquardt)."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.refine.solver import levenberg_marquardt

X = np.linspace(0.0, 4.0, 60)
TRUTH = np.array([2.0, 0.7, 0.3])


def _model(p: np.ndarray) -> np.ndarray:
    return p[0] * np.exp(-p[1] * X) + p[2]


def _problem(noise: float = 0.0):
    y = _model(TRUTH) + noise * np.random.default_rng(0).normal(size=X.size)
    calls = {"fun": 0, "jac": 0}

    def fun(p):
        calls["fun"] += 1
        return _model(p) - y

    def jac(p):
        calls["jac"] += 1
        e = np.exp(-p[1] * X)
        return np.stack([e, -p[0] * X * e, np.ones_like(X)], axis=1)

    return fun, jac, calls


def test_converges_to_the_least_squares_solution():
    jac_calls = {}
    for refresh in (1, 3):
        fun, jac, calls = _problem()
        lo, hi = np.array([0.0, 0.0, -1.0]), np.array([10.0, 5.0, 1.0])
        p, cost = levenberg_marquardt(fun, jac, np.array([1.0, 2.0, 0.0]), lo, hi, np.ones(3), tol=1e-10,
                                      max_nfev=200, refresh=refresh)
        assert p == pytest.approx(TRUTH, abs=1e-5) and cost < 1e-10, refresh
        jac_calls[refresh] = calls["jac"]
    assert jac_calls[3] < jac_calls[1]  # Broyden updates between refreshes save Jacobians


def test_heavy_damping_is_not_taken_for_convergence():
    """Started with a large lambda every step is a short gradient step that lowers the cost by little: the solver
    must go on (lambda shrinks with each success) to the optimum, not stop on the first small decrease."""
    fun, jac, _ = _problem(noise=0.01)
    lo, hi = np.array([0.0, 0.0, -1.0]), np.array([10.0, 5.0, 1.0])
    ref, ref_cost = levenberg_marquardt(fun, jac, np.array([1.0, 2.0, 0.0]), lo, hi, np.ones(3), tol=1e-12,
                                        max_nfev=500)
    p, cost = levenberg_marquardt(fun, jac, np.array([1.0, 2.0, 0.0]), lo, hi, np.ones(3), tol=1e-5, max_nfev=500,
                                  damping=1e8)
    assert cost == pytest.approx(ref_cost, rel=1e-4) and p == pytest.approx(ref, abs=1e-3)


def test_a_bound_holds_and_the_rest_is_optimal():
    fun, jac, _ = _problem()
    lo, hi = np.array([0.0, 0.0, -1.0]), np.array([10.0, 5.0, 0.1])  # the offset cannot reach its 0.3
    p, _ = levenberg_marquardt(fun, jac, np.array([1.0, 1.0, 0.0]), lo, hi, np.ones(3), tol=1e-12, max_nfev=500)
    assert p[2] == pytest.approx(0.1)
    # the other two minimise the cost with the offset held at its bound (zero gradient in them)
    g = jac(p).T @ fun(p)
    assert abs(g[0]) < 1e-6 and abs(g[1]) < 1e-6 and g[2] < 0  # the gradient pushes the offset beyond its bound


def test_a_clipped_parameter_is_held_and_the_others_resolved():
    """_bounded_step: the parameter the damped step takes beyond its bound is held there and the others minimise the
    damped quadratic model given it (zero model gradient in them); a step within the box is left as it is."""
    from qdots_bluesky.refine.solver import _bounded_step

    M = np.array([[4.0, 1.5, 0.3], [1.5, 2.0, 0.4], [0.3, 0.4, 1.0]])
    g = np.array([-8.0, 1.0, -0.5])
    p, lo, hi, scale = np.array([0.5, 0.0, 0.0]), np.full(3, -5.0), np.full(3, 1.0), np.ones(3)
    move = np.ones(3, dtype=bool)
    step = np.linalg.solve(M, -g)
    assert p[0] + step[0] > hi[0]  # the free step leaves the box in the first parameter
    out = _bounded_step(p, step, move, M, g, lo, hi, scale)
    assert out[0] == pytest.approx(hi[0] - p[0])
    assert (g + M @ out)[1:] == pytest.approx(np.zeros(2), abs=1e-12)
    inside = 0.1 * step
    assert np.array_equal(_bounded_step(p, inside, move, M, g, lo, hi, scale), inside)


def test_holding_clipped_parameters_reaches_the_same_optimum():
    fun, jac, _ = _problem()
    lo, hi = np.array([0.0, 0.0, -1.0]), np.array([10.0, 5.0, 0.1])
    ref, ref_cost = levenberg_marquardt(fun, jac, np.array([1.0, 1.0, 0.0]), lo, hi, np.ones(3), tol=1e-12,
                                        max_nfev=500)
    p, cost = levenberg_marquardt(fun, jac, np.array([1.0, 1.0, 0.0]), lo, hi, np.ones(3), tol=1e-12, max_nfev=500,
                                  hold_clipped=True)
    assert p == pytest.approx(ref, abs=1e-6) and cost == pytest.approx(ref_cost, rel=1e-8)
