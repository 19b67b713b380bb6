"""A probe of the network's invariance: how far its size moves when 30 % of a built-in solvent model (the larger
shift of hexane and toluene) is mixed into the standardized pattern, on the measured files (as measured and with
the blank subtracted at the DSE refinement's scale) and on 1500 training-like draws of held-out simulations.

    python experiments/solvent_invariance/solvent_probe.py LIBRARY.h5
"""
import sys

import numpy as np
from qdots_bluesky.io import read_pattern
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.standardize import standardize_pattern
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.sim.physics.library import load_library
from qdots_bluesky.sim.learning.augment import Augmenter
from qdots_bluesky.sim.learning.augment_settings import AugmentationSettings
from qdots_bluesky.sim.learning.splits import split_by_simulation
from qdots_bluesky.refine import load_blank
from qdots_bluesky.units import tth_to_q

from common import MEASURED, SOLVENTS

pred = Predictor.from_bundle(device="numpy")
grid = pred.grid
S = {n: solvent_pattern(n, grid.q, wavelength_a=0.564162) for n in ("hexane", "toluene")}
S = {n: (s / s.mean()).astype(np.float32) for n, s in S.items()}
A = 0.3

def probe(X):
    base = pred.predict_standardized(X)
    d0 = np.array([e.size_nm for e in base]); s0 = np.array([e.size_std_nm for e in base])
    shifts = []
    for n, s in S.items():
        Xm = (1 - A) * X + A * s[None, :]
        shifts.append(np.array([e.size_nm for e in pred.predict_standardized(Xm)]) - d0)
    sh = np.max(np.abs(shifts), axis=0)
    return d0, s0, sh

for f in sorted(MEASURED.glob("*.xy*")):
    wl = 1.5406 if "_lab_" in f.name else 0.564162
    p = read_pattern(f)
    x, _ = standardize_pattern(p.x, p.y, x_unit="tth", wavelength=wl, grid=grid)
    d0, s0, sh = probe(x[None, :])
    line = f"{f.name[:42]:42s} D {d0[0]:.3f} +- {s0[0]:.3f} shift {sh[0]:.3f} ({sh[0]/s0[0]:.1f} sigma)"
    for n in ("hexane", "toluene"):
        if n in f.name and "synchr" in f.name:
            blank = load_blank(SOLVENTS / f"{n}.xye", None, default_wavelength_a=0.564162)
            q = tth_to_q(p.x, wl); bi, ins = blank.on(q)
            scale = {"hexane": 1.133, "toluene": 0.907}[n]
            xs, _ = standardize_pattern(p.x[ins], (p.y - scale * bi)[ins], x_unit="tth", wavelength=wl, grid=grid)
            d1, s1, sh1 = probe(xs[None, :])
            line += f" | subtracted D {d1[0]:.3f} +- {s1[0]:.3f} shift {sh1[0]:.3f} ({sh1[0]/s1[0]:.1f} sigma)"
    print(line)

lib = load_library(sys.argv[1], grid="q")
aug = Augmenter.from_library(lib, AugmentationSettings())
split = split_by_simulation(lib.population, 0, 0.2, 0.1)
rng = np.random.default_rng(5)
idx = rng.choice(split.test, 1500)
X, meta = aug.sample(idx, rng)
d0, s0, sh = probe(X)
nc = meta["fraction"] > 0
ratio = sh[nc] / s0[nc]
print("simulated (training-like draws, with nanocrystals):", nc.sum())
print("  |shift| nm quantiles 50/90/99/99.9:", np.round(np.quantile(sh[nc], [0.5, 0.9, 0.99, 0.999]), 3))
print("  |shift|/sigma quantiles 50/90/99/99.9:", np.round(np.quantile(ratio, [0.5, 0.9, 0.99, 0.999]), 2))
lab = meta["lab"][nc]
print("  lab |shift|/sigma 50/90/99:", np.round(np.quantile(ratio[lab], [0.5, 0.9, 0.99]), 2), "syn:", np.round(np.quantile(ratio[~lab], [0.5, 0.9, 0.99]), 2))
fr = meta["fraction"][nc]
for lo, hi in ((0.04, 0.1), (0.1, 0.3), (0.3, 1.01)):
    m = (fr >= lo) & (fr < hi) & ~lab
    print(f"  syn f {lo}-{hi}: n {m.sum()} |shift|/sigma 50/90/99 {np.round(np.quantile(ratio[m], [0.5, 0.9, 0.99]), 2)}")
