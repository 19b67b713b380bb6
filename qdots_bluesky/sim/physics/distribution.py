"""Log-normal number distributions of diameter over the discrete clusters of a series."""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

#: Number weight below which a cluster is left out of a population (the rest is renormalised).
WEIGHT_CUTOFF = 1e-6
#: Largest cluster diameter (nm) used by default: the reference series stops at 20.9 nm (PbS n = 45).
DEFAULT_MAX_DIAMETER_NM = 21.0


def check_distribution(mean_nm: float, dispersion: float) -> None:
    """ValueError for a mean diameter that is not positive or a dispersion outside [0, 0.5)."""
    if mean_nm is None or not np.isfinite(mean_nm) or mean_nm <= 0:
        raise ValueError(f"mean diameter must be a positive number of nm, got {mean_nm!r}")
    if dispersion is None or not np.isfinite(dispersion) or not 0.0 <= dispersion < 0.5:
        raise ValueError(f"dispersion (relative standard deviation of the diameter) must be in [0, 0.5), got {dispersion!r}")


def lognormal_parameters(mean_nm: float, dispersion: float) -> tuple[float, float]:
    """(m, w) of ln(D) for a log-normal with mean mean_nm and relative std dispersion: w^2 = ln(1 + c^2)."""
    w2 = np.log1p(dispersion**2)
    return float(np.log(mean_nm) - w2 / 2.0), float(np.sqrt(w2))


def lognormal_number_weights(n: np.ndarray, unit_nm: float, mean_nm: float, dispersion: float) -> np.ndarray:
    """Number fraction of each series cluster n (diameter n * unit_nm) for a log-normal distribution.

    Each cluster takes the probability of the diameter interval [(n - 1/2), (n + 1/2)] * unit_nm,
    which stays well defined for distributions narrower than the cluster spacing. Dispersion 0 puts
    everything on the nearest cluster. Weights sum to 1.
    """
    check_distribution(mean_nm, dispersion)
    n = np.asarray(n, dtype=float)
    if dispersion == 0.0:
        w = np.zeros_like(n)
        w[np.argmin(np.abs(n * unit_nm - mean_nm))] = 1.0
        return w
    m, s = lognormal_parameters(mean_nm, dispersion)
    lo = np.log(np.maximum(n - 0.5, 1e-12) * unit_nm)
    hi = np.log((n + 0.5) * unit_nm)
    w = ndtr((hi - m) / s) - ndtr((lo - m) / s)
    w[w < WEIGHT_CUTOFF] = 0.0
    total = w.sum()
    if total <= 0:
        raise ValueError(f"no cluster of the series carries weight for mean {mean_nm} nm, dispersion {dispersion}")
    return w / total


def clusters_needed(unit_nm: float, mean_nm: float, dispersion: float,
                    max_diameter_nm: float = DEFAULT_MAX_DIAMETER_NM) -> np.ndarray:
    """Series indices n with n * unit_nm <= max_diameter_nm and non-negligible weight (computes nothing heavy).

    The distribution is truncated at the largest cluster (the reference series stops at 20.9 nm)
    and renormalised; a mean beyond the largest cluster is an error.
    """
    check_distribution(mean_nm, dispersion)
    max_n = max(1, int(np.floor(max_diameter_nm / unit_nm + 1e-9)))
    if mean_nm > (max_n + 0.5) * unit_nm:
        raise ValueError(f"mean diameter {mean_nm} nm is beyond the largest cluster used ({max_n * unit_nm:.2f} nm, "
                         f"n={max_n}); accepted: up to {max_diameter_nm} nm, or raise the maximum cluster diameter")
    if dispersion == 0.0:
        return np.array([max(1, int(round(mean_nm / unit_nm)))])
    n = np.arange(1, max_n + 1)
    return n[lognormal_number_weights(n, unit_nm, mean_nm, dispersion) > 0]
