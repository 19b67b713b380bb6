"""Which part of a measured colloid pattern moves the network's size: the DSE refinement's components (dots model,
blank, background, residual) fed to the network alone and in combinations, with the instrument resolution refined
(a Lorentzian of 0.013-0.014 1/A comes out over Q 0.8-16 1/A) and held at zero (a wider size distribution comes out instead)."""
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.refine import refine_pattern

from common import WAVELENGTH_A, colloids_with_blanks

pred = Predictor.from_bundle(device="numpy")
for name, p, blank in colloids_with_blanks():
    for instrument in (None, (0.0, 0.0)):
        r = refine_pattern(p.x, p.y, p.sigma, wavelength_a=WAVELENGTH_A, blanks=[blank], solvent="none",
                           keep_curves=True, instrument_fwhm=instrument, q_range=(0.8, 16.0))
        c = r.curves
        dots, solvent, bg = c.components["dots"], c.components[f"blank_{blank.name}"], c.components["background"]
        resid = c.observed - c.calculated
        print(f"{name}, instrument {'refined' if instrument is None else 'held at 0'}: refined D_N {r.size_nm:.3f}, "
              f"D_V {r.size_volume_nm:.3f}, dispersion {r.dispersion:.3f}, Lorentzian "
              f"{r.to_dict().get('instrument_lorentz_fwhm') or 0:.4f} 1/A")
        for label, y in (("observed", c.observed), ("dots model", dots), ("dots model + blank", dots + solvent),
                         ("dots model + background", dots + bg), ("observed - blank", c.observed - solvent),
                         ("dots model + residual", dots + resid)):
            e = pred.predict_pattern(c.q, y, x_unit="q")
            print(f"   {label:24s} D_N {e.size_nm:.3f} +- {e.size_std_nm:.3f}, D_V {e.size_volume_nm:.3f}, "
                  f"dispersion {e.dispersion:.3f}")
