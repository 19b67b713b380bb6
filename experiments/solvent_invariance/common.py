"""Paths and data shared by the scripts of this experiment: the measured development set and the solvent blanks."""
import sys
from pathlib import Path

from qdots_bluesky.io import read_pattern
from qdots_bluesky.refine import load_blank

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MEASURED = SHARED / "measured"
SOLVENTS = SHARED / "solvents"
WAVELENGTH_A = 0.564162  # the synchrotron files' and the blanks' beamtime


def colloid(solvent: str) -> Path:
    """The 5.03 nm colloid measured in ``solvent`` (hexane or toluene)."""
    return MEASURED / f"PbS_synchr_wl0p564162A_5p03nm_{solvent}.xye"


def colloids_with_blanks():
    """(solvent name, measured pattern of the 5.03 nm colloid in it, the solvent's blank) for hexane and toluene;
    exits with a message where the shared data are missing."""
    if not SOLVENTS.is_dir():
        sys.exit(f"no data at {SOLVENTS}")
    for name in ("hexane", "toluene"):
        yield (name, read_pattern(colloid(name)),
               load_blank(SOLVENTS / f"{name}.xye", None, default_wavelength_a=WAVELENGTH_A))
