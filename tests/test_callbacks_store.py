"""Beamline readiness of the Tiled side and of serve: scripts exit, run keys resolve, bad input fails clearly."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from event_model import compose_run

from qdots_bluesky import cli as cli_commands
from qdots_bluesky.callbacks.live_sizer import LiveSizer
from qdots_bluesky.callbacks.serve import SizerService, check_zmq_address
from qdots_bluesky.callbacks.runs import RunNotFoundError, mask_api_key, select_runs
from qdots_bluesky.callbacks.tiled_store import connect
from qdots_bluesky.callbacks.writers import tiled_writer_pads_numpy_arrays_wrongly

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_run(store, uid=None, scan_id=None):
    """A one-event run with the uid (and scan id) we choose, written through the store's TiledWriter."""
    md = {} if scan_id is None else {"scan_id": scan_id}
    run = compose_run(uid=uid, metadata=md)
    desc = run.compose_descriptor(name="primary", data_keys={"x": {"dtype": "number", "shape": [], "source": "t"}})
    writer = store.writer()
    writer("start", run.start_doc)
    writer("descriptor", desc.descriptor_doc)
    writer("event", desc.compose_event(data={"x": 1.0}, timestamps={"x": 0.0}))
    writer("stop", run.compose_stop())
    return run.start_doc["uid"]


def uid_with_prefix(prefix: str) -> str:
    return prefix + str(uuid.uuid4())[len(prefix):]


def test_script_that_never_closes_the_store_exits(tmp_path, store):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
        from test_callbacks_store import write_run
        from qdots_bluesky.callbacks.tiled_store import connect

        store = connect(directory={str(tmp_path / 'runs')!r})
        print(write_run(store), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    try:  # the timeout only guards against a hang; nothing is timed
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                              cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("a script that connected to an embedded Tiled server and did not close it never exited")
    assert proc.returncode == 0, proc.stderr[-3000:]
    uid = proc.stdout.split()[-1]
    # the run was stored and is served again, by a second embedded server of this process (the shared
    # test store stays usable: embedded servers share one API key)
    with connect(directory=tmp_path / "runs", create=False) as again:
        assert again.runs[uid].metadata["stop"]["exit_status"] == "success"
        server = again.server
    assert not server._server.thread.is_alive()  # the context manager closed the server
    assert len(store.runs) >= 0  # the test session's store still accepts its key


def test_digit_keys_are_scan_ids_when_such_a_scan_exists_else_uid_prefixes(store):
    # a uid that starts with 8 digits (about 2 % of uuid4), and no scan with that number
    only_uid = write_run(store, uid=uid_with_prefix("93721846"), scan_id=7)
    assert select_runs(store.runs, ["93721846"])[0].metadata["start"]["uid"] == only_uid
    # a scan with that number exists: the scan wins; the uid stays reachable with more characters
    scan = write_run(store, scan_id=61830572)
    other = write_run(store, uid=uid_with_prefix("61830572"), scan_id=8)
    assert select_runs(store.runs, ["61830572"])[0].metadata["start"]["uid"] == scan
    assert select_runs(store.runs, [other[:9]])[0].metadata["start"]["uid"] == other
    # two uids with one prefix: an error that lists both
    a = write_run(store, uid=uid_with_prefix("55501234-1"), scan_id=9)
    b = write_run(store, uid=uid_with_prefix("55501234-2"), scan_id=9)
    with pytest.raises(RunNotFoundError, match="ambiguous") as info:
        select_runs(store.runs, ["55501234"])
    assert a in str(info.value) and b in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RunNotFoundError, match="scan id 44400011 or a uid starting with '44400011'"):
        select_runs(store.runs, ["44400011"])
    assert select_runs(store.runs, [b])[0].metadata["start"]["uid"] == b
    assert select_runs(store.runs, [9])[0].metadata["start"]["uid"] == b  # the latest with scan id 9


def test_replay_of_a_missing_directory_names_it(tmp_path, bundle, capsys):
    missing = tmp_path / "MISTYPED"
    assert cli_commands.main(["replay", "--directory", str(missing), "-1", "--model", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "http" not in err
    assert not missing.exists()
    with pytest.raises(ValueError, match="does not exist"):
        connect(directory=missing, create=False)


def test_serve_checks_the_address_before_it_starts(bundle, capsys):
    rc = cli_commands.main(["serve", "--zmq", "127.0.0.1:notaport", "--no-store", "--model", str(bundle)])
    captured = capsys.readouterr()
    assert rc == 2 and "ready" not in captured.out
    (line,) = captured.err.strip().splitlines()
    assert "--zmq '127.0.0.1:notaport' is not a 0MQ address" in line and "HOST:PORT" in line
    for bad in ("localhost", "localhost:0", "host:70000", ":5578", 5578):
        with pytest.raises(ValueError, match="not a 0MQ address"):
            check_zmq_address(bad)
    assert check_zmq_address("tcp://proxy-host:5578") == "proxy-host:5578"
    assert cli_commands.main(["serve", "--idle-log", "0", "--no-store", "--model", str(bundle)]) == 2


def test_serve_logs_when_no_document_arrives(bundle, caplog):
    now = [1000.0]
    with LiveSizer(model=bundle, device="cpu") as sizer:
        service = SizerService("127.0.0.1:5999", sizer, echo=False, idle_log_s=30.0, clock=lambda: now[0])
        assert service.check_idle() is None
        now[0] += 29.0
        assert service.check_idle() is None
        now[0] += 2.0
        with caplog.at_level("WARNING", logger="qdots_bluesky.callbacks.serve"):
            message = service.check_idle()
        assert message and "no document for 31 s from tcp://127.0.0.1:5999" in message
        assert any("no document for 31 s" in r.getMessage() for r in caplog.records)
        now[0] += 10.0
        assert service.check_idle() is None  # at most one line per interval
        service._arrived("start", {})  # a document arrives: quiet again
        now[0] += 29.0
        assert service.check_idle() is None
        now[0] += 31.0
        assert "no document for 60 s" in service.check_idle()
        with pytest.raises(ValueError, match="idle_log_s"):
            SizerService("127.0.0.1:5999", sizer, echo=False, idle_log_s=0)


def test_api_keys_are_masked_and_the_writer_workaround_is_version_guarded():
    assert mask_api_key("http://h:8000/api/v1?api_key=SECRET&x=1") == "http://h:8000/api/v1?api_key=***&x=1"
    assert tiled_writer_pads_numpy_arrays_wrongly("2.0.12") and not tiled_writer_pads_numpy_arrays_wrongly("2.1.0")
