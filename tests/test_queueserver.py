"""The queue-server way: profile_collection/startup loaded by a real RE Manager (bluesky-queueserver).

A real ``redis-server`` (loopback, free port, temporary directory, no persistence) and a real RE Manager
(``start-re-manager --startup-dir profile_collection/startup``, 0MQ on loopback) are started; through
bluesky-queueserver-api the test opens the environment (the worker runs the startup files with the simulated
devices, virtual time and a tiny model), queues ``insitu_synthesis``, runs the queue, closes the environment,
stops the manager, and reads the run with its ``qdots_size`` stream back from the profile's Tiled store
(``QDOTS_TILED_DIR`` in a temporary directory). Every process is stopped in teardown, also on failure.

Skipped only where redis-server is not installed (CI installs it: .ci/run).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _callbacks_helpers import free_port
from qdots_bluesky.callbacks.live_sizer import STREAM_NAME

ROOT = Path(__file__).resolve().parents[1]
STARTUP = ROOT / "profile_collection" / "startup"
# Hang guard only (a wedged process fails the test instead of blocking it); nothing asserts on durations.
# Loading the startup files imports torch, Tiled and the simulator: tens of seconds on a busy 2-core machine.
HANG_GUARD_S = 600.0


def _find_redis() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


REDIS = _find_redis()
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed and not found "
                                "(apt-get install redis-server): the queue server keeps its queue in Redis")


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} unreadable)"
    return f"\n--- last {n} lines of {path.name} ---\n" + "\n".join(lines[-n:])


def _poll(condition, what: str, log: Path, proc: subprocess.Popen | None = None):
    """Poll ``condition()`` until it returns a true value; fail (with the log) if the process dies or the guard runs out."""
    deadline = time.monotonic() + HANG_GUARD_S
    last_exc = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}{_tail(log)}")
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last_exc = exc
        time.sleep(0.2)
    pytest.fail(f"{what}: not done within the hang guard ({HANG_GUARD_S:.0f} s); last error {last_exc!r}{_tail(log)}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True and everything in its process group (by its id)."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        if proc.poll() is None or _group_alive(proc.pid):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            deadline = time.monotonic() + wait_s
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
    if proc.poll() is None:
        proc.wait(timeout=5)


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on a free loopback port, in a temporary directory, without persistence."""
    import redis

    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    log = tmp_path / "redis.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
                                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=2)
        _poll(client.ping, "redis-server start", log, proc)
        client.close()
        yield f"127.0.0.1:{port}"
    finally:
        _stop_group(proc)


def _manager_command() -> list[str]:
    script = Path(sys.executable).parent / "start-re-manager"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from bluesky_queueserver.manager.start_manager import start_manager; "
                                  "sys.exit(start_manager())"]


@pytest.fixture
def re_manager(tmp_path, redis_server, bundle):
    """A real RE Manager on loopback loading profile_collection/startup (simulated devices, virtual time)."""
    from bluesky_queueserver_api.zmq import REManagerAPI

    control, info = free_port(), free_port()
    tiled_dir = tmp_path / "tiled"
    log = tmp_path / "re_manager.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSERVER_", "QDOTS_"))}
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "QDOTS_TILED_DIR": str(tiled_dir), "QDOTS_MODEL": str(bundle), "QDOTS_DEVICE": "cpu",
        "QDOTS_SIM_FAST": "1", "QDOTS_VIRTUAL_TIME": "1", "QDOTS_BEC": "1", "QDOTS_PRINT_SIZES": "1",
        "QDOTS_OPERATOR": "queue test", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
    })
    cmd = [*_manager_command(),
           "--startup-dir", str(STARTUP),
           # the list of plans and devices is (re)generated on opening the environment: keep it out of the repo
           "--existing-plans-devices", str(tmp_path / "existing_plans_and_devices.yaml"),
           "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
           "--user-group-permissions", str(STARTUP / "user_group_permissions.yaml"),
           "--redis-addr", redis_server, "--redis-name-prefix", "qdots_test",
           "--zmq-control-addr", f"tcp://127.0.0.1:{control}", "--zmq-info-addr", f"tcp://127.0.0.1:{info}",
           "--zmq-publish-console", "ON", "--console-output", "ON", "--use-ipython-kernel", "OFF"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
    api = REManagerAPI(zmq_control_addr=f"tcp://127.0.0.1:{control}", zmq_info_addr=f"tcp://127.0.0.1:{info}")
    try:
        _poll(api.status, "RE Manager start", log, proc)
        yield {"api": api, "proc": proc, "log": log, "tiled_dir": tiled_dir}
    finally:
        try:
            if proc.poll() is None:  # orderly first: closes the worker (and its environment), then the manager
                api.send_request(method="manager_stop", params={"option": "safe_off"})
                proc.wait(timeout=60)
        except Exception:  # noqa: BLE001 - fall back to signals below
            pass
        finally:
            api.close()
            _stop_group(proc)


def _wait_idle(manager, what: str):
    api, log, proc = manager["api"], manager["log"], manager["proc"]
    _poll(lambda: api.status(reload=True)["manager_state"] == "idle", what, log, proc)


def test_queue_runs_insitu_synthesis_and_the_sizes_are_in_tiled(re_manager):
    from bluesky_queueserver_api import BPlan

    from qdots_bluesky.callbacks.runs import read_sizes
    from qdots_bluesky.callbacks.tiled_store import connect

    api, log, proc = re_manager["api"], re_manager["log"], re_manager["proc"]

    api.environment_open()
    _wait_idle(re_manager, "environment open")
    status = api.status(reload=True)
    assert status["worker_environment_exists"], _tail(log)

    allowed = api.plans_allowed()["plans_allowed"]
    assert set(allowed) == {"insitu_synthesis", "synthesis"}, sorted(allowed)
    assert {p["name"] for p in allowed["insitu_synthesis"]["parameters"]} >= {"detector", "reactor", "num", "delay"}
    assert {"reactor", "waxs"} <= set(api.devices_allowed()["devices_allowed"])

    num = 4
    response = api.item_add(BPlan("insitu_synthesis", "waxs", "reactor", num, 5.0, md={"sample_id": "queue-test"}))
    assert response["success"], response
    api.queue_start()
    _poll(lambda: api.status(reload=True)["items_in_history"] >= 1 and api.status()["manager_state"] == "idle",
          "queue run", log, proc)

    (item,) = api.history_get()["items"]
    assert item["result"]["exit_status"] == "completed", (item["result"], _tail(log))
    (uid,) = item["result"]["run_uids"]

    api.environment_close()
    _wait_idle(re_manager, "environment close")
    assert not api.status(reload=True)["worker_environment_exists"], _tail(log)

    # The manager stops in an orderly way and leaves no process behind (the worker's embedded Tiled server
    # must not keep the worker alive: 05-tiled stops it at interpreter shutdown).
    api.send_request(method="manager_stop", params={"option": "safe_on"})
    proc.wait(timeout=HANG_GUARD_S)
    _poll(lambda: not _group_alive(proc.pid), "RE Manager's processes exit", log)

    text = log.read_text(errors="replace")
    assert f"runs are stored in embedded Tiled server on {re_manager['tiled_dir']}" in text, _tail(log)
    assert "live sizing:" in text, _tail(log)

    with connect(directory=re_manager["tiled_dir"]) as store:
        run = store.runs[uid]
        start = run.metadata["start"]
        assert start["plan_name"] == "insitu_synthesis" and start["sample_id"] == "queue-test"
        assert start["operator"] == "queue test" and start["beamline_id"] == "qdots-sim"
        assert sorted(run) == ["primary", STREAM_NAME]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run.metadata["stop"]["num_events"] == {"primary": num, STREAM_NAME: num}
        sizes = read_sizes(run)
        assert list(sizes["source_seq_num"]) == list(range(1, num + 1))
        assert len(sizes["size_nm"]) == num and set(sizes["status"]) <= {"ok", "flagged"}
