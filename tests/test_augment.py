"""Tests of the physics-informed augmentation (sim/learning/augment.py and the modules of its steps: augment_draws,
laboratory, mixing) and the reflection list (sim/physics/reflections.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qdots_bluesky.sim.learning.augment import AugmentationSettings, Augmenter
from qdots_bluesky.sim.physics.lattice_jitter import mean_squared_form_factor, rescale_lattice
from qdots_bluesky.sim.physics.library import LibrarySettings, build_library, load_library
from qdots_bluesky.sim.physics.materials import get_structure
from qdots_bluesky.sim.physics.instrument import CU_KA1_A, CU_KA2_A, lp_factor, polarization_factor
from qdots_bluesky.sim.physics.reflections import bragg_reflections, family_march_dollase
from qdots_bluesky.sim.physics.solvents import solvent_pattern
from qdots_bluesky.standardize import QGrid, standardize_batch
from qdots_bluesky.units import q_to_tth, tth_to_q

HEXANE = Path(__file__).resolve().parents[2] / "shared" / "data" / "solvents" / "hexane.xye"
if not HEXANE.exists():
    HEXANE = Path("/work/shared/data/solvents/hexane.xye")

Q = QGrid().q
A_PBS = 5.934
#: parameters that switch every random effect off
CLEAN = dict(fraction=1.0, snr=np.inf, q_min=1.0, q_max=15.0, n_points=0, lab=False, background=0.0)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    path = tmp_path_factory.mktemp("auglib") / "lib.h5"
    build_library(LibrarySettings(mean_diameters_nm=[3.0, 6.0], dispersions=[0.1], lattice_ratios=[1.0, 1.003],
                                  tth_grid_deg=None, q_grid=(1.0, 15.0, 5004)), path, progress=False)
    return load_library(path)


@pytest.fixture(scope="module")
def aug(library):
    return Augmenter.from_library(library, AugmentationSettings(solvents=["hexane"]))


def _synthetic(crystal_fn, compton_level=0.0, **settings):
    """An Augmenter on a made-up one-pattern library (crystal_fn(Q), constant Compton)."""
    crystal = crystal_fn(Q)[None, :].astype(np.float32)
    compton = np.full_like(crystal, compton_level)
    return Augmenter(Q, crystal, compton, AugmentationSettings(solvents=["hexane"], **settings))


# ---------------------------------------------------------------- API, determinism
def test_same_seed_same_output_different_seed_different(aug):
    idx = np.arange(aug.n_patterns).repeat(4)
    X1, m1 = aug.sample(idx, np.random.default_rng(7))
    X2, m2 = aug.sample(idx, np.random.default_rng(7))
    X3, _ = aug.sample(idx, np.random.default_rng(8))
    assert np.array_equal(X1, X2)
    for k in m1:
        assert np.array_equal(m1[k], m2[k], equal_nan=m1[k].dtype.kind == "f")
    assert not np.allclose(X1, X3)


def test_result_independent_of_thread_count(library):
    s1 = AugmentationSettings(solvents=["hexane"], n_threads=1)
    s2 = AugmentationSettings(solvents=["hexane"], n_threads=2)
    idx = np.arange(library.n_patterns).repeat(8)
    X1, _ = Augmenter.from_library(library, s1).sample(idx, np.random.default_rng(3))
    X2, _ = Augmenter.from_library(library, s2).sample(idx, np.random.default_rng(3))
    assert np.array_equal(X1, X2)


def test_shape_dtype_mean_and_metadata(library):
    aug = Augmenter.from_library(library)  # default settings: hexane, toluene, lab, truncation, coarse steps
    idx = np.arange(library.n_patterns).repeat(64)  # 256 samples = 16 blocks of shared axis draws
    X, meta = aug.sample(idx, np.random.default_rng(0))
    assert X.shape == (idx.size, 5004) and X.dtype == np.float32
    assert np.all(np.isfinite(X))
    np.testing.assert_allclose(X.mean(axis=1), 1.0, atol=1e-5)
    for key in ("fraction", "snr", "solvent", "q_min", "q_max", "n_points", "lab", "po_direction", "po_r"):
        assert len(meta[key]) == idx.size, key
    assert set(meta["solvent"]) <= {"hexane", "toluene", "empty"}
    assert meta["lab"].dtype == bool and meta["lab"].any() and (~meta["lab"]).any()
    blank = meta["fraction"] == 0  # blanks: pure solvent, or empty (a quarter of them)
    assert 0 < blank.sum() < 0.1 * idx.size
    assert np.all(blank[meta["solvent"] == "empty"])
    assert np.all((meta["fraction"][~blank] >= 0.04) & (meta["fraction"][~blank] <= 1.0))
    assert np.all((meta["snr"] >= 10) & (meta["snr"] <= 150))
    syn = ~meta["lab"]
    assert np.all(meta["q_max"][syn] >= 3.0 - 1e-9) and np.all(meta["q_min"][syn] <= 1.7 + 1e-9)
    assert np.all(meta["po_direction"][syn] == "") and np.all(meta["po_r"][syn] == 1.0)
    lab = meta["lab"]
    assert np.all(np.isin(meta["po_direction"][lab], ["110", "111", "100", ""]))
    np.testing.assert_allclose(meta["q_min"][lab], tth_to_q(20.0, CU_KA1_A))


def test_warm_up_builds_every_axis(library):
    from qdots_bluesky import standardize as std

    s = AugmentationSettings(solvents=["hexane"], q_max_step=4.0, q_min_step=0.7, coarse_q_max_step=6.0,
                             coarse_q_min_step=0.7, n_points_choices=[251], lab_tth_end_step=45.0,
                             truncate_low_fraction=0.5)
    aug = Augmenter.from_library(library, s)
    n = aug.warm_up()
    # Q_max {3, 7, 11, 15} x Q_min {1.0, 1.7}, less (1.7, 3) which is widened to (1.0, 3) (2 1/A needed);
    # coarse: Q_max {3, 9, 15} x Q_min {1.0, 1.7} less the same; lab: 2theta end {80, 125} x monochromator or not
    assert n == (4 * 2 - 1) + (3 * 2 - 1) + 2 * 2
    before = set(std._cache)
    X, meta = aug.sample(np.arange(library.n_patterns).repeat(128), np.random.default_rng(0))
    assert set(std._cache) <= before  # every axis drawn was built by warm_up
    assert meta["lab"].any() and (meta["n_points"] == 251).any()


def test_pickle_round_trip(aug):
    import pickle

    other = pickle.loads(pickle.dumps(aug))
    X1, _ = aug.sample([0, 1, 2, 3], np.random.default_rng(4))
    X2, _ = other.sample([0, 1, 2, 3], np.random.default_rng(4))
    assert np.array_equal(X1, X2)


def test_fixed_shares_the_other_draws(aug):
    idx = np.zeros(32, dtype=int)
    _, m1 = aug.sample(idx, np.random.default_rng(5))
    _, m2 = aug.fixed(idx, np.random.default_rng(5), fraction=0.3)
    assert np.all(m2["fraction"] == 0.3)
    assert np.array_equal(m1["snr"], m2["snr"]) and np.array_equal(m1["q_max"], m2["q_max"])


# ---------------------------------------------------------------- mixing and noise
def test_fraction_one_without_noise_is_the_standardized_clean_pattern(aug, library):
    idx = np.arange(library.n_patterns)
    X, meta = aug.fixed(idx, np.random.default_rng(1), **CLEAN)
    ref, _ = standardize_batch(library.q, library.total[idx], x_unit="q")
    np.testing.assert_allclose(X, ref, rtol=2e-6, atol=2e-6)
    assert np.all(meta["n_points"] == 5004) and np.all(np.isinf(meta["snr"]))


def test_fraction_zero_is_the_standardized_solvent(aug, library):
    X, meta = aug.fixed([0, 1], np.random.default_rng(1), **{**CLEAN, "fraction": 0.0}, solvent="hexane")
    ref, _ = standardize_batch(Q, solvent_pattern("hexane", Q, wavelength_a=0.56)[None, :], x_unit="q")
    np.testing.assert_allclose(X, np.repeat(ref, 2, axis=0), rtol=1e-5, atol=1e-5)
    assert list(meta["solvent"]) == ["hexane", "hexane"]


def test_mixing_is_area_weighted(aug, library):
    f = 0.37
    X, _ = aug.fixed([1], np.random.default_rng(1), **{**CLEAN, "fraction": f}, solvent="hexane")
    nc, _ = standardize_batch(Q, library.total[[1]], x_unit="q")
    sv, _ = standardize_batch(Q, solvent_pattern("hexane", Q, wavelength_a=0.56)[None, :], x_unit="q")
    np.testing.assert_allclose(X, f * nc + (1 - f) * sv, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("snr", [14.0, 122.0])
def test_measured_snr_matches_request(aug, snr):
    """Whole-pattern SNR: the mean point holds SNR^2 counts, so var(X - clean) = clean * mean(clean) / SNR^2."""
    idx = np.ones(8, dtype=int)
    clean, _ = aug.fixed(idx[:1], np.random.default_rng(0), **CLEAN)
    X, _ = aug.fixed(idx, np.random.default_rng(2), **{**CLEAN, "snr": snr})
    resid = X.astype(float) - clean.astype(float)
    k = np.mean(resid**2 / clean)  # Poisson: variance proportional to the expected value
    measured = np.sqrt(clean.mean() / k)
    assert measured == pytest.approx(snr, rel=0.15)
    # the noise is unbiased
    assert abs(np.mean(resid)) < 5 * np.sqrt(k / resid.size)


def test_lattice_jitter_gives_the_chosen_patterns_their_own_lattice_parameter(aug, library):
    """with_lattice_jitter: a copy in which the chosen patterns' lattice parameters change within +-strain_jitter
    (each its own; Compton unchanged), the others and the original untouched; the library's 1.003 lattice ratio
    is what the 1.0 pattern rescaled by 0.3 % gives."""
    original = aug.crystal.copy()
    jittered = aug.with_lattice_jitter(np.random.default_rng(0), [0, 2])
    change = (1.0 + jittered.strain) / (1.0 + aug.strain) - 1.0
    assert np.all(np.abs(change[[0, 2]]) <= aug.settings.strain_jitter) and np.all(change[[0, 2]] != 0)
    assert change[0] != change[2] and np.all(change[[1, 3]] == 0)
    np.testing.assert_array_equal(jittered.crystal[[1, 3]], aug.crystal[[1, 3]])
    assert not np.array_equal(jittered.crystal[0], aug.crystal[0])
    np.testing.assert_array_equal(aug.crystal, original)
    np.testing.assert_allclose(jittered.total - jittered.crystal, aug.compton, atol=1e-3 * aug.compton.max())
    # the copy draws patterns as the original does, from its own lattice
    X, _ = jittered.fixed([1, 0], np.random.default_rng(1), **CLEAN)
    X0, _ = aug.fixed([1, 0], np.random.default_rng(1), **CLEAN)
    np.testing.assert_array_equal(X[0], X0[0])
    assert np.abs(X[1] - X0[1]).max() > 1e-3
    # a 0.3 % larger lattice of the 1.0 pattern is the library's 1.003 pattern of the same population
    lo, hi = (np.flatnonzero(np.isclose(library.strain, e) & (library.population == library.population[0]))[0]
              for e in (0.0, 0.003))
    form_factor_sq = mean_squared_form_factor(get_structure("PbS"), library.q, 0.56)
    moved = rescale_lattice(library.q, library.crystal[[lo]], np.array([1.003]), form_factor_sq)[0]
    error = np.sqrt(np.mean((moved - library.crystal[hi])[Q < 14.9] ** 2))
    change_rms = np.sqrt(np.mean((library.crystal[lo] - library.crystal[hi])[Q < 14.9] ** 2))
    assert error < 0.05 * change_rms


def test_lattice_jitter_off_and_bad_setting(library):
    off = Augmenter.from_library(library, AugmentationSettings(solvents=["hexane"], strain_jitter=0.0))
    assert off.with_lattice_jitter(np.random.default_rng(0)) is off
    with pytest.raises(ValueError, match="strain_jitter=0.5; accepted: 0 to 0.02"):
        AugmentationSettings(strain_jitter=0.5)


def test_lattice_change_one_fraction_for_the_chosen_patterns(aug):
    changed = aug.with_lattice_change(0.01, [1, 3])
    np.testing.assert_allclose((1 + changed.strain) / (1 + aug.strain) - 1, [0, 0.01, 0, 0.01], atol=1e-12)
    np.testing.assert_array_equal(changed.crystal[[0, 2]], aug.crystal[[0, 2]])
    # a 1 % larger lattice puts the strongest peak (the (200) of PbS near 2.12 1/A) at a 1 % lower Q
    peak = (Q > 1.9) & (Q < 2.4)
    q_before = Q[peak][np.argmax(aug.crystal[1, peak])]
    q_after = Q[peak][np.argmax(changed.crystal[1, peak])]
    assert q_after == pytest.approx(q_before / 1.01, abs=2 * (Q[1] - Q[0]))
    assert aug.with_lattice_change(0.0) is aug
    with pytest.raises(ValueError, match="accepted: within"):
        aug.with_lattice_change(0.2)


# ---------------------------------------------------------------- axes
def test_truncation_pads_with_mean_of_five_outermost_points(aug):
    X, meta = aug.fixed([0], np.random.default_rng(3), **{**CLEAN, "q_max": 4.0, "snr": 50.0})
    q_top = meta["q_max"][0]
    assert q_top == pytest.approx(4.0, abs=0.002)
    above = Q > q_top + 1e-9
    inside = np.flatnonzero(~above)
    pad = X[0, inside[-5:]].mean()
    np.testing.assert_allclose(X[0, above], pad, rtol=1e-5)
    assert np.ptp(X[0, ~above]) > 0.1


def test_low_q_truncation_and_coarse_steps(aug):
    X, meta = aug.fixed([0, 1], np.random.default_rng(3), **{**CLEAN, "q_min": 1.5, "n_points": 251})
    assert np.all(meta["n_points"] == 251)
    below = Q < meta["q_min"][0] - 1e-9
    assert below.any() and np.ptp(X[0, below]) < 1e-5
    np.testing.assert_allclose(X.mean(axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- laboratory case
def test_kalpha2_shoulder_at_wavelength_ratio():
    q0, width = 6.5, 0.003
    aug = _synthetic(lambda q: 1.0 + 50.0 * np.exp(-0.5 * ((q - q0) / width) ** 2))
    X, meta = aug.fixed([0], np.random.default_rng(0), **{**CLEAN, "lab": True}, po_r=1.0, tth_max=125.0,
                        monochromator=False, instrument_fwhm_deg=(0, 0))
    x = X[0]
    near = (Q > q0 - 0.05) & (Q < q0 + 0.05)
    qn, xn = Q[near], x[near]
    peaks = [i for i in range(1, xn.size - 1) if xn[i] > xn[i - 1] and xn[i] >= xn[i + 1] and xn[i] > 3]
    assert len(peaks) == 2
    q1, q2 = qn[peaks[0]], qn[peaks[1]]
    step = Q[1] - Q[0]
    assert q1 == pytest.approx(q0, abs=step)
    assert q2 == pytest.approx(q0 * CU_KA2_A / CU_KA1_A, abs=step)
    base = x[(Q > 5.5) & (Q < 6.0)].mean()
    ratio = (xn[peaks[1]] - base) / (xn[peaks[0]] - base)
    assert ratio == pytest.approx(0.5, abs=0.08)
    assert bool(meta["lab"][0]) and meta["n_points"][0] == 5251


@pytest.mark.parametrize("lorentz", [False, True])
def test_lab_intensity_follows_the_instrument_factor(lorentz):
    """A flat pattern measured in the lab comes out as the polarization (or full LP) factor over Q."""
    aug = _synthetic(lambda q: np.ones_like(q), lab_lorentz=lorentz, lab_ka2_ratio=0.0)
    X, _ = aug.fixed([0], np.random.default_rng(0), **{**CLEAN, "lab": True}, po_r=1.0, tth_max=120.0,
                     monochromator=False, instrument_fwhm_deg=(0, 0))
    sel = (Q > 1.5) & (Q < 6.9)
    tth = q_to_tth(Q[sel], CU_KA1_A)
    expect = lp_factor(tth) if lorentz else polarization_factor(tth)
    ratio = X[0, sel] / expect
    assert np.ptp(ratio) / ratio.mean() < 2e-3


# ---------------------------------------------------------------- preferred orientation


def test_po_along_100_raises_200_over_111(aug, library):
    """Along <100>, 2 of the 6 (200) vectors lie on the normal (factor r^-3) and 4 across it (r^1.5),
    so P(200) = r^-3/3 + 2 r^1.5/3 >= 1; all 8 (111) lie at 54.7 deg, P(111) = (r^2/3 + 2/(3r))^-1.5 <= 1.
    Hence I(200)/I(111) rises for r < 1 (plates with {100} faces flat on the holder; and, for a
    cubic crystal, also for r > 1)."""
    refl = bragg_reflections("PbS", 3.0)
    r = np.array([0.7, 1.0, 1.3])
    p = family_march_dollase("PbS", refl, (1, 0, 0), r)
    assert [x.hkl for x in refl[:2]] == [(1, 1, 1), (2, 0, 0)]
    np.testing.assert_allclose(p[:, 1], r**-3 / 3 + 2 * r**1.5 / 3)
    np.testing.assert_allclose(p[:, 0], (r**2 / 3 + 2 / (3 * r)) ** -1.5)
    r200_111 = p[:, 1] / p[:, 0]
    assert r200_111[0] > 1.5 and r200_111[1] == pytest.approx(1.0)
    i = int(np.flatnonzero((library.mean_diameter_nm == 6.0) & (library.strain == 0.0))[0])
    opts = {**CLEAN, "lab": True, "tth_max": 100.0, "monochromator": False, "po_direction": "100"}
    X_rand, _ = aug.fixed([i], np.random.default_rng(0), **{**opts, "po_r": 1.0})
    X_tex, meta = aug.fixed([i], np.random.default_rng(0), **{**opts, "po_r": 0.7})
    assert meta["po_direction"][0] == "100" and meta["po_r"][0] == 0.7

    def height(x, q):
        return x[np.abs(Q - q) < 0.02].max()

    q111, q200 = 2 * np.pi * np.sqrt(3) / A_PBS, 4 * np.pi / A_PBS
    ratio_rand = height(X_rand[0], q200) / height(X_rand[0], q111)
    ratio_tex = height(X_tex[0], q200) / height(X_tex[0], q111)
    assert ratio_tex > 1.1 * ratio_rand
    X_one, _ = aug.fixed([i], np.random.default_rng(0), **{**opts, "po_r": 1.0, "po_direction": "111"})
    np.testing.assert_array_equal(X_one, X_rand)  # r = 1 is the identity, whatever the direction


# ---------------------------------------------------------------- measured blanks
@pytest.mark.skipif(not HEXANE.exists(), reason="shared solvent data (hexane.xye) not available")
def test_measured_blank_as_solvent(library):
    s = AugmentationSettings(solvents=[], solvent_blanks=[(str(HEXANE), "tth", 0.564162)], lab_fraction=0.0)
    aug = Augmenter.from_library(library, s)
    X, meta = aug.fixed([0, 1], np.random.default_rng(0), **{**CLEAN, "fraction": 0.0})
    assert list(meta["solvent"]) == ["blank:hexane"] * 2
    model = standardize_batch(Q, solvent_pattern("hexane", Q, 0.564162)[None, :], x_unit="q")[0][0]
    assert np.corrcoef(X[0], model)[0, 1] > 0.8  # the physics model resembles the measured blank


# ---------------------------------------------------------------- blanks and axis blocks
def test_blank_samples_are_pure_solvent(library):
    aug = Augmenter.from_library(library, AugmentationSettings(solvents=["hexane"], blank_fraction=0.5, empty_blank_share=0.0,
                                                               snr_range=(1e9, 1e9), background_fraction=0.0,
                                                               lab_fraction=0.0, truncate_high_fraction=0.0,
                                                               truncate_low_fraction=0.0, coarsen_fraction=0.0))
    X, meta = aug.sample(np.zeros(400, dtype=int), np.random.default_rng(3))
    blank = meta["fraction"] == 0
    assert 150 < blank.sum() < 250  # about half
    assert np.all(meta["fraction"][~blank] >= 0.04)
    ref, _ = standardize_batch(Q, solvent_pattern("hexane", Q, wavelength_a=0.56)[None, :], x_unit="q")
    # SNR 1e9: the noise is far below the tolerance; a blank is the standardized solvent whatever the library pattern
    np.testing.assert_allclose(X[blank], np.repeat(ref, blank.sum(), axis=0), rtol=1e-3, atol=1e-3)
    assert np.abs(X[~blank] - ref).max() > 0.1


def test_empty_blanks_are_background_alone(library):
    kw = dict(solvents=["hexane"], blank_fraction=0.4, empty_blank_share=0.5, snr_range=(1e9, 1e9),
              background_fraction=0.0, lab_fraction=0.0, truncate_high_fraction=0.0, truncate_low_fraction=0.0,
              coarsen_fraction=0.0, hump_center_range=(1.5, 1.5), hump_width_range=(0.4, 0.4))
    aug = Augmenter.from_library(library, AugmentationSettings(**kw))
    X, meta = aug.sample(np.zeros(500, dtype=int), np.random.default_rng(4))
    empty = meta["solvent"] == "empty"
    assert 70 < empty.sum() < 130  # a fifth: half of the 40 % blanks
    assert np.all(meta["fraction"][empty] == 0) and np.all(meta["background"][empty] == 1.0)
    # no solvent, no nanocrystals: each is a tilted line plus the glass hump at 1.5 1/A, nothing else
    x = 2.0 * (Q - Q[0]) / (Q[-1] - Q[0]) - 1.0
    hump = np.exp(-0.5 * ((Q - 1.5) / 0.4) ** 2)
    basis = np.stack([np.ones_like(Q), x, hump], axis=1)
    coef, *_ = np.linalg.lstsq(basis, X[empty].T.astype(np.float64), rcond=None)
    np.testing.assert_allclose(basis @ coef, X[empty].T, atol=2e-3)
    # fixed(solvent="empty") gives empty blanks whatever the draws; a named solvent gives none
    _, m = aug.fixed(np.zeros(50, dtype=int), np.random.default_rng(5), solvent="empty")
    assert np.all(m["solvent"] == "empty") and np.all(m["fraction"] == 0)
    _, m = aug.fixed(np.zeros(50, dtype=int), np.random.default_rng(5), solvent="hexane", fraction=0.0)
    assert np.all(m["solvent"] == "hexane")


def test_no_blanks_without_solvents(library):
    aug = Augmenter.from_library(library, AugmentationSettings(solvents=[], blank_fraction=1.0))
    _, meta = aug.sample(np.zeros(20, dtype=int), np.random.default_rng(0))
    assert np.all(meta["fraction"] == 1.0)


def test_axis_draws_are_shared_by_blocks(library):
    kw = dict(solvents=["hexane"], lab_fraction=0.3, coarsen_fraction=0.5, truncate_high_fraction=0.5)
    blocked = Augmenter.from_library(library, AugmentationSettings(axis_block_size=8, **kw))
    single = Augmenter.from_library(library, AugmentationSettings(axis_block_size=1, **kw))
    idx = np.zeros(64, dtype=int)
    _, mb = blocked.sample(idx, np.random.default_rng(2))
    _, ms = single.sample(idx, np.random.default_rng(2))
    axis = np.column_stack([mb["q_min"], mb["q_max"], mb["n_points"], mb["lab"]])
    for start in range(0, 64, 8):
        assert np.all(axis[start:start + 8] == axis[start])
    assert len({tuple(r) for r in axis}) <= 8
    single_axes = np.column_stack([ms["q_min"], ms["q_max"], ms["n_points"], ms["lab"]])
    assert len({tuple(r) for r in single_axes}) > 8
    # the per-sample draws (fraction, SNR) are not shared
    assert len(np.unique(mb["snr"])) == 64
    with pytest.raises(ValueError, match="axis_block_size"):
        AugmentationSettings(axis_block_size=0)
    with pytest.raises(ValueError, match="blank_fraction"):
        AugmentationSettings(blank_fraction=1.5)


def test_free_texture_scales_each_reflection_family(library):
    """With free per-family texture, patterns of the same population differ in their peak ratios, not elsewhere."""
    settings = AugmentationSettings(lab_fraction=1.0, po_fraction=1.0, po_family_fraction=1.0,
                                    po_family_sigma_range=(0.5, 0.5), solvents=[], blank_fraction=0.0,
                                    background_fraction=0.0, noise_free_fraction=1.0,
                                    lab_gauss_fwhm_deg_range=(0.0, 0.0), lab_lorentz_fwhm_deg_range=(0.0, 0.0),
                                    lab_tth_end_range=(80.0, 80.0))
    aug = Augmenter.from_library(library, settings)
    x, meta = aug.sample(np.zeros(8, dtype=int), np.random.default_rng(0))
    assert meta["lab"].all()
    spread = x.std(axis=0) / x.mean(axis=0)
    assert spread.max() > 0.1  # peak heights vary from draw to draw
