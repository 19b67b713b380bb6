"""Reading and writing 1D powder patterns as text files (.xy, .xye, .dat, .chi, .csv)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np


def write_xy(path: str | Path, x: np.ndarray, y: np.ndarray, header: Mapping[str, object], columns: str = "x intensity") -> Path:
    """Write two columns (x, intensity) with a '#' header of ``key: value`` lines."""
    path = Path(path)
    lines = [f"{k}: {v}" for k, v in header.items()] + [f"columns: {columns}"]
    np.savetxt(path, np.column_stack([x, y]), fmt="%.8g", header="\n".join(lines), comments="# ")
    return path
