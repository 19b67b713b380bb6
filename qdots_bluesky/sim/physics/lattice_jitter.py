"""Changing the lattice parameter of a simulated pattern without a new DSE run.

An isotropic strain multiplies every interatomic distance by the same factor s, so in the Debye
sum every sinc(Q r) becomes sinc(Q s r): the interference of the strained clusters at Q is that of
the unstrained ones at Q s. Only the atomic form factors f(Q) do not move with the lattice. So ::

    I_s(Q) = I(Q s) F(Q) / F(Q s),    F(Q) = sum_sites o |f(Q)|^2 / sum_sites o

is the coherent pattern of the same clusters with lattice parameter a s: exact for the self terms
(sum N |f|^2) and, for the pair terms f_a f_b, correct to first order in s - 1 (a pair of species
whose form factors fall differently with Q is off by the difference of their logarithmic slopes
times s - 1: ~1e-3 of the interference term for s - 1 = 1e-3). The Debye-Waller damping of the pair
terms is left with F's: at s - 1 = 1e-3 it is a ~0.2 % change at 14 1/A. Compton scattering does
not depend on the structure and is not rescaled.

The library's strain variants of a population are the same clusters at 19 lattice parameters
(-0.25 to +0.51 % of bulk); training on them alone teaches a network those lattice parameters,
which real dots do not keep to. :func:`rescale_lattice` gives the training patterns lattice
parameters drawn from a wider continuum (``AugmentationSettings.strain_jitter``, the augmenter's
``with_lattice_jitter``), and the evaluation measures sizing with the held-out simulations' lattice
moved beyond the library's range (``with_lattice_change``).

Units: Q in 1/A; s is dimensionless (1.001 = lattice parameter 0.1 % larger).
"""
from __future__ import annotations

import numpy as np

from .form_factors import complex_form_factor
from .materials import CrystalStructure

__all__ = ["mean_squared_form_factor", "rescale_lattice"]

#: Rows interpolated at a time (keeps the temporaries of the gather small).
_CHUNK_ROWS = 64


def mean_squared_form_factor(structure: CrystalStructure, q: np.ndarray, wavelength_a: float | None) -> np.ndarray:
    """F(Q) = sum_sites o |f(Q)|^2 / sum_sites o over the unit cell's sites (electrons^2), f with anomalous
    dispersion at ``wavelength_a`` (None: f0 only), as in the DSE's self term."""
    q = np.asarray(q, dtype=float)
    total = np.zeros(q.size)
    for element, occupancy in zip(structure.elements, structure.occupancies):
        total += occupancy * np.abs(complex_form_factor(element, q, wavelength_a)) ** 2
    return total / float(np.sum(structure.occupancies))


def rescale_lattice(q: np.ndarray, crystal: np.ndarray, scale: np.ndarray, form_factor_sq: np.ndarray) -> np.ndarray:
    """Coherent patterns of the same clusters with every lattice parameter multiplied by ``scale`` (one per row).

    ``q``: equispaced grid (1/A); ``crystal``: (rows, len(q)) coherent patterns on it; ``form_factor_sq``: F(Q)
    on the grid (:func:`mean_squared_form_factor`). I(Q s) is read by cubic convolution (Keys, a = -1/2; exact
    for cubics, a peak keeps its width); beyond the grid's ends the end values are held. Returns float32.
    """
    q = np.asarray(q, dtype=np.float64)
    crystal = np.asarray(crystal)
    scale = np.asarray(scale, dtype=np.float64)
    if crystal.ndim != 2 or crystal.shape[1] != q.size or scale.shape != (crystal.shape[0],):
        raise ValueError(f"shapes q {q.shape}, crystal {crystal.shape}, scale {scale.shape}; accepted: q (n,), "
                         "crystal (rows, n), scale (rows,)")
    if not np.all((scale > 0.5) & (scale < 2.0)):
        raise ValueError(f"lattice scale factors {scale.min():.4g}..{scale.max():.4g}; accepted: 0.5 to 2")
    n = q.size
    h = (q[-1] - q[0]) / (n - 1)
    f_sq = np.asarray(form_factor_sq, dtype=np.float64)
    out = np.empty(crystal.shape, dtype=np.float32)
    for start in range(0, crystal.shape[0], _CHUNK_ROWS):
        s = scale[start:start + _CHUNK_ROWS, None]
        rows = np.asarray(crystal[start:start + _CHUNK_ROWS], dtype=np.float32)
        m = rows.shape[0]
        # two copies of the end values on each side: the four taps never leave a row
        padded = np.concatenate([rows[:, :1], rows[:, :1], rows, rows[:, -1:], rows[:, -1:]], axis=1).ravel()
        x = np.clip((q[None, :] * s - q[0]) / h, 0.0, n - 1.0)  # fractional grid index of Q s
        base = np.minimum(x.astype(np.int64), n - 2)
        t = (x - base).astype(np.float32)
        t2 = t * t
        t3 = t2 * t
        weights = ((-t3 + 2.0 * t2 - t) * 0.5, (3.0 * t3 - 5.0 * t2 + 2.0) * 0.5,
                   (-3.0 * t3 + 4.0 * t2 + t) * 0.5, (t3 - t2) * 0.5)
        index = base + (np.arange(m) * (n + 4) + 1)[:, None]  # padded position of tap -1
        acc = weights[0] * np.take(padded, index)
        for offset in (1, 2, 3):
            acc += weights[offset] * np.take(padded, index + offset)
        f_at = np.take(f_sq, base) * (1.0 - t) + np.take(f_sq, base + 1) * t  # F(Q s), linear between grid points
        out[start:start + m] = acc * (f_sq[None, :] / f_at)
    return out
