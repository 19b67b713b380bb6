"""Runs stored through TiledWriter in a real (embedded) Tiled server, read back, replayed; the CLI commands."""
from __future__ import annotations


import numpy as np
import pytest
import yaml
from bluesky import RunEngine

from _callbacks_helpers import fast_beamline, free_port, sabotage
from _model_helpers import make_bundle
from qdots_bluesky import cli as cli_commands
from qdots_bluesky.callbacks.live_sizer import STREAM_NAME, LiveSizer
from qdots_bluesky.callbacks.replay import REPLAY_OF, replay_run
from qdots_bluesky.callbacks.runs import RunNotFoundError, _rebuild_documents, read_sizes, read_stream, select_runs
from qdots_bluesky.callbacks.tiled_store import TiledUnavailableError, connect
from qdots_bluesky.models.bundle import BundleError
from qdots_bluesky.plans import insitu_synthesis
from qdots_bluesky.sim.beamline import use_virtual_time

KEYS = ("size_nm", "size_std_nm", "size_class_nm", "confidence", "dispersion", "probabilities", "ood_distance")


def scan_to_tiled(store, sizer, num=8, bad=None, md=None):
    reactor, det = fast_beamline(seed=num)
    if bad:
        sabotage(det, bad)
    RE = RunEngine({})
    use_virtual_time(RE, reactor)
    token = sizer.subscribe(store.writer())
    RE.subscribe(sizer)
    try:
        (uid,) = RE(insitu_synthesis(det, reactor, num, 30.0, md=md))
    finally:
        sizer.unsubscribe(token)
    return uid, det


@pytest.fixture(scope="module")
def live_run(store, bundle):
    """One stored run with bad events (2: NaN, 5: short, 7: zeros) and the sizer's model."""
    model = bundle
    with LiveSizer(model=model, device="cpu") as sizer:
        uid, det = scan_to_tiled(store, sizer, num=9, bad={2: "nan", 5: "short", 7: "zeros"},
                                 md={"sample_name": "PbS batch 7"})
    return uid, model, det


def test_stored_run_has_the_qdots_size_stream(store, live_run):
    uid, _, det = live_run
    run = store.runs[uid]
    assert sorted(run) == ["primary", STREAM_NAME]
    assert run.metadata["stop"]["num_events"] == {"primary": 9, STREAM_NAME: 9}
    assert run.metadata["stop"]["exit_status"] == "success"
    sizes = read_sizes(run)
    primary = read_stream(run, "primary")
    assert len(sizes["size_nm"]) == len(primary["reactor_true_size"]) == 9
    assert sizes["source_seq_num"].tolist() == list(range(1, 10))
    status = [str(s) for s in sizes["status"]]
    assert [status[i - 1] for i in (2, 5, 7)] == ["error"] * 3
    assert all(status[i - 1] in ("ok", "flagged") for i in (1, 3, 4, 6, 8, 9))
    assert "NaN" in str(sizes["message"][1]) and "all zeros" in str(sizes["message"][6])
    assert sizes["probabilities"].shape == (9, 17)
    good = np.array([s != "error" for s in status])
    assert np.isfinite(sizes["size_nm"][good]).all() and np.isnan(sizes["size_nm"][~good]).all()
    # the raw data are stored, bad patterns included (the short one padded with NaN by TiledWriter)
    raw = primary["waxs_intensity"]
    n = det.tth.get().size
    assert raw.shape == (9, n)
    assert np.isnan(raw[1, 7]) and not raw[6].any() and np.isnan(raw[4, n // 3:]).all()
    # the descriptor metadata survives in Tiled
    meta = run[STREAM_NAME].metadata
    assert meta["data_keys"]["size_nm"]["units"] == "nm"
    assert meta["data_keys"]["probabilities"]["size_classes_nm"][0] == 2.0
    assert meta["configuration"]["qdots_sizer"]["data"]["pattern_key"] == "waxs_intensity"


def test_replay_gives_identical_numbers_and_writes_back(store, live_run):
    uid, model, _ = live_run
    run = store.runs[uid]
    live = read_sizes(run)
    with LiveSizer(model=model, device="cpu") as sizer:  # a fresh sizer, same model
        result = replay_run(run, sizer, write_to=store)
    table = result.table()
    for k in KEYS:
        a, b = np.asarray(live[k], float), np.asarray(table[k], float)
        # the values too: a one-off failure (seen once in a full run, never reproduced) said only the key
        assert np.array_equal(a, b, equal_nan=True), (k, a.tolist(), b.tolist(), live["status"], table["status"])
    assert [str(s) for s in live["status"]] == list(table["status"])
    assert table["source_seq_num"].tolist() == list(range(1, 10))
    # the stored short pattern was NaN-padded: still an error, with the reason
    assert "NaN tail" in table["message"][4]
    # write-back: a new run that references the original
    new = store.runs[result.new_uid]
    start = new.metadata["start"]
    assert start[REPLAY_OF] == uid and start["plan_name"] == "qdots_replay"
    assert start["qdots_original_start"]["sample_name"] == "PbS batch 7" and "scan_id" not in start
    assert list(new) == [STREAM_NAME] and new.metadata["stop"]["num_events"] == {STREAM_NAME: 9}
    again = read_sizes(new)
    assert np.array_equal(again["size_nm"], np.asarray(live["size_nm"], float), equal_nan=True)
    # selection: the replay is now the latest run; the scan id still names the original
    assert select_runs(store.runs, ["-1"])[0].metadata["start"]["uid"] == result.new_uid
    scan_id = run.metadata["start"]["scan_id"]
    assert select_runs(store.runs, [str(scan_id)])[0].metadata["start"]["uid"] == uid
    assert select_runs(store.runs, [uid[:8]])[0].metadata["start"]["uid"] == uid
    from tiled.queries import Eq

    assert len(store.runs.search(Eq(REPLAY_OF, uid))) >= 1


def test_replay_with_rebuilt_documents_and_another_model(store, live_run, other_bundle):
    uid, model, _ = live_run
    run = store.runs[uid]
    live = read_sizes(run)
    docs = list(_rebuild_documents(run))  # as for a server that does not export documents
    assert [n for n, _ in docs][:1] == ["start"] and docs[-1][0] == "stop"
    with LiveSizer(model=model, device="cpu") as sizer:
        table = replay_run(docs, sizer).table()
    assert np.array_equal(np.asarray(live["size_nm"], float), table["size_nm"], equal_nan=True)
    other = other_bundle
    with LiveSizer(model=other, device="cpu") as sizer:
        table2 = replay_run(run, sizer).table()
    assert len(table2["size_nm"]) == 9
    good = np.isfinite(table["size_nm"])
    assert not np.array_equal(table["probabilities"][good], table2["probabilities"][good])


def test_run_selection_errors(store, live_run):
    with pytest.raises(RunNotFoundError, match="scan id 987654"):
        select_runs(store.runs, ["987654"])
    with pytest.raises(RunNotFoundError, match="uid"):
        select_runs(store.runs, ["ffffffff-0000"])
    with pytest.raises(ValueError, match="run 0"):
        select_runs(store.runs, ["0"])


def test_unreachable_server_and_bad_model_fail_clearly(tmp_path, capsys, store, live_run):
    with pytest.raises(TiledUnavailableError, match="cannot reach the Tiled server"):
        connect(f"http://127.0.0.1:{free_port()}/api/v1")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(BundleError):
        LiveSizer(model=bad)
    uid = live_run[0]
    assert cli_commands.main(["replay", "--tiled-uri", store.uri, uid, "--model", str(bad)]) == 2
    assert "the model does not load" in capsys.readouterr().err
    assert cli_commands.main(["replay", "--tiled-uri", f"http://127.0.0.1:{free_port()}/api/v1", uid,
                              "--model", str(live_run[1])]) == 2
    assert "cannot reach the Tiled server" in capsys.readouterr().err
    assert cli_commands.main(["replay", "--tiled-uri", store.uri, "deadbeef99", "--model", str(live_run[1])]) == 2
    assert "no run with uid" in capsys.readouterr().err
    assert cli_commands.main(["replay", uid, "--model", str(live_run[1])]) == 2  # nowhere to look
    assert "--tiled-uri" in capsys.readouterr().err


def test_cli_replay_and_databroker_catalog_name(store, live_run, tmp_path, monkeypatch, capsys):
    import tiled.profiles

    uid, model, _ = live_run
    assert cli_commands.main(["replay", "--tiled-uri", store.uri, uid[:10], "--model", str(model), "--device", "cpu",
                              "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"run {uid}: 9 estimates" in out and "identical to the stored live estimates" in out
    # the same through databroker 2.x, by catalog (profile) name
    (tmp_path / "qdots_test.yml").write_text(yaml.safe_dump({"qdots_test": {"uri": store.uri}}))
    monkeypatch.setattr(tiled.profiles, "paths", [*tiled.profiles.paths, tmp_path])
    tiled.profiles.load_profiles.cache_clear()
    try:
        import databroker

        db = databroker.catalog["qdots_test"]["raw"]  # databroker 2.x: catalogs by name
        assert db[uid].metadata["start"]["uid"] == uid and db[-1] is not None
        assert cli_commands.main(["replay", "--catalog", "qdots_test", uid, "--model", str(model), "--device", "cpu",
                                  "--quiet"]) == 0
        assert "identical to the stored live estimates" in capsys.readouterr().out
        assert cli_commands.main(["replay", "--catalog", "no_such_catalog", uid, "--model", str(model)]) == 2
        assert "no databroker/Tiled profile named" in capsys.readouterr().err
    finally:
        tiled.profiles.load_profiles.cache_clear()


def test_cli_demo_end_to_end(store, bundle, tmp_path, capsys):
    plot = tmp_path / "demo.png"
    rc = cli_commands.main(["demo", "--model", str(bundle), "--device", "cpu", "--points", "5", "--delay", "60",
                            "--virtual-time", "--tth-step", "0.0168", "--max-diameter", "12", "--count-rate", "1e6",
                            "--tiled-uri", store.uri, "--plot", str(plot)])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out + captured.err
    assert "read back from Tiled" in out and "'qdots_size': 5" in out
    assert "true D(nm)" in out and "predicted D(nm)" in out and "qdots replay" in out
    assert "api_key=" not in out or "api_key=***" in out  # the hint never shows the key
    assert plot.is_file() and plot.stat().st_size > 10_000
    # the table rows: 5 events with a true size and a prediction
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and "±" in line]
    assert len(rows) == 5


def test_cli_help_explains_every_option(capsys):
    for command in ("demo", "replay", "serve"):
        with pytest.raises(SystemExit):
            cli_commands.main([command, "--help"])
        text = capsys.readouterr().out
        parser = cli_commands.build_parser()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and len(action.help) > 10, (command, action.option_strings)
        assert "--model" in text


def test_make_bundle_helper_is_deterministic(tmp_path):
    # a replay "with the same model" means the same file content: two builds with one seed are equal
    a = make_bundle(tmp_path / "a.safetensors", seed=3)
    b = make_bundle(tmp_path / "b.safetensors", seed=3)
    pa, pb = LiveSizer(model=a), LiveSizer(model=b)
    try:
        x = np.linspace(1, 15, 300)
        y = np.exp(-x / 4) + np.exp(-0.5 * ((x - 5) / 0.1) ** 2)
        ea = pa.predictor.predict_pattern(x, y, x_unit="q")
        eb = pb.predictor.predict_pattern(x, y, x_unit="q")
        assert ea.size_nm == eb.size_nm
    finally:
        pa.close()
        pb.close()


def test_threaded_writer_keeps_order_and_flushes(store, bundle):
    reactor, det = fast_beamline(seed=21)
    RE = RunEngine({})
    use_virtual_time(RE, reactor)
    writer = store.writer(threaded=True)
    with LiveSizer(model=bundle, device="cpu", callbacks=[writer]) as sizer:
        RE.subscribe(sizer)
        (uid,) = RE(insitu_synthesis(det, reactor, 4, 30.0))
    assert writer.flush(30)
    writer.close()
    run = store.runs[uid]
    assert run.metadata["stop"]["num_events"] == {"primary": 4, STREAM_NAME: 4} and writer.errors == 0
    assert read_sizes(run)["source_seq_num"].tolist() == [1, 2, 3, 4]


def test_cli_demo_refuses_a_bad_plot_path_before_the_scan(store, bundle, tmp_path, capsys):
    rc = cli_commands.main(["demo", "--model", str(bundle), "--device", "cpu", "--points", "3", "--virtual-time",
                            "--tiled-uri", store.uri, "--plot", str(tmp_path / "no" / "such" / "demo.png")])
    captured = capsys.readouterr()
    assert rc == 2 and "read back from Tiled" not in captured.out
    assert "qdots demo: error: --plot" in captured.err and "does not exist" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    rc = cli_commands.main(["demo", "--model", str(bundle), "--points", "3", "--virtual-time", "--count-rate", "0",
                            "--tiled-uri", store.uri])
    err = capsys.readouterr().err
    assert rc == 2 and "--count-rate 0.0; accepted: counts/s" in err and len(err.strip().splitlines()) == 1


def test_cli_demo_with_refinement(store, bundle, tmp_path, capsys):
    plot = tmp_path / "demo_refined.png"
    rc = cli_commands.main(["demo", "--model", str(bundle), "--device", "cpu", "--points", "4", "--delay", "60",
                            "--virtual-time", "--tth-step", "0.0168", "--max-diameter", "12", "--count-rate", "1e6",
                            "--refine", "--tiled-uri", store.uri, "--plot", str(plot)])
    captured = capsys.readouterr()
    out = captured.out
    assert rc == 0, out + captured.err
    assert "refined D(nm)" in out and "patterns refined" in out
    # the newest pattern of every batch is refined: at least the last one, with a size and its e.s.d.
    summary = next(line for line in out.splitlines() if "patterns refined" in line)
    assert summary.startswith("mean |refined - true|") and int(summary.split("; ")[1].split()[0]) >= 1
    assert plot.is_file() and plot.stat().st_size > 10_000
    rc = cli_commands.main(["demo", "--system", "gold", "--refine", "--virtual-time", "--tiled-uri", store.uri])
    err = capsys.readouterr().err
    assert rc == 2 and "--refine" in err and "--system pbs" in err and len(err.strip().splitlines()) == 1


def test_cli_replay_tells_the_network_the_instrument_the_run_was_sized_with(store, tmp_path, capsys):
    import torch

    from qdots_bluesky.models.network import QDotsNet

    torch.manual_seed(0)
    net = QDotsNet(continuous_head=True, instrument_input=True)
    with torch.no_grad():
        net.presence_head.bias.fill_(4.0)
        net.instrument_film.weight.copy_(0.5 * torch.randn(net.instrument_film.weight.shape))
    model = make_bundle(tmp_path / "told.safetensors", model=net.eval())
    with LiveSizer(model=model, device="cpu", instrument_fwhm_q=(0.0, 0.0)) as sizer:
        uid, _ = scan_to_tiled(store, sizer, num=4)
    assert store.runs[uid][STREAM_NAME].metadata["configuration"]["qdots_sizer"]["data"]["instrument_known"] == 1
    args = ["replay", "--tiled-uri", store.uri, uid, "--model", str(model), "--device", "cpu", "--quiet"]
    assert cli_commands.main(args) == 0  # the stored resolution by default: the live numbers again
    out = capsys.readouterr().out
    assert "the runs were sized with live: 0 0 1/A" in out and "identical to the stored live estimates" in out
    assert cli_commands.main(args + ["--unknown-instrument"]) == 0
    out = capsys.readouterr().out
    assert "replayed with unknown" in out and "differ from the stored estimates" in out
    assert cli_commands.main(args + ["--unknown-instrument", "--instrument-fwhm", "0", "0"]) == 2
    assert "contradict" in capsys.readouterr().err
