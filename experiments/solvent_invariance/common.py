"""Paths shared by the scripts of this experiment: the measured development set and the solvent blanks."""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MEASURED = SHARED / "measured"
SOLVENTS = SHARED / "solvents"
WAVELENGTH_A = 0.564162  # the synchrotron files' and the blanks' beamtime


def colloid(solvent: str) -> Path:
    """The 5.03 nm colloid measured in ``solvent`` (hexane or toluene)."""
    return MEASURED / f"PbS_synchr_wl0p564162A_5p03nm_{solvent}.xye"
