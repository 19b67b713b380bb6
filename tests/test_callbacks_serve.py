"""`qdots serve` end to end: RunEngine -> Publisher -> bluesky-0MQ-proxy -> qdots serve -> Tiled (loopback only)."""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher

from _callbacks_helpers import fast_beamline, free_port
from qdots_bluesky.callbacks.live_sizer import STREAM_NAME
from qdots_bluesky.callbacks.runs import read_sizes
from qdots_bluesky.plans import insitu_synthesis
from qdots_bluesky.sim.beamline import use_virtual_time

PROXY = shutil.which("bluesky-0MQ-proxy") or os.path.join(os.path.dirname(sys.executable), "bluesky-0MQ-proxy")


def _reader(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\n"))
    stream.close()


def _wait_for(lines: queue.Queue, text: str, timeout: float, seen: list) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.skipif(not os.path.exists(PROXY), reason="bluesky-0MQ-proxy not installed")
def test_serve_sizes_runs_from_a_0mq_proxy(store, bundle):
    port_in, port_out = free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proxy = subprocess.Popen([PROXY, "--in-address", f"127.0.0.1:{port_in}", "--out-address", f"127.0.0.1:{port_out}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    serve = subprocess.Popen(
        [sys.executable, "-m", "qdots_bluesky.cli", "serve", "--zmq", f"127.0.0.1:{port_out}",
         "--tiled-uri", store.uri, "--model", str(bundle), "--device", "cpu", "--max-runs", "2", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(serve.stdout, lines), daemon=True).start()
    seen: list[str] = []
    publisher = None
    try:
        assert _wait_for(lines, "qdots serve: ready", 60, seen), "\n".join(seen)
        reactor, det = fast_beamline(seed=11)
        RE = RunEngine({})
        use_virtual_time(RE, reactor)
        publisher = Publisher(f"127.0.0.1:{port_in}")
        time.sleep(1.0)  # 0MQ subscriptions propagate through the proxy (slow joiner)
        RE.subscribe(publisher)
        direct = []
        RE.subscribe(lambda name, doc: direct.append((name, doc)))
        uids = [RE(insitu_synthesis(det, reactor, 5, 30.0))[0], RE(insitu_synthesis(det, reactor, 4, 30.0))[0]]
        assert _wait_for(lines, "stopped after 2 run(s)", 60, seen), "\n".join(seen)
        serve.wait(20)
        assert serve.returncode == 0, "\n".join(seen)
        for uid, n in zip(uids, (5, 4)):
            run = store.runs[uid]
            assert sorted(run) == ["primary", STREAM_NAME]
            assert run.metadata["stop"]["num_events"] == {"primary": n, STREAM_NAME: n}
            sizes = read_sizes(run)
            assert sizes["source_seq_num"].tolist() == list(range(1, n + 1))
            assert set(map(str, sizes["status"])) <= {"ok", "flagged"}
            assert np.isfinite(sizes["size_nm"]).all()
        assert sum("event" in line and "D =" in line for line in seen) == 9  # -v printed every estimate
        api_key = parse_qs(urlparse(store.uri).query)["api_key"][0]
        assert api_key not in "\n".join(seen)  # never printed in clear, not even with -v
    finally:
        if publisher is not None:
            publisher.close()
        _stop(serve)
        _stop(proxy)
    assert proxy.poll() is not None and serve.poll() is not None


def test_serve_refuses_bad_options(bundle, capsys):
    from qdots_bluesky import cli as cli_commands

    assert cli_commands.main(["serve", "--model", str(bundle), "--zmq", "127.0.0.1:1"]) == 2
    assert "--tiled-uri URI, --directory DIR or --catalog NAME" in capsys.readouterr().err
    assert cli_commands.main(["serve", "--model", str(bundle), "--max-runs", "0"]) == 2
    assert cli_commands.main(["serve", "--model", str(bundle), "--no-store", "--directory", "x"]) == 2
