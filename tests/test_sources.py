"""The training data sources: targets, fixed sets, the batch producer, the reference and blank test sets."""
from __future__ import annotations

import numpy as np
import pytest

from _learning_fakes import DISPERSION_CLASSES, SIZE_CLASSES, FakeAugmenter, fake_source, fake_targets
from qdots_bluesky.sim.learning.sources import (
    REFERENCE_FRACTIONS,
    REFERENCE_SNRS,
    REFERENCE_SOLVENTS,
    BatchProducer,
    FixedLibrarySource,
    LibrarySource,
    blank_test_set,
    class_labels,
    draw_set,
    reference_test_set,
    row_targets,
)


def test_row_targets_and_class_labels():
    assert class_labels(np.array([1.9, 3.1, 2.9, 7.0]), SIZE_CLASSES).tolist() == [0, 1, 0, 2]
    t = row_targets(np.array([2.0, 5.9]), np.array([2.2, 6.5]), np.array([0.06, 0.19]), np.array([0.0, 0.002]),
                    SIZE_CLASSES, DISPERSION_CLASSES)
    assert t["size_class"].tolist() == [0, 2] and t["dispersion_class"].tolist() == [0, 1]
    assert t["diameter_nm"].dtype == np.float32 and t["continuous"].shape == (2, 4)
    np.testing.assert_allclose(t["continuous"][1], [np.log(5.9), np.log(6.5), 0.19, 0.002], rtol=1e-6)


def test_draw_set_is_seeded_and_repeats_every_index():
    a = draw_set(fake_source(), seed=3, repeats=2)
    b = draw_set(fake_source(), seed=3, repeats=2)
    assert a.x.shape == (24, 5004) and np.array_equal(a.x, b.x)
    assert a.targets["size_class"].tolist() == np.repeat(fake_targets()["size_class"], 2).tolist()
    assert a.has_nanocrystals.tolist() == (np.repeat(np.arange(12), 2) % 3 != 0).tolist()
    x, targets, has_nc = draw_set(fake_source(), seed=3, indices=np.array([1, 4]))
    assert x.shape == (2, 5004) and targets["size_class"].tolist() == [1, 1] and has_nc.all()
    assert not np.array_equal(draw_set(fake_source(), seed=4, repeats=2).x, a.x)


def test_library_sources():
    augmenter, targets = FakeAugmenter(), fake_targets()
    jittered, idx, t = LibrarySource(augmenter, np.arange(5), targets)(np.random.default_rng(0))
    assert jittered is not augmenter and hasattr(jittered, "jitter") and idx.tolist() == [0, 1, 2, 3, 4] and t is targets
    same, idx, _ = FixedLibrarySource(augmenter, np.array([7, 8]), targets)(np.random.default_rng(0))
    assert same is augmenter and idx.tolist() == [7, 8]


def test_batch_producer_gives_seeded_batches():
    batches = list(BatchProducer(fake_source(), batch_size=5, n_batches=3, seed=[1, 2]))
    again = list(BatchProducer(fake_source(), batch_size=5, n_batches=3, seed=[1, 2]))
    assert len(batches) == 3
    for (t, x, has_nc), (t2, x2, _) in zip(batches, again):
        assert x.shape == (5, 5004) and has_nc.shape == (5,) and set(t) == {"size_class", "dispersion_class",
                                                                            "diameter_nm", "continuous"}
        assert np.array_equal(x, x2) and np.array_equal(t["size_class"], t2["size_class"])


def test_batch_producer_raises_worker_errors_and_closes():
    with pytest.raises(RuntimeError, match="augmentation failed"):
        list(BatchProducer(fake_source(augmenter=FakeAugmenter(fail=True)), batch_size=4, n_batches=2, seed=0))
    producer = BatchProducer(fake_source(), batch_size=4, n_batches=1000, seed=0)
    next(iter(producer))
    producer.close()  # an epoch that will not be trained: the worker stops
    assert not producer._thread.is_alive()


def test_reference_and_blank_test_sets():
    test = np.array([3, 5, 8])
    x, idx, cond = reference_test_set(FakeAugmenter(), test, seed=1, n_points=251)
    n = len(REFERENCE_SOLVENTS) * len(REFERENCE_FRACTIONS) * len(REFERENCE_SNRS) * test.size
    assert x.shape == (n, 251) and idx.tolist() == test.tolist() * (n // test.size)
    assert set(cond["solvent"]) == set(REFERENCE_SOLVENTS) and set(cond["snr"]) == set(REFERENCE_SNRS)
    assert np.array_equal(reference_test_set(FakeAugmenter(), test, seed=1, n_points=251)[0], x)
    blanks, labels = blank_test_set(FakeAugmenter(), seed=2, repeats=3)
    assert blanks.shape == (3 * 4 * 3, 5004) and labels[0] == "hexane snr 122" and labels[-1] == "empty snr 14"
    no_solvent = FakeAugmenter()
    no_solvent.solvent_names = ()
    assert blank_test_set(no_solvent, seed=2) is None


def test_population_source_draws_faceted_dots_for_its_share():
    """A faceted share takes its patterns from the habits' bases (same targets per population), none without it;
    the spheres-only stream draws nothing extra from the generator."""
    from qdots_bluesky.refine.basis import refinement_basis
    from qdots_bluesky.sim.learning.sources import PopulationSource
    from qdots_bluesky.sim.physics.cluster_basis import PopulationRanges, draw_populations

    q = np.linspace(1.0, 8.0, 400)
    sphere = refinement_basis("PbS", 0.56, q, max_diameter_nm=6.0)
    octa = refinement_basis("PbS", 0.56, q, max_diameter_nm=6.0, habit="octahedron")
    ranges = PopulationRanges(mean_diameter_nm=(2.0, 4.0), instrument_share=0.0)
    pops = draw_populations(np.random.default_rng(1), 64, ranges)
    plain = PopulationSource(FakeAugmenter(), sphere, ranges, 64, SIZE_CLASSES, DISPERSION_CLASSES)
    rng = np.random.default_rng(2)
    crystal, _ = plain.patterns(rng, pops)
    assert rng.random() == np.random.default_rng(2).random()  # nothing drawn
    mixed = PopulationSource(FakeAugmenter(), sphere, ranges, 64, SIZE_CLASSES, DISPERSION_CLASSES,
                             {"octahedron": octa}, faceted_share=0.5)
    faceted, _ = mixed.patterns(np.random.default_rng(3), pops)
    expected, _ = octa.patterns(pops["mean_diameter_nm"], pops["dispersion"], pops["strain"])
    same_as_sphere = np.all(np.isclose(faceted, crystal, rtol=1e-5), axis=1)
    same_as_octa = np.all(np.isclose(faceted, expected, rtol=1e-5), axis=1)
    assert np.all(same_as_sphere ^ same_as_octa)  # every population from exactly one habit's basis
    assert 16 <= same_as_octa.sum() <= 48


def test_faceted_training_settings_are_checked():
    from qdots_bluesky.sim.learning.settings import TrainingSettings

    assert TrainingSettings().faceted_share == 0.0
    s = TrainingSettings(faceted_share=0.5, faceted_habits=["Truncated_Octahedron"])
    assert s.faceted_habits == ["truncated-octahedron"]
    with pytest.raises(ValueError, match="faceted_share=1.5; accepted: a share in"):
        TrainingSettings(faceted_share=1.5)
    with pytest.raises(ValueError, match="faceted_habits=.*accepted: one or more of octahedron"):
        TrainingSettings(faceted_share=0.5, faceted_habits=["sphere"])
    with pytest.raises(ValueError, match="accepted: sphere, octahedron"):
        TrainingSettings(faceted_share=0.5, faceted_habits=["prism"])
    with pytest.raises(ValueError, match="needs continuous populations"):
        TrainingSettings(faceted_share=0.5, continuous=False)
