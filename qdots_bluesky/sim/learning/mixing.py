"""Solvent and background of the augmentation (steps 4 and 5 of :mod:`.augment`): the mixture a sample holds.

4. **Solvent**: a solvent S drawn from ``solvents`` (built-in models of
:func:`~qdots_bluesky.sim.physics.solvents.solvent_pattern`, at the library's wavelength, or at
K-alpha through step 3 for lab samples) and the measured blanks (``solvent_blanks`` files,
read with :func:`~qdots_bluesky.sim.physics.solvents.load_solvent_blank`, and blanks passed to the
Augmenter). As in the reference work, NC and S are each normalised to equal area on the
measured axis (mean over the measured points = 1) and mixed as ::

    Y = f NC / <NC> + (1 - f) S / <S>

with the nanocrystal area fraction f ~ log-uniform on ``fraction_range`` (synchrotron) or
uniform on ``lab_fraction_range`` (dried films have little or no solvent). With probability
``blank_fraction`` a sample is a *blank*: f = 0, pure solvent (plus background and noise), the
negative examples of the network's presence head (metadata ``fraction`` = 0). A share
``empty_blank_share`` of the blanks hold no solvent either (an empty capillary or a bare
substrate: the background of step 5 alone, always on, plus noise; metadata ``solvent`` = "empty").

5. **Background** (probability ``background_fraction``): Y += A [(1 - u)(1 + t x) + u h(Q)] with
A ~ U[``background_amplitude_range``] (relative to <Y> = 1), x the position in the measured
range scaled to [-1, 1], t ~ U[-0.5, 0.5], u ~ U[0, 1] and a capillary/glass-like hump
h(Q) = exp(-(Q - c)^2 / (2 w^2)), c ~ U[``hump_center_range``], w ~ U[``hump_width_range``].
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ...lru import LRUCache
from ...standardize import QGrid, standardize_batch
from ..physics.solvents import load_solvent_blank, solvent_names, solvent_pattern
from .augment_settings import AugmentationSettings

__all__ = ["SolventSet", "background", "mix"]


class SolventSet:
    """The solvents of an augmenter on the library grid, and on each measured axis (cached).

    In order: the built-in models of ``settings.solvents`` (at ``wavelength_a``, the library's), the blank files of
    ``settings.solvent_blanks`` and the ``solvent_blanks`` already read, {name: (q, intensity)} (Q in 1/A); each mean 1
    on the library grid. ``n_axes``: the number of measured axes (sizes the cache of solvents per axis).
    """

    def __init__(self, settings: AugmentationSettings, library_q: np.ndarray, lib_grid: QGrid, wavelength_a: float,
                 solvent_blanks: Mapping[str, tuple[np.ndarray, np.ndarray]] | None, n_axes: int):
        self.settings = settings
        self.q = library_q
        self.lib_grid = lib_grid
        self.names: list[str] = []
        self._solvent_lib: dict[str, np.ndarray] = {}
        self._solvent_is_blank: dict[str, bool] = {}
        known = set(solvent_names())
        for name in settings.solvents:
            if name not in known:
                raise ValueError(f"unknown built-in solvent {name!r}; accepted: {sorted(known)} (or a blank file)")
            self._add_solvent(name, solvent_pattern(name, library_q, wavelength_a=wavelength_a), blank=False)
        for path, x_unit, wl in settings.solvent_blanks:
            qb, ib = load_solvent_blank(path, x_unit=x_unit, wavelength_a=wl)
            self._add_blank(f"blank:{Path(path).stem}", qb, ib)
        for name, (qb, ib) in (solvent_blanks or {}).items():
            self._add_blank(name if str(name).startswith("blank:") else f"blank:{name}", np.asarray(qb, float),
                            np.asarray(ib, float))
        self._axis_solvent_cache: LRUCache[np.ndarray] = LRUCache(4 * n_axes * max(len(self.names), 1))

    def _add_solvent(self, name: str, y: np.ndarray, blank: bool) -> None:
        y = np.asarray(y, dtype=np.float64)
        if not np.all(np.isfinite(y)) or y.mean() <= 0:
            raise ValueError(f"solvent {name!r} has no positive intensity on the library Q range")
        self.names.append(name)
        self._solvent_lib[name] = (y / y.mean()).astype(np.float32)
        self._solvent_is_blank[name] = blank

    def _add_blank(self, name: str, qb: np.ndarray, ib: np.ndarray) -> None:
        # onto the library grid with the standardization itself: cell average, edge padding, mean 1
        y, _ = standardize_batch(qb, ib[None, :], x_unit="q", grid=self.lib_grid)
        self._add_solvent(name, y[0], blank=True)

    def rows(self, key, solvent_index, transform) -> np.ndarray | None:
        """Solvent ``solvent_index[i]`` of each sample on the axis of group ``key`` (mean 1; float32), through the
        axis's ``transform`` of library-grid patterns; None without solvents."""
        if not self.names:
            return None
        vecs = []
        for j in np.unique(solvent_index):
            ck = (key, int(j))
            v = self._axis_solvent_cache.get(ck)
            if v is None:
                v = np.asarray(transform(self.source(key, int(j))[None, :])[0], dtype=np.float32)
                v = v / v.mean()
                self._axis_solvent_cache.put(ck, v)
            vecs.append((j, v))
        out = np.empty((solvent_index.size, vecs[0][1].size), dtype=np.float32)
        for j, v in vecs:
            out[solvent_index == j] = v
        return out

    def source(self, key, j: int) -> np.ndarray:
        """Solvent j on the library grid; for lab axes the built-in models at K-alpha1."""
        name = self.names[j]
        if key[0] == "lab" and not self._solvent_is_blank[name]:
            lim = 4.0 * np.pi / max(self.settings.lab_wavelengths_a) * (1 - 1e-9)
            sel = self.q < lim
            y = np.zeros(self.q.size)
            y[sel] = solvent_pattern(name, self.q[sel], wavelength_a=self.settings.lab_wavelengths_a[0])
            return y
        return self._solvent_lib[name].astype(np.float64)


def background(qx: np.ndarray, p: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows with a background, their background) or None."""
    amp = p["background"][rows]
    on = np.flatnonzero(amp > 0)
    if on.size == 0:
        return None
    r = rows[on]
    qx = qx.astype(np.float32)
    x = (2.0 * (qx - qx[0]) / (qx[-1] - qx[0]) - 1.0)[None, :]
    tilt = p["_bg_tilt"][r, None].astype(np.float32)
    share = p["_bg_hump_share"][r, None].astype(np.float32)
    c = p["_bg_center"][r, None].astype(np.float32)
    w = p["_bg_width"][r, None].astype(np.float32)
    hump = np.exp(-0.5 * ((qx[None, :] - c) / w) ** 2)
    return on, amp[on, None].astype(np.float32) * ((1.0 - share) * (1.0 + tilt * x) + share * hump)


def mix(nc: np.ndarray, solvent_rows: np.ndarray | None, p: dict[str, np.ndarray], rows: np.ndarray,
        qx: np.ndarray) -> np.ndarray:
    """f NC/<NC> + (1-f) S/<S> + background; nc and solvent_rows are already mean-1 per row."""
    f = p["fraction"][rows, None].astype(np.float32)
    Y = f * nc
    if solvent_rows is not None:
        Y += ((1.0 - f) * ~p["_empty"][rows, None]) * solvent_rows  # an empty blank holds no solvent
    bg = background(qx, p, rows)
    if bg is not None:
        Y[bg[0]] += bg[1]
    return Y
