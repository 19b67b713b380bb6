"""Training data for metal-cluster shape + size models: populations, targets, held-out clusters, augmentation."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qdots_bluesky.sim.learning.metal_augment import (
    MASK_FILL,
    MetalAugmenter,
    MetalAugmentSettings,
    counting_noise,
    network_input,
    q_mask,
    smearing_matrix,
    waxs_level,
)
from qdots_bluesky.sim.learning.metal_sources import (
    MetalPopulationRanges,
    MetalSource,
    population_bases,
    split_dispersion_range,
    split_basis,
    strained,
)
from qdots_bluesky.sim.learning.sources import BatchProducer, draw_set
from qdots_bluesky.sim.physics.metal_basis import build_metal_basis, saxs_waxs_q

Q = saxs_waxs_q(0.05, 8.0, 300)
FAMILIES = ("icosahedron", "decahedron", "truncated_octahedron")


@pytest.fixture(scope="module")
def bases():
    return [build_metal_basis("Au", family, Q, 1.0, 2.5) for family in FAMILIES]


@pytest.fixture(scope="module")
def augmenter():
    return MetalAugmenter(Q)


@pytest.fixture(scope="module")
def clean_off():
    return MetalAugmenter(Q, settings=MetalAugmentSettings().off())


def moments(weights: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
    mean = weights @ d
    return mean, np.sqrt(weights @ d**2 - mean**2) / mean, (weights @ d**4) / (weights @ d**3)


def test_targets_follow_the_drawn_populations(bases, augmenter):
    source = MetalSource(bases, augmenter, 200, MetalPopulationRanges(mixture_share=0.5), part="all")
    patterns, t, pops = source.populations(np.random.default_rng(1))
    p = t["family_probabilities"]
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    single = pops["family"][:, 0] == pops["family"][:, 1]
    assert 0 < single.sum() < 200 and np.all(p[single].max(axis=1) == 1.0)
    mixed = np.flatnonzero(~single)
    np.testing.assert_allclose(p[mixed, pops["family"][mixed, 0]], pops["fraction"][mixed], rtol=1e-6)
    for row in np.flatnonzero(single)[:20]:  # targets and pattern from the same cluster weights
        basis = bases[pops["family"][row, 0]]
        w = basis.weights(pops["mean_nm"][row, :1], pops["dispersion"][row, :1])[0]
        mean, disp, volume = moments(w, basis.diameter_nm)
        assert t["diameter_nm"][row] == pytest.approx(mean, rel=1e-5)
        assert t["dispersion"][row] == pytest.approx(disp, rel=1e-4, abs=1e-6)
        assert t["volume_diameter_nm"][row] == pytest.approx(volume, rel=1e-5)
        np.testing.assert_allclose(patterns[row], w @ (basis.crystal + basis.compton), rtol=1e-10)
    row = mixed[0]  # a mixture: moments of both components by number fraction
    f, (a, b) = pops["fraction"][row], (bases[i] for i in pops["family"][row])
    wa = a.weights(pops["mean_nm"][row, :1], pops["dispersion"][row, :1])[0]
    wb = b.weights(pops["mean_nm"][row, 1:], pops["dispersion"][row, 1:])[0]
    mean = f * wa @ a.diameter_nm + (1 - f) * wb @ b.diameter_nm
    assert t["diameter_nm"][row] == pytest.approx(mean, rel=1e-5)
    assert np.all(t["volume_diameter_nm"] >= t["diameter_nm"] - 1e-6)
    assert np.all(t["dispersion"][single] <= 0.5)
    np.testing.assert_allclose(t["continuous"][:, 0], np.log(t["diameter_nm"]), rtol=1e-6)


def test_drawn_sets_are_reproducible_from_a_seed(bases, augmenter):
    source = MetalSource(bases, augmenter, 16)
    a, b, c = draw_set(source, seed=7), draw_set(source, seed=7), draw_set(source, seed=8)
    assert a.x.shape == (16, 2, Q.size) and a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)
    for key in a.targets:
        np.testing.assert_array_equal(a.targets[key], b.targets[key])
    assert not np.array_equal(a.x, c.x)
    batches = list(BatchProducer(source, batch_size=8, n_batches=2, seed=3))
    assert len(batches) == 2 and batches[0][1].shape == (8, 2, Q.size)
    assert set(batches[0][0]) >= {"family_probabilities", "diameter_nm", "volume_diameter_nm", "dispersion"}


def test_held_out_clusters_never_reach_training(bases, augmenter):
    for basis in bases:
        train, test = split_basis(basis, "train"), split_basis(basis, "test")
        assert not set(train.params) & set(test.params)
        assert set(train.params) | set(test.params) == set(basis.params)
        assert len(test.params) == pytest.approx(len(basis.params) / 5, abs=1)
    source = MetalSource(bases, augmenter, 8, part="test")
    assert [b.params for b in source.bases] == [split_basis(b, "test").params for b in bases]


def test_polydisperse_held_out_populations_of_a_sparse_family_come_from_its_whole_series(bases):
    """Held-out clusters too far apart to form a population (1-2.5 nm: one icosahedron, two truncated octahedra 49 %
    apart) give way to the whole series for polydisperse populations only; dense families (six decahedra 13 % apart)
    and monodisperse or training populations keep their split."""
    poly = population_bases(bases, "test", polydisperse=True)
    whole = {"icosahedron": True, "decahedron": False, "truncated_octahedron": True}
    for b, p in zip(bases, poly):
        assert p.params == (b.params if whole[b.family] else split_basis(b, "test").params)
    for part, polydisperse in (("test", False), ("train", True), ("train", False)):
        assert [p.params for p in population_bases(bases, part, polydisperse=polydisperse)] == [
            split_basis(b, part).params for b in bases]


def test_strain_moves_a_peak_by_the_lattice_change():
    q = saxs_waxs_q(1.0, 4.0, 4000)
    peak = np.exp(-0.5 * ((q - 2.67) / 0.02) ** 2)[None, :]
    moved = strained(q, np.repeat(peak, 2, axis=0), np.array([0.0, 0.01]), np.ones(q.size))
    np.testing.assert_allclose(moved[0], peak[0], atol=1e-12)
    assert q[np.argmax(moved[1])] == pytest.approx(2.67 / 1.01, abs=1e-3)


def test_counting_noise_variance_follows_the_counts():
    rng = np.random.default_rng(0)
    y = np.full((4000, 20), 2.0)
    noisy = counting_noise(y, np.ones(4000), np.full(4000, 100.0), rng)
    assert noisy.mean() == pytest.approx(2.0, rel=2e-3)
    assert noisy.var() == pytest.approx(2.0 / 100.0, rel=0.03)  # y x level / counts per point


def test_smearing_keeps_the_integral_and_widens_a_peak():
    q = saxs_waxs_q(0.02, 1.0, 3000)
    peak = np.exp(-0.5 * ((q - 0.3) / 0.005) ** 2)
    smeared = smearing_matrix(q, 0.01) @ peak
    assert np.trapezoid(smeared, q) == pytest.approx(np.trapezoid(peak, q), rel=2e-3)
    width = np.sqrt(np.trapezoid(smeared * (q - 0.3) ** 2, q) / np.trapezoid(smeared, q))
    assert width == pytest.approx(np.hypot(0.005, 0.01), rel=0.02)
    flat = smearing_matrix(q, 0.01) @ np.ones(q.size)
    np.testing.assert_allclose(flat, 1.0)  # level kept at the grid's ends


def test_q_masks_cover_what_each_detector_measured():
    mask = q_mask(Q, np.array([0, 1, 2, 3]), np.full(4, 0.5), np.full(4, 1.5), np.full(4, 0.3))
    assert mask[0].all()
    np.testing.assert_array_equal(mask[1], Q <= 0.5)
    np.testing.assert_array_equal(mask[2], Q >= 1.5)
    np.testing.assert_array_equal(mask[3], (Q <= 0.5) | (Q >= 0.8))


def test_each_effect_does_what_it_says(bases, clean_off):
    clean = (bases[1].crystal + bases[1].compton)[:3]
    rng = np.random.default_rng(0)
    p = clean_off.draw(3, rng)
    base, mask = clean_off.augment(clean, p, rng)
    assert mask.all()
    np.testing.assert_allclose(base, clean, rtol=1e-5)  # everything off (1e12 counts per point)
    w = waxs_level(Q, clean)

    def changed(**values):
        return clean_off.augment(clean, p | {k: np.full(3, v) for k, v in values.items()}, rng)

    np.testing.assert_allclose(changed(flat_background=0.2)[0] - base, 0.2 * w[:, None] * np.ones_like(base), rtol=1e-4)
    for r in (0.1, -0.1):
        residual = changed(solvent_residual=r)[0] - base
        np.testing.assert_allclose(residual, r * w[:, None] * clean_off.liquids[p["solvent"]], rtol=1e-4)
    low_q = changed(low_q_background=0.1, low_q_exponent=3.0)[0] - base
    np.testing.assert_allclose(low_q, 0.1 * clean[:, :1] * (Q / Q[0]) ** -3.0, rtol=1e-4)
    np.testing.assert_allclose(changed(scale=10.0)[0], 10 * base, rtol=1e-5)
    saxs, saxs_mask = changed(mask_mode=1, saxs_end_q=0.5)
    assert np.all(saxs[:, Q > 0.5] == MASK_FILL) and not saxs_mask[:, Q > 0.5].any() and saxs_mask[:, Q <= 0.5].all()
    gap, gap_mask = changed(mask_mode=3, saxs_end_q=0.5, gap_width_q=0.5)
    assert not gap_mask[:, (Q > 0.5) & (Q < 1.0)].any() and gap_mask[:, Q >= 1.0].all()
    x = network_input(saxs, saxs_mask)
    np.testing.assert_array_equal(x[:, 1], saxs_mask)
    assert np.all(x[:, 0][~saxs_mask] == MASK_FILL)


def test_default_augmentation_gives_finite_inputs(bases, augmenter):
    x, meta = augmenter.with_patterns(bases[0].crystal + bases[0].compton).sample(np.arange(len(bases[0].params)),
                                                                                  np.random.default_rng(2))
    assert np.all(np.isfinite(x)) and set(np.unique(x[:, 1])) <= {0.0, 1.0}
    assert np.all(meta["smearing_sigma_q"] >= 0.001 - 1e-12) and np.all(meta["smearing_sigma_q"] <= 0.01 + 1e-12)


@pytest.mark.parametrize("call, accepted", [
    (lambda: MetalAugmentSettings(smearing_sigma_q=(0.01, 0.001)), "accepted"),
    (lambda: MetalAugmentSettings(counts_per_point=(0.0, 10.0)), "accepted"),
    (lambda: MetalAugmentSettings(mask_probabilities=(0.5, 0.5, 0.5, 0.0)), "accepted"),
    (lambda: MetalPopulationRanges(dispersion=(0.0, 0.9)), "accepted"),
    (lambda: MetalPopulationRanges(mixture_share=1.5), "accepted"),
    (lambda: MetalAugmenter(Q[::-1]), "accepted"),
])
def test_bad_settings_raise_one_line_saying_what_is_accepted(call, accepted):
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value) and accepted in str(info.value)


def test_bad_sources_raise_one_line_saying_what_is_accepted(bases, augmenter):
    for call in (lambda: split_basis(bases[0], "validation"), lambda: split_basis(bases[0], "test", test_every=1),
                 lambda: MetalSource(bases, augmenter, 0), lambda: MetalSource(bases + bases[:1], augmenter, 4),
                 lambda: MetalSource([dataclasses.replace(bases[0], q=Q * 2)], augmenter, 4)):
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value) and "accepted" in str(info.value)


def test_strained_populations_scale_the_sizes_and_keep_the_patterns_finite(bases, augmenter):
    ranges = MetalPopulationRanges(strain=(-0.01, 0.01), mixture_share=0.0)
    patterns, t, pops = MetalSource(bases, augmenter, 32, ranges, part="all").populations(np.random.default_rng(4))
    assert np.all(np.isfinite(patterns)) and np.all(np.abs(t["strain"]) <= 0.01) and np.any(t["strain"] != 0)
    row = 0
    basis = bases[pops["family"][row, 0]]
    w = basis.weights(pops["mean_nm"][row, :1], pops["dispersion"][row, :1])[0]
    assert t["diameter_nm"][row] == pytest.approx((w @ basis.diameter_nm) * (1 + pops["strain"][row]), rel=1e-5)


def test_dispersion_range_split_at_the_series_width():
    """Rows narrower than SERIES_DISPERSION stay on held-out clusters, wider ones may use the series; the rows are
    shared in proportion to the widths, so the draw stays uniform."""
    from qdots_bluesky.sim.learning.metal_sources import SERIES_DISPERSION

    pieces = split_dispersion_range(0.0, 0.3, 300)
    assert [(r, series) for r, _, series in pieces] == [((0.0, SERIES_DISPERSION), False), ((SERIES_DISPERSION, 0.3), True)]
    assert [n for _, n, _ in pieces] == [100, 200]
    assert split_dispersion_range(0.15, 0.3, 10) == [((0.15, 0.3), 10, True)]
    assert split_dispersion_range(0.0, 0.05, 10) == [((0.0, 0.05), 10, False)]
    assert split_dispersion_range(0.2, 0.2, 7) == [((0.2, 0.2), 7, True)]
