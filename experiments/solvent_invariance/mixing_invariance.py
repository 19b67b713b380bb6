"""Is the network's size independent of how much solvent a simulated pattern holds? Library DSE patterns (5.0 nm,
dispersion 0.10, 19 lattice parameters) mixed at dots' area fraction f with the built-in solvent models (what
training uses) and with the measured blanks, SNR 300, sized with the instrument unknown.

    python experiments/solvent_invariance/mixing_invariance.py LIBRARY.h5 [DIAMETER_NM ...]
"""
import sys

import numpy as np

from qdots_bluesky.io import read_pattern
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.learning.augment import Augmenter
from qdots_bluesky.sim.learning.augment_settings import AugmentationSettings
from qdots_bluesky.sim.physics.library import load_library
from qdots_bluesky.units import tth_to_q

from common import SOLVENTS, WAVELENGTH_A

lib = load_library(sys.argv[1], grid="q")
diameters = [float(v) for v in sys.argv[2:]] or [5.0]
blanks = {}
for name in ("hexane", "toluene"):
    p = read_pattern(SOLVENTS / f"{name}.xye")
    blanks[name] = (tth_to_q(p.x, WAVELENGTH_A), np.asarray(p.y, float))
aug = Augmenter.from_library(lib, AugmentationSettings(), solvent_blanks=blanks)
pred = Predictor.from_bundle(device="numpy")
for diameter in diameters:
    idx = np.flatnonzero((np.abs(lib.mean_diameter_nm - diameter) < 1e-6) & (np.abs(lib.dispersion - 0.1) < 1e-6))
    print(f"{diameter} nm, dispersion 0.10: {idx.size} simulations; mean D_N at f =")
    for solvent in ("hexane", "blank:hexane", "toluene", "blank:toluene"):
        row = []
        for f in (0.2, 0.35, 0.5, 0.7, 1.0):
            x, _ = aug.fixed(idx, np.random.default_rng(0), fraction=f, snr=300.0, solvent=solvent, q_min=1.0,
                             q_max=15.0, n_points=0, lab=False, background=0.0)
            row.append(f"{f:.2f}: {np.mean([e.size_nm for e in pred.predict_standardized(x)]):.3f}")
        print(f"  {solvent:14s} " + "  ".join(row))
