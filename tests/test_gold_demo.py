"""``qdots demo --system gold`` end to end: gold devices under a real RunEngine, the one LiveSizer loaded with a SAXS +
WAXS task bundle, a real embedded Tiled server, the table and figure read back (a tiny untrained bundle: the
pipeline, not the accuracy)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("bluesky")

from qdots_bluesky.callbacks.demo import format_system_table, run_demo  # noqa: E402
from qdots_bluesky.callbacks.live_sizer import LiveSizer  # noqa: E402
from qdots_bluesky.cli.main import main as qdots_main  # noqa: E402

from test_cluster_predictor import tiny_bundle  # noqa: E402

SMALL = dict(q_points=300, d_min_nm=0.8, d_max_nm=4.5, decahedron_q_over_p=(0.5,))


@pytest.fixture(scope="module")
def gold_bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("gold") / "tiny_gold.safetensors")


def test_gold_demo_sizes_and_classifies_every_pattern_and_stores_the_task_keys(store, gold_bundle, tmp_path):
    with LiveSizer(model=gold_bundle, device="numpy") as sizer:
        result = run_demo(store, sizer, points=5, delay=2.0, temperature=80.0, virtual_time=True, seed=3,
                          beamline_options=SMALL, plot=tmp_path / "gold.png", echo=None, system="gold")
    assert result.num_events["primary"] == result.num_events["qdots_size"] == 5
    t = result.table
    for s in ("icosahedron", "decahedron", "fcc"):
        assert t[f"true_{s}"].shape == (5,)
    fractions = np.stack([t[f"true_{s}"] for s in ("icosahedron", "decahedron", "fcc")], axis=1)
    nucleated = np.isfinite(fractions).all(axis=1) & (fractions.sum(axis=1) > 0)
    assert np.allclose(fractions[nucleated].sum(axis=1), 1.0)
    probabilities = np.stack([t[f"p_{g}"] for g in ("icosahedral", "decahedral", "fcc")], axis=1)
    sized = np.asarray(t["outcome"]) == "sized"
    assert sized.sum() >= 3  # the tiny bundle answers once particles are there
    assert np.allclose(probabilities[sized].sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(probabilities[~sized]).all()  # no shape where no particles are found
    stored = store.runs[result.uid]["qdots_size"].read()
    assert {"shape", "shape_probabilities", "structure", "size_nm", "size_std_nm", "outcome"} <= set(stored)
    assert "size_regression_nm" not in stored  # the quantum-dot sizer's keys are not the gold task's
    text = format_system_table(t, "gold")
    assert text.splitlines()[0].split()[:4] == ["#", "t_reac(min)", "true", "D(nm)"] and len(text.splitlines()) >= 6
    assert (tmp_path / "gold.png").stat().st_size > 10_000


def test_cli_gold_demo_with_a_model_runs_and_prints_the_structure_table(store, gold_bundle, tmp_path, capsys):
    rc = qdots_main(["demo", "--system", "gold", "--model", str(gold_bundle), "--device", "numpy", "--points", "3",
                        "--delay", "2", "--virtual-time", "--max-diameter", "4.5", "--tiled-uri", store.uri,
                        "--plot", str(tmp_path / "g.png")])
    out = capsys.readouterr().out
    assert rc == 0 and "true structure" in out and "plot saved to" in out


def test_replay_of_a_gold_run_with_its_task_bundle_reproduces_the_live_answers(store, gold_bundle, capsys):
    with LiveSizer(model=gold_bundle, device="numpy") as sizer:
        result = run_demo(store, sizer, points=3, delay=2.0, temperature=80.0, virtual_time=True, seed=5,
                          beamline_options=SMALL, plot=None, echo=None, system="gold")
    rc = qdots_main(["replay", "--tiled-uri", store.uri, result.uid, "--model", str(gold_bundle), "--device", "numpy"])
    out = capsys.readouterr().out
    assert rc == 0 and "identical to the stored live estimates" in out


def test_cli_gold_demo_says_in_one_line_when_the_dots_outgrow_the_detector(store, gold_bundle, capsys):
    rc = qdots_main(["demo", "--system", "gold", "--model", str(gold_bundle), "--device", "numpy", "--points", "6",
                     "--delay", "5", "--virtual-time", "--max-diameter", "2.2", "--tiled-uri", store.uri, "--plot", ""])
    err = capsys.readouterr().err
    assert rc == 2 and "the scan stopped" in err and "outside the detector's clusters" in err
    assert "Traceback" not in err
