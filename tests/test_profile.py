"""The IPython profile (profile_collection/startup): the startup files run in order and a short plan works."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qdots_bluesky.callbacks.live_sizer import STREAM_NAME
from qdots_bluesky.callbacks.runs import read_sizes

PROFILE = Path(__file__).resolve().parents[1] / "profile_collection"
STARTUP = sorted((PROFILE / "startup").glob("*.py"))


def _env(store, bundle):
    return {"QDOTS_TILED_URI": store.uri, "QDOTS_MODEL": str(bundle), "QDOTS_DEVICE": "cpu", "QDOTS_SIM_FAST": "1",
            "QDOTS_VIRTUAL_TIME": "1", "QDOTS_BEC": "1", "QDOTS_BEC_PLOTS": "0", "QDOTS_PRINT_SIZES": "1"}


def test_startup_files_in_order_then_a_plan(store, bundle, monkeypatch, capsys):
    assert [p.name for p in STARTUP] == ["00-base.py", "05-tiled.py", "10-devices.py", "20-sizing.py", "30-plans.py"]
    for key, value in _env(store, bundle).items():
        monkeypatch.setenv(key, value)
    ns: dict = {"__name__": "__main__"}
    try:
        for path in STARTUP:  # as IPython does: in name order, one namespace
            exec(compile(path.read_text(), str(path), "exec"), ns)
        for name in ("RE", "bec", "tiled_store", "catalog", "reactor", "waxs", "sizer", "synthesis", "show_sizes"):
            assert name in ns, name
        (uid,) = ns["RE"](ns["synthesis"](4, 60.0, md={"operator": "profile test"}))
        run = ns["catalog"][uid]
        assert sorted(run) == ["primary", STREAM_NAME]
        assert run.metadata["stop"]["num_events"] == {"primary": 4, STREAM_NAME: 4}
        assert run.metadata["start"]["beamline_id"] == "qdots-sim"
        assert len(read_sizes(run)["size_nm"]) == 4
        table = ns["show_sizes"]()
        assert len(table["size_nm"]) == 4
        out = capsys.readouterr().out
        assert "live sizing:" in out and "predicted D(nm)" in out and "event   4: D =" in out
    finally:
        if ns.get("sizer") is not None:
            ns["sizer"].close()


@pytest.mark.skipif(shutil.which("ipython") is None and not (Path(sys.executable).parent / "ipython").exists(),
                    reason="IPython is not installed")
def test_ipython_profile_dir_runs_a_plan(store, bundle, tmp_path):
    profile = tmp_path / "profile_collection"  # a copy: IPython writes history and logs into the profile dir
    shutil.copytree(PROFILE / "startup", profile / "startup")
    ipython = shutil.which("ipython") or str(Path(sys.executable).parent / "ipython")
    env = {**os.environ, **_env(store, bundle), "QDOTS_BEC": "0", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    code = ("(uid,) = RE(synthesis(3, 60.0)); run = catalog[uid]; "
            "print('RESULT', sorted(run), run.metadata['stop']['num_events']); sizer.close()")
    proc = subprocess.run([ipython, f"--profile-dir={profile}", "--no-banner", "--colors=NoColor", "-c", code],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT ['primary', 'qdots_size'] {'primary': 3, 'qdots_size': 3}" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("ipython") is None and not (Path(sys.executable).parent / "ipython").exists(),
                    reason="IPython is not installed")
def test_ipython_session_with_the_embedded_server_exits_without_closing_anything(bundle, tmp_path):
    """The default profile starts an embedded Tiled server in a directory; a session that runs a plan and ends
    (here: the end of -c, as `exit` does) must end by itself, with no store or sizer closed by the user."""
    profile = tmp_path / "profile_collection"
    shutil.copytree(PROFILE / "startup", profile / "startup")
    ipython = shutil.which("ipython") or str(Path(sys.executable).parent / "ipython")
    env = {k: v for k, v in os.environ.items() if k != "QDOTS_TILED_URI"}
    env.update({"QDOTS_TILED_DIR": str(tmp_path / "runs"), "QDOTS_MODEL": str(bundle), "QDOTS_DEVICE": "cpu",
                "QDOTS_SIM_FAST": "1", "QDOTS_VIRTUAL_TIME": "1", "QDOTS_BEC": "0", "MPLBACKEND": "Agg",
                "HOME": str(tmp_path)})
    code = "(uid,) = RE(synthesis(2, 60.0)); print('RESULT', sorted(catalog[uid]))"
    try:
        proc = subprocess.run([ipython, f"--profile-dir={profile}", "--no-banner", "--colors=NoColor", "-c", code],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    except subprocess.TimeoutExpired as exc:  # a hang guard, not a timing figure
        pytest.fail(f"the IPython session did not exit: {exc.stdout!r} {exc.stderr!r}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT ['primary', 'qdots_size']" in proc.stdout
    assert str(tmp_path / "runs") in proc.stdout  # start-up says where the runs go
