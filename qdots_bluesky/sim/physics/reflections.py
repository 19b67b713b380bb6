"""Bragg reflections of a crystal structure: families, multiplicities, Q positions, |F|^2.

Used by the augmentation (``sim/learning/laboratory.py``) to place the preferred-orientation correction of
a Debye-scattering-equation pattern, which is not itself a list of reflections.

How the list is built, for any :class:`~qdots_bluesky.sim.physics.materials.CrystalStructure`:

1. Reciprocal-lattice vectors G = 2 pi A^-T h (A: rows are the cell vectors; h integer) with
   q_min <= |G| <= q_max are enumerated on the cell as given (primitive or conventional).
2. The structure factor F(h) = sum_j o_j f_j(|G|) exp(-B_j s^2) exp(2 pi i h.x_j), s = |G|/4pi,
   is computed with the coherent form factors f0 (plus f', f'' at ``wavelength_a`` if given).
   Vectors with |F|^2 below ``1e-8 (sum_j o_j |f_j|)^2`` are systematic absences and dropped
   (for rock-salt PbS: h, k, l all even or all odd survive).
3. The symmetry operations (R, t) of the structure are found from the cell alone: integer
   matrices with entries -1, 0, 1 that keep the metric (the lattice point group of a reduced
   cell) and map every site onto a site of the same element with one common translation t.
   Reflections h and R^T h (and -h, Friedel) are equivalent; each orbit is one *family*, its
   size the multiplicity. Families that happen to share |G| (e.g. 333 and 511) stay separate.
4. Indices are reported on a conventional cell: for a cubic lattice (P, I or F, given as any
   cell) the cubic cell is found among short lattice vectors, so PbS built from its primitive
   rhombohedral cell lists 111, 200, 220, ...; other lattices keep the indices of the given cell.

Units: Q in 1/A, d in A, |F|^2 in electrons^2 per cell as given.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ...lru import LRUCache, array_key
from .form_factors import complex_form_factor
from .materials import CrystalStructure, get_structure

__all__ = [
    "Reflection",
    "bragg_reflections",
    "conventional_transform",
    "symmetry_operations",
    "march_dollase",
    "family_cosines",
    "family_march_dollase",
]

#: Relative |F|^2 below which a reflection counts as systematically absent.
ABSENCE_TOL = 1e-8


@dataclass(frozen=True)
class Reflection:
    """One family of symmetry-equivalent reflections.

    ``hkl``: representative indices on the conventional cell (the member with the most
    non-negative indices, then the lexicographically largest: 111, 200, 220, ...);
    ``multiplicity``: number of equivalent reciprocal-lattice vectors (Friedel pairs included);
    ``q``: |G| (1/A) of the unstrained structure; ``d``: 2 pi / q (A);
    ``f_squared``: |F|^2 per cell at q (electrons^2), Debye-Waller included;
    ``members``: (multiplicity, 3) conventional indices of all equivalent vectors;
    ``g_cart``: (multiplicity, 3) Cartesian reciprocal vectors (1/A), in the frame of the cell.
    """

    hkl: tuple[int, int, int]
    multiplicity: int
    q: float
    d: float
    f_squared: float
    members: np.ndarray = field(repr=False)
    g_cart: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        """Indices as a compact string, e.g. '111', '-1 0 2' when a digit > 9 or a sign occurs."""
        h = self.hkl
        if all(0 <= v <= 9 for v in h):
            return "".join(str(v) for v in h)
        return " ".join(str(v) for v in h)


#: Point groups of recent cells (the search over 3^9 matrices takes ~30 ms; a refinement asks once per model).
_POINT_GROUPS: LRUCache[np.ndarray] = LRUCache(16)


def _lattice_point_group(cell: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """Integer matrices R (entries -1, 0, 1) with R^T g R = g, g = A A^T (fractional, column vectors)."""
    ops = _POINT_GROUPS.get_or_compute((array_key(cell, 9), tol), lambda: _search_point_group(cell, tol))
    return ops.copy()


def _search_point_group(cell: np.ndarray, tol: float) -> np.ndarray:
    g = cell @ cell.T
    vals = np.array(list(itertools.product((-1, 0, 1), repeat=9)), dtype=float).reshape(-1, 3, 3)
    vals = vals[np.abs(np.linalg.det(vals)).round() == 1]
    gt = np.einsum("nji,jk,nkl->nil", vals, g, vals)
    scale = np.abs(g).max()
    ok = np.abs(gt - g).max(axis=(1, 2)) < tol * scale
    return vals[ok].astype(int)


def symmetry_operations(structure: CrystalStructure, tol: float = 1e-4) -> list[tuple[np.ndarray, np.ndarray]]:
    """The space-group operations (R, t) of the structure on its cell: x' = R x + t (fractional)."""
    frac = structure.fractional_positions
    kinds = np.array([f"{e}|{o:.6f}" for e, o in zip(structure.elements, structure.occupancies)])
    ops = []
    for R in _lattice_point_group(structure.cell):
        moved = frac @ R.T  # rows: R x_j
        candidates = frac[kinds == kinds[0]] - moved[0]
        for t in candidates:
            img = moved + t
            diff = img[:, None, :] - frac[None, :, :]
            diff -= np.round(diff)
            match = (np.abs(diff).max(axis=2) < tol) & (kinds[:, None] == kinds[None, :])
            if match.any(axis=1).all():
                ops.append((R, t - np.floor(t + tol)))
                break
    return ops


def conventional_transform(structure: CrystalStructure, tol: float = 1e-5) -> np.ndarray:
    """Integer matrix P whose rows give the conventional cell vectors as combinations of the cell's.

    Conventional reciprocal indices are k = P h for the cell's indices h. For a cubic lattice the
    shortest right-handed triple of mutually orthogonal lattice vectors of equal length (the cubic
    cell, found among combinations with coefficients -1, 0, 1) is returned, ordered to lie closest
    to x, y, z; otherwise the identity (indices of the given cell).
    """
    cell = structure.cell
    coeffs = np.array([c for c in itertools.product((-1, 0, 1), repeat=3) if any(c)], dtype=int)
    vecs = coeffs @ cell
    lengths = np.linalg.norm(vecs, axis=1)
    vol = abs(np.linalg.det(cell))
    best = None
    for length in np.unique(np.round(lengths, 6)):
        sel = np.flatnonzero(np.abs(lengths - length) < tol * max(length, 1.0))
        if sel.size < 3:
            continue
        for i, j, k in itertools.combinations(sel, 3):
            a, b, c = vecs[i], vecs[j], vecs[k]
            if max(abs(a @ b), abs(a @ c), abs(b @ c)) > tol * length**2:
                continue
            ratio = length**3 / vol
            if abs(ratio - round(ratio)) > 1e-4 or round(ratio) not in (1, 2, 4):
                continue
            trip = np.array([coeffs[i], coeffs[j], coeffs[k]])
            best = (trip, np.array([a, b, c]))
            break
        if best is not None:
            break
    if best is None:
        return np.eye(3, dtype=int)
    trip, v = best
    # order and sign the three axes to lie closest to Cartesian x, y, z (any choice is equivalent by symmetry)
    order = []
    for axis in range(3):
        rest = [r for r in range(3) if r not in order]
        order.append(max(rest, key=lambda r: abs(v[r, axis])))
    trip, v = trip[order], v[order]
    signs = np.sign(np.where(np.abs(np.diag(v)) > 1e-9, np.diag(v), 1.0)).astype(int)
    trip = trip * signs[:, None]
    if np.linalg.det(trip @ cell) < 0:
        trip[2] *= -1
    return trip


def bragg_reflections(structure: CrystalStructure | str, q_max: float, q_min: float = 0.0, *,
                      wavelength_a: float | None = None) -> list[Reflection]:
    """Reflection families with q_min <= Q <= q_max (1/A), sorted by Q, then by index.

    ``structure``: a CrystalStructure or a material name / CIF path for
    :func:`~qdots_bluesky.sim.physics.materials.get_structure`. ``wavelength_a`` adds anomalous
    dispersion to the form factors (A; None: f0 only). Raises ValueError for q_max <= q_min.
    """
    if isinstance(structure, str):
        structure = get_structure(structure)
    if not (np.isfinite(q_max) and q_max > max(q_min, 0.0)):
        raise ValueError(f"Q range {q_min}..{q_max} 1/A is empty; accepted: 0 <= q_min < q_max")
    cell = structure.cell
    recip = 2.0 * np.pi * np.linalg.inv(cell).T  # rows b_i, G = h @ recip
    bound = np.ceil(q_max * np.linalg.norm(cell, axis=1) / (2.0 * np.pi)).astype(int)
    grids = [np.arange(-b, b + 1) for b in bound]
    h = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, 3)
    g = h @ recip
    qn = np.linalg.norm(g, axis=1)
    keep = (qn <= q_max * (1 + 1e-12)) & (qn >= q_min) & (qn > 0)
    h, g, qn = h[keep], g[keep], qn[keep]
    if qn.size == 0:
        return []
    # structure factors
    s2 = (qn / (4.0 * np.pi)) ** 2
    phase = np.exp(2j * np.pi * (h @ structure.fractional_positions.T))  # (N, sites)
    f = np.stack([complex_form_factor(el, qn, wavelength_a) for el in structure.elements], axis=1)
    weights = f * structure.occupancies
    F = (weights * phase).sum(axis=1)
    F_dw = (weights * np.exp(-np.outer(s2, structure.b_iso)) * phase).sum(axis=1)
    scale = np.abs(weights).sum(axis=1) ** 2
    present = np.abs(F) ** 2 > ABSENCE_TOL * scale
    h, g, qn, F_dw = h[present], g[present], qn[present], F_dw[present]
    # symmetry orbits: h ~ R^T h ~ -h
    ops = symmetry_operations(structure)
    mats = np.array([R.T for R, _ in ops] + [-R.T for R, _ in ops])  # (n_ops, 3, 3)
    images = np.einsum("oij,nj->noi", mats, h)  # (N, n_ops, 3)
    span = int(np.abs(h).max()) + 1
    base = 2 * span + 1
    code = lambda a: ((a[..., 0] + span) * base + (a[..., 1] + span)) * base + (a[..., 2] + span)  # noqa: E731
    canon = code(images).max(axis=1)
    P = conventional_transform(structure)
    families: dict[int, list[int]] = {}
    for i, c in enumerate(canon):
        families.setdefault(int(c), []).append(i)
    out = []
    for members in families.values():
        idx = np.array(members)
        conv = h[idx] @ P.T
        # representative: most non-negative indices first, then lexicographically largest
        rep = max((tuple(int(v) for v in row) for row in conv), key=lambda t: (sum(v >= 0 for v in t), t))
        q0 = float(qn[idx].mean())
        out.append(Reflection(hkl=rep, multiplicity=int(idx.size), q=q0, d=2.0 * np.pi / q0,
                              f_squared=float(np.mean(np.abs(F_dw[idx]) ** 2)),
                              members=conv, g_cart=g[idx]))
    out.sort(key=lambda r: (round(r.q, 9), tuple(-v for v in r.hkl)))
    return out


def march_dollase(cos_alpha: np.ndarray, r: np.ndarray | float) -> np.ndarray:
    """March-Dollase factor (r^2 cos^2 a + sin^2 a / r)^(-3/2); r = 1 is a random powder.

    ``cos_alpha``: cosine of the angle between a reflection's vector and the orientation
    direction; r < 1 favours reflections along the direction (plates lying flat on a
    flat-plate sample with that normal), r > 1 disfavours them. Normalised: its average over
    all directions is 1 for every r.
    """
    c2 = np.clip(np.asarray(cos_alpha, dtype=float) ** 2, 0.0, 1.0)
    r = np.asarray(r, dtype=float)
    if np.any(r <= 0):
        raise ValueError(f"March-Dollase r must be positive; got {r}")
    return (r**2 * c2 + (1.0 - c2) / r) ** -1.5


def _direction_cart(structure: CrystalStructure, direction) -> np.ndarray:
    """Unit Cartesian vector of the reciprocal-lattice direction with conventional indices ``direction``."""
    d = np.asarray(direction, dtype=float)
    if d.shape != (3,) or not np.any(d):
        raise ValueError(f"orientation direction {direction!r} is invalid; accepted: three indices, not all 0, e.g. (1, 1, 1)")
    P = conventional_transform(structure)
    conv_cell = P @ structure.cell
    v = d @ (2.0 * np.pi * np.linalg.inv(conv_cell).T)
    return v / np.linalg.norm(v)


def family_cosines(structure: CrystalStructure | str, reflections: list[Reflection], direction) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the angles between all reflection vectors and ``direction``, with family offsets.

    Returns (cos_alpha (total members,), starts (len(reflections),)) for np.add.reduceat.
    """
    if isinstance(structure, str):
        structure = get_structure(structure)
    n = _direction_cart(structure, direction)
    g = np.concatenate([r.g_cart for r in reflections]) if reflections else np.zeros((0, 3))
    cos_a = (g @ n) / np.linalg.norm(g, axis=1) if g.size else np.zeros(0)
    starts = np.cumsum([0] + [r.multiplicity for r in reflections[:-1]]) if reflections else np.zeros(0, int)
    return cos_a, np.asarray(starts, dtype=int)


def family_march_dollase(structure: CrystalStructure | str, reflections: list[Reflection], direction,
                         r: np.ndarray | float, *, cosines: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Family-averaged March-Dollase factor P(hkl) = mean over equivalent vectors of march_dollase.

    ``direction``: conventional indices of the preferred-orientation vector, a reciprocal-lattice
    direction (the normal of the (hkl) planes lying parallel to the sample surface; for cubic
    crystals the same as the [uvw] direction). ``r``: scalar or array of shape (n,). Returns
    shape (len(reflections),) for scalar r, else (n, len(reflections)). ``cosines``: the result
    of :func:`family_cosines` for this direction, to skip recomputing it.
    """
    cos_a, starts = cosines if cosines is not None else family_cosines(structure, reflections, direction)
    r_arr = np.atleast_1d(np.asarray(r, dtype=float))
    if not reflections:
        out = np.zeros((r_arr.size, 0))
    else:
        md = march_dollase(cos_a[None, :], r_arr[:, None])
        mult = np.array([refl.multiplicity for refl in reflections], dtype=float)
        out = np.add.reduceat(md, starts, axis=1) / mult
    return out[0] if np.ndim(r) == 0 else out
