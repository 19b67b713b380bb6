"""The network's size of the two 5.03 nm colloids with their measured blank subtracted at 0-105 % of the scale the
DSE refinement finds (0 = as measured)."""
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.refine import refine_pattern
from qdots_bluesky.units import tth_to_q

from common import WAVELENGTH_A, colloids_with_blanks

pred = Predictor.from_bundle(device="numpy")
for name, p, blank in colloids_with_blanks():
    r = refine_pattern(p.x, p.y, p.sigma, wavelength_a=WAVELENGTH_A, blanks=[blank], solvent="none", keep_curves=False)
    scale = r.scales[f"blank_{blank.name}"]
    q = tth_to_q(p.x, WAVELENGTH_A)
    intensity, inside = blank.on(q)
    print(f"{name}: refined blank scale {scale:.3f}")
    for f in (0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 1.05):
        e = pred.predict_pattern(p.x[inside], (p.y - f * scale * intensity)[inside], x_unit="tth",
                                 wavelength=WAVELENGTH_A)
        print(f"  blank x {f:4.2f}: D_N {e.size_nm:.3f} +- {e.size_std_nm:.3f}, D_V {e.size_volume_nm:.3f}, "
              f"dispersion {e.dispersion:.3f}")
