"""A short training run end to end (bundle, provenance, reproducibility, time cap, the CLI) and the evaluation report."""
from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest

from qdots_bluesky.models.bundle import T_SOLVENT_PROBE, file_sha256, read_bundle
from qdots_bluesky.predictor import Predictor
from qdots_bluesky.sim.physics.library import LibrarySettings, build_library
from qdots_bluesky.sim.learning.augment_settings import AugmentationSettings
from qdots_bluesky.sim.learning.train import TrainingSettings, train_model, training_noise_threads


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "lib.h5"
    settings = LibrarySettings(mean_diameters_nm=[2.0, 4.0, 6.0], dispersions=[0.05, 0.2],
                               lattice_ratios=[0.9975, 0.999, 1.001, 1.003, 1.0051], tth_grid_deg=None)
    return build_library(settings, path, progress=False)


@pytest.fixture(scope="module")
def trained(small_library, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.safetensors"
    settings = TrainingSettings(seed=1, max_epochs=2, samples_per_epoch=1024, batch_size=128, validation_repeats=2,
                                coarse_epochs=1, solvent_probe=True)
    return train_model(small_library, out, settings, progress=False)


def test_training_writes_a_bundle_with_provenance(trained, small_library):
    bundle = read_bundle(trained.bundle_path)
    meta = bundle.metadata
    assert meta["training_library"]["sha256"] == file_sha256(small_library)
    assert meta["size_classes_nm"] == [2.0, 4.0, 6.0] and meta["dispersion_classes"] == [0.05, 0.2]
    # the augmentation as given: the noise threads training chose change the speed, not the patterns
    assert meta["augmentation"]["n_threads"] == AugmentationSettings().n_threads
    assert meta["training"]["seed"] == 1 and len(meta["history"]) == 2
    split = meta["split"]
    assert not set(split["test"]) & set(split["train"]) and not set(split["validation"]) & set(split["train"])
    m = meta["metrics"]
    for key in ("test_size_accuracy", "test_size_within_one_class", "test_dispersion_accuracy", "test_ece_size",
                "temperature_size", "ood_threshold"):
        assert np.isfinite(m[key])
    assert m["test_patterns"] == len(split["test"]) * 32
    # the presence head: trained against blanks (default augmentation), measured on pure-solvent test patterns
    assert bundle.config["presence_head"] is True and meta["augmentation"]["blank_fraction"] > 0
    assert 0.0 <= m["test_blank_detected"] <= 1.0 and 0.0 <= m["test_nanocrystals_missed"] <= 1.0
    assert m["precision"] in ("bf16", "fp32")
    assert trained.bundle_path.stat().st_size < 800_000
    # the coarse-sampling specialist: fine-tuned copy, own calibration, measured at 251 points against the main network
    assert bundle.coarse is not None and bundle.coarse_min_q_step == pytest.approx(0.037)
    cm = m["coarse_specialist"]
    assert cm["epochs_run"] == 1 and cm["test_points"] == 251 and cm["test_patterns"] == len(split["test"]) * 32
    assert 0.0 <= cm["test_size_accuracy"] <= 1.0 and 0.0 <= cm["main_network_test_size_accuracy"] <= 1.0
    spec = meta["coarse_specialist"]
    assert spec["augmentation"]["coarsen_fraction"] == 1.0 and spec["augmentation"]["lab_fraction"] == 0.0
    assert spec["augmentation"]["n_points_choices"] == [201, 226, 251, 276, 301, 351] and len(spec["history"]) == 1
    a, b = bundle.weights, bundle.coarse.weights
    assert not np.array_equal(a["convs.0.weight"], b["convs.0.weight"])  # fine-tuned, not a copy
    # the predictor loads it and gives calibrated probabilities
    est = Predictor.from_bundle(trained.bundle_path, device="cpu").predict_standardized(np.ones((2, 5004), np.float32))
    assert len(est) == 2 and abs(sum(est[0].probabilities.values()) - 1) < 1e-5
    assert 0.0 <= est[0].nanocrystal_probability <= 1.0
    # continuous populations (the default): the continuous head, its interval calibration and its figures
    assert bundle.config["continuous_head"] is True and bundle.coarse.config["continuous_head"] is True
    calibration = np.asarray(m["continuous_interval_calibration"])
    assert calibration.shape == (2, 4) and np.all(calibration[1] >= 0.5) and np.all(calibration[1] <= 2.0)
    for key in ("test_continuous", "test_continuous_populations"):
        assert m[key]["size_mae_nm"] > 0 and 0.0 <= m[key]["size_coverage_68"] <= m[key]["size_coverage_95"] <= 1.0
    assert set(m["test_continuous"]["by_snr"]) == {"122.0", "46.0", "24.0", "14.0"}
    assert est[0].size_volume_nm > 0 and est[0].size_std_nm > 0 and est[0].strain_std > 0
    assert meta["training"]["population_ranges"]["mean_diameter_nm"] == [1.5, 11.0]
    # the solvent probe (asked for): the built-in solvents on the grid, mean 1, in both members, and in use
    probes = bundle.tensors[T_SOLVENT_PROBE]
    assert probes.shape == (2, 5004) and np.allclose(probes.mean(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(bundle.coarse.tensors[T_SOLVENT_PROBE], probes)
    assert Predictor.from_bundle(trained.bundle_path, device="numpy").solvent_probe is not None


def test_library_populations_only_trains_the_class_model(small_library, tmp_path):
    settings = TrainingSettings(seed=2, max_epochs=1, samples_per_epoch=256, batch_size=128, validation_repeats=1,
                                precision="fp32", coarse_epochs=0, continuous=False)
    result = train_model(small_library, tmp_path / "classes.safetensors", settings, progress=False)
    assert read_bundle(result.bundle_path).config["continuous_head"] is False
    assert "test_continuous" not in result.metrics
    assert T_SOLVENT_PROBE not in read_bundle(result.bundle_path).tensors  # no continuous size to widen
    est = Predictor.from_bundle(result.bundle_path, device="numpy").predict_standardized(np.ones((1, 5004), np.float32))
    assert est[0].size_volume_nm is None and est[0].dispersion in (0.05, 0.2)


def test_known_instrument_share_trains_the_instrument_input(small_library, tmp_path):
    settings = TrainingSettings(seed=2, max_epochs=2, samples_per_epoch=512, batch_size=128, validation_repeats=1,
                                precision="fp32", coarse_epochs=1, known_instrument_share=0.5)
    result = train_model(small_library, tmp_path / "known.safetensors", settings, progress=False)
    bundle = read_bundle(result.bundle_path)
    assert T_SOLVENT_PROBE not in bundle.tensors and T_SOLVENT_PROBE not in bundle.coarse.tensors  # off by default
    assert bundle.config["instrument_input"] is True and bundle.config["instrument_fwhm_max_q"] == 0.005
    assert bundle.coarse.config["instrument_input"] is True
    assert np.any(bundle.weights["instrument_film.weight"] != 0)  # it learnt from the told populations
    known = result.metrics["known_instrument"]  # the held-out reference patterns, told: no instrument
    assert known["test_patterns"] == result.metrics["test_patterns"] and 0 <= known["test_size_accuracy"] <= 1
    assert known["test_continuous"]["size_mae_nm"] > 0
    x = np.ones((1, 5004), np.float32)
    told = Predictor.from_bundle(result.bundle_path, device="numpy", instrument_fwhm_q=(0.0, 0.0))
    plain = Predictor.from_bundle(result.bundle_path, device="numpy")
    assert told.predict_standardized(x)[0].size_regression_nm != plain.predict_standardized(x)[0].size_regression_nm
    with pytest.raises(ValueError, match="share"):
        TrainingSettings(known_instrument_share=1.5)


def test_training_without_blanks_has_no_presence_head(small_library, tmp_path):
    from qdots_bluesky.sim.learning.augment import AugmentationSettings

    settings = TrainingSettings(seed=2, max_epochs=1, samples_per_epoch=256, batch_size=128, validation_repeats=1,
                                precision="fp32", coarse_epochs=0)
    result = train_model(small_library, tmp_path / "m.safetensors", settings, AugmentationSettings(blank_fraction=0.0),
                         progress=False)
    assert read_bundle(result.bundle_path).config["presence_head"] is False
    assert "test_blank_detected" not in result.metrics
    assert read_bundle(result.bundle_path).coarse is None and "coarse_specialist" not in result.metrics
    est = Predictor.from_bundle(result.bundle_path, device="numpy").predict_standardized(np.ones((1, 5004), np.float32))
    assert est[0].nanocrystal_probability is None and "no_nanocrystals" not in est[0].flags


def test_training_is_reproducible(small_library, trained, tmp_path):
    settings = TrainingSettings(seed=1, max_epochs=2, samples_per_epoch=1024, batch_size=128, validation_repeats=2,
                                coarse_epochs=1, solvent_probe=True)
    again = train_model(small_library, tmp_path / "again.safetensors", settings, progress=False)
    assert again.metrics["test_size_accuracy"] == trained.metrics["test_size_accuracy"]
    first, second = read_bundle(trained.bundle_path), read_bundle(again.bundle_path)
    for x, y in ((first, second), (first.coarse, second.coarse)):
        assert x.weights.keys() == y.weights.keys()
        assert all(np.array_equal(x.weights[k], y.weights[k]) for k in x.weights)
        assert x.tensors.keys() == y.tensors.keys()
        assert all(np.array_equal(x.tensors[k], y.tensors[k]) for k in x.tensors)


def test_training_with_a_batch_thread_gives_the_same_network(small_library, trained, tmp_path):
    # the default augments in a worker process; a thread of this process makes the same batches
    settings = TrainingSettings(seed=1, max_epochs=2, samples_per_epoch=1024, batch_size=128, validation_repeats=2,
                                coarse_epochs=1, solvent_probe=True, batch_worker="thread")
    threaded = read_bundle(train_model(small_library, tmp_path / "thread.safetensors", settings, progress=False).bundle_path)
    first = read_bundle(trained.bundle_path)
    assert first.metadata["training"]["batch_worker"] == "process"
    for x, y in ((first, threaded), (first.coarse, threaded.coarse)):
        assert all(np.array_equal(x.weights[k], y.weights[k]) for k in x.weights)
    with pytest.raises(ValueError, match="batch_worker='gpu'; accepted: 'process', 'thread'"):
        TrainingSettings(batch_worker="gpu")


def test_an_error_in_the_training_loop_leaves_no_batch_worker(small_library, tmp_path, monkeypatch):
    import qdots_bluesky.sim.learning.fitting as fitting
    from qdots_bluesky.sim.learning.batch_stream import can_fork

    if not can_fork():
        pytest.skip("the batch worker is forked on Linux only")

    workers_seen = []

    class FailingLoss(fitting.TrainingLoss):
        def __call__(self, *args, **kwargs):
            workers_seen.append(len(multiprocessing.active_children()))
            raise RuntimeError("the loss failed")

    monkeypatch.setattr(fitting, "TrainingLoss", FailingLoss)
    monkeypatch.setattr("qdots_bluesky.sim.learning.train.TrainingLoss", FailingLoss)
    settings = TrainingSettings(seed=1, max_epochs=3, samples_per_epoch=1024, batch_size=128, validation_repeats=1,
                                coarse_epochs=0)
    with pytest.raises(RuntimeError, match="the loss failed") as failure:
        train_model(small_library, tmp_path / "failed.safetensors", settings, progress=False)
    assert workers_seen == [1]  # the batches came from a worker process...
    assert failure.traceback and multiprocessing.active_children() == []  # ...stopped, though the traceback lives


def test_training_noise_threads_leave_the_network_its_core():
    # (n_threads asked, torch threads, cores) -> noise threads while the network trains; 1 = drawn inline
    assert training_noise_threads(2, 1, 2) == 1  # network, producer: both cores taken
    assert training_noise_threads(2, 1, 3) == 1  # one core left: a pool of one would only add a hand-over
    assert training_noise_threads(2, 1, 4) == 2
    assert training_noise_threads(4, 1, 16) == 4 and training_noise_threads(4, 1, 5) == 3
    assert training_noise_threads(2, 0, 16) == 1  # torch takes every core
    assert training_noise_threads(1, 1, 16) == 1  # never more than asked


def test_library_too_small_to_split(tmp_path):
    path = build_library(LibrarySettings(mean_diameters_nm=[3.0], dispersions=[0.1], lattice_ratios=[1.0],
                                         tth_grid_deg=None), tmp_path / "one.h5", progress=False)
    with pytest.raises(ValueError, match="too small to split"):
        train_model(path, tmp_path / "m.safetensors", TrainingSettings(max_epochs=1), progress=False)


def test_evaluation_report(trained, small_library, tmp_path):
    from qdots_bluesky.sim.learning.evaluation import evaluate_model

    report = evaluate_model(trained.bundle_path, small_library, tmp_path / "report", progress=False)
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["reference"]["patterns"] == report["reference"]["patterns"]
    assert set(saved["robustness"]) == {"q_max", "q_min", "n_points", "weight_fraction", "snr", "lattice_change", "lab",
                                        "n_points_main_network"}
    assert list(saved["robustness"]["lattice_change"]) == ["-0.01", "-0.005", "-0.002", "0", "0.002", "0.005", "0.01"]
    assert set(saved["robustness"]["n_points_main_network"]) == set(saved["robustness"]["n_points"])
    # the specialist sizes 251 points (step 0.056 1/A) but not 501 (0.028): the two curves part only there
    assert saved["coarse_specialist"]["n_points_routed"] == [251]
    for n in ("5004", "2501", "1251", "626", "501"):
        assert saved["robustness"]["n_points"][n] == saved["robustness"]["n_points_main_network"][n]
    n_test = report["test_simulations"]
    assert saved["robustness_patterns_per_point"] == 4 * n_test * 2  # default 4 draws x 2 reference solvents
    for key, curve in saved["robustness"].items():
        if key == "n_points_main_network":
            continue
        for point, accuracy in curve.items():  # the binomial standard error of every point
            expected = np.sqrt(accuracy * (1 - accuracy) / saved["robustness_patterns_per_point"])
            assert saved["robustness_standard_error"][key][point] == pytest.approx(expected, abs=1e-12)
    assert np.asarray(saved["reference"]["size_confusion"]).shape == (3, 3)
    assert np.asarray(saved["reference"]["size_confusion"]).sum() == saved["reference"]["patterns"]
    within = saved["reference"]["size_within_std"]  # coverage of the stated uncertainty, overall and per condition
    for k in ("1", "2"):
        assert set(within[k]) == {"all", "by_area_fraction", "by_snr", "by_dispersion"}
        shares = within[k]["by_dispersion"]
        assert shares and all(0.0 <= v <= 1.0 for v in shares.values())
    detection = saved["nanocrystal_detection"]
    assert set(detection["pure_solvent_flagged"]) == {f"{s} snr {n}" for s in ("hexane", "toluene", "empty")
                                                       for n in (122, 46, 24, 14)}
    assert set(detection["flagged_by_weight_fraction"]) == {"1", "0.44", "0.2", "0.07", "0.05", "0.04", "0.03", "0.02"}
    for png in ("confusion.png", "robustness.png", "errors_and_learning.png"):
        assert (tmp_path / "report" / png).stat().st_size > 10_000


def test_train_and_evaluate_commands(small_library, tmp_path, capsys):
    from qdots_bluesky.cli import main

    model = tmp_path / "cli.safetensors"
    assert main(["train", "--library", str(small_library), "-o", str(model), "--epochs", "1",
                 "--samples-per-epoch", "256", "--batch-size", "128", "--filters", "8,8,16,16,24", "--kernels", "10,5,4,3,2", "--coarse-epochs", "1",
                 "--strain-jitter", "0.005"]) == 0
    out = capsys.readouterr().out
    assert "held-out test" in out and "size accuracy" in out and model.is_file()
    assert "coarse-sampling specialist (1 epochs" in out and "at 251 points over 1-15 1/A" in out
    bundle = read_bundle(model)
    assert bundle.config["filters"] == [8, 8, 16, 16, 24] and bundle.metadata["training"]["filters"] == [8, 8, 16, 16, 24]
    assert bundle.config["kernels"] == [10, 5, 4, 3, 2] and bundle.metadata["training"]["kernels"] == [10, 5, 4, 3, 2]
    assert bundle.metadata["augmentation"]["strain_jitter"] == 0.005
    with pytest.raises(SystemExit):
        main(["train", "--library", str(small_library), "--filters", "32,32"])
    assert "five positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--library", str(small_library), "--kernels", "20,5,4,3"])
    err = capsys.readouterr().err
    assert "'20,5,4,3': accepted: five positive integers" in err and "e.g. 20,5,4,3,2" in err
    with pytest.raises(SystemExit):
        main(["train", "--library", str(small_library), "--coarse-epochs", "-2"])
    assert "an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--library", str(small_library), "--strain-jitter", "0.1"])
    assert "'0.1': accepted: a fraction from 0 to 0.02" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--library", str(small_library), "--faceted-share", "1.5"])
    assert "'1.5': accepted: a share from 0 to 1" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(model), "--library", str(small_library), "-o", str(tmp_path / "ev"),
                 "--repeats", "1"]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["robustness_patterns_per_point"] == 2 * report["test_simulations"]
    out = capsys.readouterr().out
    assert f"robustness curves ({2 * report['test_simulations']} patterns per point)" in out
    assert "coarse-sampling specialist sized the patterns with a Q step >= 0.037 1/A (points: 251)" in out
    assert main(["train", "--library", str(tmp_path / "missing.h5"), "-o", str(model)]) == 2
    assert "--build-library" in capsys.readouterr().err
    # bad options are refused in the command line's words before a library is built
    assert main(["train", "--library", str(tmp_path / "new.h5"), "--build-library", "--epochs", "0",
                 "-o", str(model)]) == 2
    assert "--epochs 0; accepted: an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "new.h5").exists()


def test_balanced_draws_give_every_simulation_every_condition():
    from qdots_bluesky.sim.learning.evaluation import balanced_draws

    values = (122.0, 46.0, 24.0, 14.0)
    drawn = balanced_draws(values, 5, 8, np.random.default_rng(0)).reshape(8, 5)  # as np.tile(sims, 8)
    for sim in range(5):  # each of the 4 values exactly twice for each simulation over 8 repeats
        assert sorted(drawn[:, sim].tolist()) == sorted(list(values) * 2)
    starts = {tuple(balanced_draws(values, 50, 1, np.random.default_rng(seed))) for seed in range(3)}
    assert len(starts) == 3  # the starting condition is drawn, not fixed


def test_time_cap_leaves_the_coarse_specialist_its_epochs(small_library, tmp_path, monkeypatch):
    """Under --max-minutes the main network stops early enough for the specialist to run all its epochs at the speed
    measured so far (a clock that advances 10 s at every reading makes the cap bind after a few epochs)."""
    import qdots_bluesky.sim.learning.fitting as fitting
    import qdots_bluesky.sim.learning.train as training

    class TenSecondClock:
        def __init__(self):
            self.now = 0.0

        def perf_counter(self):
            self.now += 10.0
            return self.now

    clock = TenSecondClock()  # one clock for the orchestration and the epoch loop
    monkeypatch.setattr(training, "time", clock)
    monkeypatch.setattr(fitting, "time", clock)
    settings = TrainingSettings(seed=2, max_epochs=12, samples_per_epoch=256, batch_size=128, validation_repeats=1,
                                coarse_epochs=3, max_minutes=3.0)
    metrics = train_model(small_library, tmp_path / "capped.safetensors", settings, progress=False).metrics
    assert metrics["stopped_by"] == "time_limit" and metrics["epochs_run"] < 12
    assert metrics["coarse_specialist"]["epochs_run"] == 3 and metrics["coarse_specialist"]["stopped_by"] != "time_limit"
    assert multiprocessing.active_children() == []  # the batch worker of the epochs not trained was stopped
