"""The network's instrument input: a known resolution told to the network (FiLM on the pooled features), the same in
PyTorch and NumPy, trained from the populations' own profiles, refused where a model has no such input."""
from __future__ import annotations

import numpy as np
import pytest

from qdots_bluesky.models.engine import NumpyQDotsNet, check_instrument_fwhm, default_config, instrument_condition
from qdots_bluesky.sim.learning.sources import instrument_targets, laboratory_unknown

from _model_helpers import make_bundle, synthetic_patterns

torch = pytest.importorskip("torch")


def _model(seed: int = 0, film_scale: float = 0.0):
    from qdots_bluesky.models.network import QDotsNet

    torch.manual_seed(seed)
    net = QDotsNet(continuous_head=True, instrument_input=True)
    with torch.no_grad():
        net.presence_head.bias.fill_(4.0)
        if film_scale:
            net.instrument_film.weight.copy_(film_scale * torch.randn(net.instrument_film.weight.shape))
    return net.eval()


def test_condition_rows_and_their_checks():
    cfg = default_config(instrument_input=True, instrument_fwhm_max_q=0.005)
    assert np.array_equal(instrument_condition(None, 2, cfg), np.zeros((2, 3), np.float32))  # unknown
    assert np.allclose(instrument_condition((0.0, 0.0), 1, cfg), [[1.0, 0.0, 0.0]])  # known: none
    assert np.allclose(instrument_condition((0.0025, 0.005), 1, cfg), [[1.0, 0.5, 1.0]])
    for bad in ((-0.001, 0.0), (0.0, 0.006), (np.nan, 0.0), "wide", (1.0,)):
        with pytest.raises(ValueError, match="accepted"):
            check_instrument_fwhm(bad, cfg)
    plain = default_config()
    assert instrument_condition(None, 3, plain) is None
    with pytest.raises(ValueError, match="not trained with a known instrument"):
        instrument_condition((0.0, 0.0), 1, plain)


def test_untrained_film_leaves_the_network_as_one_without_the_input():
    x = torch.from_numpy(synthetic_patterns(4, seed=1))
    net = _model()
    known = torch.from_numpy(instrument_condition((0.001, 0.002), 4, net.config))
    with torch.no_grad():
        a, b = net(x), net(x, known)
    for key in ("size_logits", "continuous", "features"):
        assert torch.equal(a[key], b[key])


def test_a_known_instrument_moves_the_answer_and_numpy_agrees():
    from qdots_bluesky.models.network import bundle_weights, fuse_batch_norm

    x = synthetic_patterns(5, seed=2)
    net = _model(film_scale=0.5)
    cond = instrument_condition((0.002, 0.001), 5, net.config)
    with torch.no_grad():
        unknown = net(torch.from_numpy(x))
        known = net(torch.from_numpy(x), torch.from_numpy(cond))
        fused = fuse_batch_norm(net)(torch.from_numpy(x), torch.from_numpy(cond))
    assert not torch.allclose(unknown["continuous"], known["continuous"])
    assert torch.equal(unknown["features"], known["features"])  # the pooled features (and their OOD test) stay
    engine = NumpyQDotsNet(net.config, bundle_weights(net))
    out = engine(x, instrument=cond)
    assert np.allclose(out["continuous"], known["continuous"].numpy(), atol=1e-4)
    assert np.allclose(fused["continuous"].numpy(), known["continuous"].numpy(), atol=1e-4)
    assert np.allclose(engine(x)["continuous"], unknown["continuous"].numpy(), atol=1e-4)
    cam = engine.grad_cam(x, instrument=cond)
    assert cam.shape == x.shape and np.all((cam >= 0) & (cam <= 1))
    with pytest.raises(ValueError, match="accepted"):
        net(torch.from_numpy(x), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="accepted"):
        engine(x, instrument=np.zeros((4, 3), np.float32))


def test_grad_cam_with_a_condition_matches_autograd():
    from qdots_bluesky.models.network import bundle_weights

    x = synthetic_patterns(2, seed=3)
    net = _model(seed=1, film_scale=0.5)
    cond = instrument_condition((0.004, 0.0), 2, net.config)
    engine = NumpyQDotsNet(net.config, bundle_weights(net))
    cam = engine.grad_cam(x, class_index=np.array([3, 7]), instrument=cond)
    # the classic CAM on the last layer with the heads' weights scaled by 1 + gamma
    with torch.no_grad():
        out = net(torch.from_numpy(x), torch.from_numpy(cond))
        gamma = net.instrument_film(torch.from_numpy(cond)).chunk(2, dim=1)[0]
        w = net.size_head.weight[[3, 7]] * (1 + gamma)
        classic = torch.relu(torch.einsum("bcl,bc->bl", out["feature_map"], w)).numpy()
    classic /= classic.max(axis=1, keepdims=True)
    span = engine.fields[-1][1]
    assert np.allclose(cam[:, : classic.shape[1] * span], np.repeat(classic, span, axis=1), atol=1e-4)


def test_training_targets_tell_a_share_and_never_laboratory_rows():
    rng = np.random.default_rng(0)
    n = 4000
    pops = {"dispersion": np.full(n, 0.1), "instrument_gauss_fwhm_q": rng.uniform(0, 0.005, n),
            "instrument_lorentz_fwhm_q": np.where(rng.random(n) < 0.3, 0.0, 0.004)}
    cond = instrument_targets(rng, pops, 0.5, 0.005)
    known = cond[:, 0] == 1
    assert 0.45 < known.mean() < 0.55 and np.all(cond[~known] == 0)
    assert np.allclose(cond[known, 1], pops["instrument_gauss_fwhm_q"][known] / 0.005)
    assert np.allclose(cond[known, 2], pops["instrument_lorentz_fwhm_q"][known] / 0.005)
    lab = np.arange(n) % 3 == 0
    rows = laboratory_unknown({"instrument": cond.copy()}, {"lab": lab})
    assert np.all(rows["instrument"][lab] == 0) and np.array_equal(rows["instrument"][~lab], cond[~lab])


def test_predictor_tells_the_network_and_says_so(tmp_path):
    from qdots_bluesky.predictor import Predictor

    path = make_bundle(tmp_path / "m.safetensors", model=_model(film_scale=0.5))
    x = synthetic_patterns(3, seed=4)
    unknown = Predictor.from_bundle(path, device="numpy").predict_standardized(x)
    told = Predictor.from_bundle(path, device="numpy", instrument_fwhm_q=(0.0, 0.0))
    known = told.predict_standardized(x)
    assert unknown[0].instrument_fwhm_q is None and known[0].instrument_fwhm_q == (0.0, 0.0)
    assert known[0].to_dict()["instrument_fwhm_q"] == [0.0, 0.0]
    assert any(abs(a.size_regression_nm - b.size_regression_nm) > 1e-4 for a, b in zip(unknown, known))
    cpu = Predictor.from_bundle(path, device="cpu", instrument_fwhm_q=(0.0, 0.0)).predict_standardized(x)
    assert np.allclose([e.size_regression_nm for e in cpu], [e.size_regression_nm for e in known], atol=1e-3)
    with pytest.raises(ValueError, match="accepted"):
        Predictor.from_bundle(path, device="numpy", instrument_fwhm_q=(0.0, 0.02))
    plain = make_bundle(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not trained with a known instrument"):
        Predictor.from_bundle(plain, device="numpy", instrument_fwhm_q=(0.0, 0.0))


def test_cli_predict_refuses_a_resolution_the_model_cannot_use(tmp_path, capsys):
    from qdots_bluesky.cli.main import main

    from _model_helpers import write_pattern

    plain = make_bundle(tmp_path / "plain.safetensors")
    q = np.linspace(1, 15, 3000)
    f = write_pattern(tmp_path / "p.xy", q, 1 + np.exp(-((q - 2.0) / 0.05) ** 2))
    assert main(["predict", str(f), "--x-unit", "q", "--model", str(plain), "--instrument-fwhm", "0", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--instrument-fwhm" in err[0] and "accepted" in err[0]
    told = make_bundle(tmp_path / "told.safetensors", model=_model(film_scale=0.5))
    assert main(["predict", str(f), "--x-unit", "q", "--model", str(told), "--json", "--device", "numpy",
                 "--instrument-fwhm", "0.001", "0"]) == 0
    assert '"instrument_fwhm_q": [0.001, 0.0]' in capsys.readouterr().out
    assert main(["predict", str(f), "--x-unit", "q", "--model", str(told), "--device", "numpy",
                 "--instrument-fwhm", "0.001", "0"]) == 0
    assert "the network is told the instrument resolution 0.001 0 1/A" in capsys.readouterr().out


def test_live_sizer_records_the_resolution_it_told(tmp_path):
    from _callbacks_helpers import run_scan, split
    from qdots_bluesky.callbacks.live_sizer import SIZER_OBJECT, LiveSizer

    path = make_bundle(tmp_path / "m.safetensors", model=_model(film_scale=0.5))
    sizer = LiveSizer(model=path, device="numpy", instrument_fwhm_q=(0.001, 0.0))
    try:
        _, out = run_scan(sizer, num=2)
    finally:
        sizer.close()
    (desc,), events = split(out)
    conf = desc["configuration"][SIZER_OBJECT]
    assert conf["data"]["instrument_known"] == 1 and conf["data"]["instrument_gauss_fwhm_q"] == 0.001
    assert conf["data_keys"]["instrument_gauss_fwhm_q"]["units"] == "1/angstrom"
    assert len(events) == 2 and all(e["data"]["status"] in ("ok", "flagged") for e in events)


def test_demo_tells_a_model_with_the_input_its_ideal_detector(tmp_path, capsys):
    from qdots_bluesky.cli.bluesky_commands import _has_instrument_input
    from qdots_bluesky.cli.main import main

    told = make_bundle(tmp_path / "told.safetensors", model=_model())
    assert _has_instrument_input(str(told)) and not _has_instrument_input(str(make_bundle(tmp_path / "p.safetensors")))
    assert not _has_instrument_input(str(tmp_path / "missing.safetensors"))
    assert main(["demo", "--unknown-instrument", "--instrument-fwhm", "0", "0", "--plot", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "contradict" in err[0] and "accepted" in err[0]


def test_bundles_without_the_input_refuse_a_resolution_in_one_line(tmp_path):
    from qdots_bluesky.callbacks.live_sizer import LiveSizer
    from qdots_bluesky.models.bundle import read_bundle, shipped_bundle_path
    from qdots_bluesky.predictor import Predictor

    contents = read_bundle(make_bundle(tmp_path / "plain.safetensors"))
    for key in ("instrument_input", "instrument_fwhm_max_q"):  # a bundle written before the input existed
        contents.config.pop(key)
    with pytest.raises(ValueError, match="not trained with a known instrument"):
        Predictor(contents, "numpy", instrument_fwhm_q=(0.0, 0.0))
    assert Predictor(contents, "numpy").instrument_fwhm_q is None
    with pytest.raises(ValueError, match="no instrument input"):  # a metal-cluster shape model
        Predictor.from_bundle(shipped_bundle_path("metal-shape-size"), device="numpy", instrument_fwhm_q=(0.0, 0.0))
    told = Predictor.from_bundle(make_bundle(tmp_path / "t.safetensors", model=_model()), device="numpy")
    with pytest.raises(ValueError, match="accepted"):  # a predictor told nothing, and a resolution beside it
        LiveSizer(told, instrument_fwhm_q=(0.001, 0.0))


def test_predict_leaves_widths_beyond_the_network_to_the_refinement(capsys):
    from argparse import Namespace

    from qdots_bluesky.cli.predict import _instrument_option

    cfg = default_config(instrument_input=True)
    ask = dict(instrument_fwhm=[0.008, 0.001], geometry="capillary")
    assert _instrument_option(Namespace(refine=True, **ask), cfg) == {}
    assert "the refinement holds the resolution" in capsys.readouterr().err
    assert _instrument_option(Namespace(refine=False, **ask), cfg) == 2
    assert "accepted" in capsys.readouterr().err
    assert _instrument_option(Namespace(refine=False, instrument_fwhm=[0.002, 0.0], geometry="capillary"), cfg) == {
        "instrument_fwhm_q": (0.002, 0.0)}
    flat = dict(instrument_fwhm=[0.1, 0.05], geometry="flat-plate")
    assert _instrument_option(Namespace(refine=False, **flat), cfg) == 2
    assert "accepted: with --refine" in capsys.readouterr().err
    assert _instrument_option(Namespace(refine=True, **flat), cfg) == {}


def test_training_share_needs_continuous_populations_and_widths(capsys):
    from argparse import Namespace

    from qdots_bluesky.cli.training import _known_instrument_share
    from qdots_bluesky.sim.learning.settings import TrainingSettings

    d = TrainingSettings()
    assert _known_instrument_share(Namespace(known_instrument_share=None, library_populations_only=False), d) == 0.5
    assert _known_instrument_share(Namespace(known_instrument_share=None, library_populations_only=True), d) == 0.0
    with pytest.raises(ValueError, match="needs continuous populations"):
        _known_instrument_share(Namespace(known_instrument_share=0.3, library_populations_only=True), d)
    ranges = dict(d.population_ranges, instrument_gauss_fwhm_q=[0.0, 0.0], instrument_lorentz_fwhm_q=[0.0, 0.0])
    with pytest.raises(ValueError, match="nothing to tell"):
        TrainingSettings(population_ranges=ranges)
    assert TrainingSettings(population_ranges=ranges, known_instrument_share=0.0).known_instrument_share == 0.0
