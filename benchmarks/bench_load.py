"""Sustained load: the live sizer at 50 events/s for minutes, storing everything in a Tiled server of its own process.

Run: ``python benchmarks/bench_load.py [--minutes 10] [--rate 50] [--model PATH] [--device cpu] ...``
(``--help`` lists every option).

What it does:

1. starts a real Tiled server in a separate process (``tiled serve catalog`` with a SQLite catalog, a data
   directory and a DuckDB table store in a temporary directory, loopback, an API key), and waits for it;
2. builds a ``LiveSizer`` (default: the shipped model on the CPU, one PyTorch thread) and subscribes, in this
   order, a probe (records when each estimate document is emitted) and a ``TiledWriter`` on that server
   (``sizer.subscribe(store.writer(...))``, as the profile does), so the raw events and the ``qdots_size``
   stream go to Tiled;
3. plays the RunEngine on this thread: one run whose ``primary`` stream carries a 5004-point WAXS pattern
   (simulated PbS populations in hexane with counting noise, Q 1-15 1/A) per event, ``--rate`` events per
   second for ``--minutes`` minutes, paced on the clock; a short warm-up run comes first and is not counted;
4. at the end reads the run back from Tiled (a fresh client) and counts what was stored.

Reported (one progress line per ``--report-every`` s, default a minute, then a summary):

- events in; estimates stored (rows of ``qdots_size`` read back from Tiled, and their ``source_seq_num``
  checked to be exactly 1..N); lost = events in - distinct estimates stored (must be 0); raw events stored;
- RunEngine-thread cost of the callback: the time spent in ``sizer("event", doc)`` per event (forwarding to the
  TiledWriter, which posts a batch every ``--tiled-batch`` events, plus queueing): median, p99, max;
- end-to-end latency: from the event document's ``time`` to the emission of its estimate document: median,
  p99, max;
- memory: resident set size (RSS) of this process and of the Tiled server process, per line.

Exit status 0 when nothing was lost and every estimate was stored, 1 otherwise. The figures depend on the
machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bench_callback import make_patterns, model_path, pct  # noqa: E402 - same patterns and model choice


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process (MiB); NaN when it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TiledServerProcess:
    """``tiled serve catalog`` in its own process (and process group), storing in ``directory``."""

    def __init__(self, directory: Path, timeout: float = 120.0) -> None:
        self.directory = directory
        self.port = free_port()
        self.api_key = secrets.token_hex(16)
        tiled = Path(sys.executable).parent / "tiled"
        cmd = [str(tiled)] if tiled.exists() else [sys.executable, "-m", "tiled"]
        cmd += ["serve", "catalog", str(directory / "catalog.db"), "--init",
                "-w", str(directory / "data"), "-w", f"duckdb:///{directory / 'storage.duckdb'}",
                "--api-key", self.api_key, "--host", "127.0.0.1", "--port", str(self.port)]
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.log = directory / "server.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.uri = f"http://127.0.0.1:{self.port}/api/v1?api_key={self.api_key}"
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Tiled server exited with {self.proc.returncode}; see {self.log}:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Tiled server did not answer within {timeout:.0f} s; see {self.log}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                continue


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="duration of the measured run in minutes (default 10; fractions allowed, e.g. 0.5)")
    ap.add_argument("--rate", type=float, default=50.0, help="events per second (default 50)")
    ap.add_argument("--model", help="model bundle (.safetensors) (default: the shipped model, else an untrained "
                                    "network of the same architecture)")
    ap.add_argument("--device", default="cpu", help="inference device: cpu, cuda, cuda:N, numpy, auto (default cpu)")
    ap.add_argument("--num-threads", type=int, default=1,
                    help="PyTorch CPU threads (default 1: leaves cores to the RunEngine and Tiled; 0 = PyTorch's default)")
    ap.add_argument("--chunk-size", type=int, default=8, help="patterns per inference call of the sizer (default 8)")
    ap.add_argument("--queue-size", type=int, default=10_000,
                    help="bound of the sizer's event queue (default 10000; a full queue blocks the caller, "
                         "nothing is dropped)")
    ap.add_argument("--tiled-batch", type=int, default=50,
                    help="events per TiledWriter write (default 50: one write a second at 50 events/s; "
                         "TiledWriter's own default is 10000)")
    ap.add_argument("--threaded-writer", action="store_true",
                    help="run the TiledWriter on its own thread (BufferedCallback) instead of on the caller's "
                         "and the sizer's threads")
    ap.add_argument("--patterns", type=int, default=64,
                    help="distinct simulated patterns cycled through (default 64)")
    ap.add_argument("--warmup-seconds", type=float, default=4.0,
                    help="length of the uncounted warm-up run, seconds at --rate (default 4)")
    ap.add_argument("--report-every", type=float, default=60.0,
                    help="seconds between progress lines (counts, costs, latencies, RSS) (default 60)")
    ap.add_argument("--directory", help="directory of the Tiled server's files (default: a temporary directory, "
                                        "removed at the end unless --keep)")
    ap.add_argument("--keep", action="store_true", help="keep the Tiled server's directory (its path is printed)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated patterns (default 0)")
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.report_every <= 0 or args.warmup_seconds < 0:
        ap.error("--minutes, --rate and --report-every must be positive, --warmup-seconds >= 0")
    if args.tiled_batch < 1 or args.chunk_size < 1 or args.queue_size < 1 or args.patterns < 1:
        ap.error("--tiled-batch, --chunk-size, --queue-size and --patterns must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from event_model import compose_run

    from qdots_bluesky.callbacks.live_sizer import LiveSizer
    from qdots_bluesky.callbacks.runs import read_sizes
    from qdots_bluesky.callbacks.tiled_store import connect

    tmp = Path(args.directory) if args.directory else Path(tempfile.mkdtemp(prefix="qdots-load-"))
    tmp.mkdir(parents=True, exist_ok=True)
    server = sizer = writer = None
    try:
        t = time.perf_counter()
        server = TiledServerProcess(tmp / "tiled")
        print(f"Tiled server: pid {server.pid}, {server.uri.split('?')[0]}, files in {server.directory} "
              f"(started in {time.perf_counter() - t:.1f} s)", flush=True)
        store = connect(server.uri)
        path, origin = model_path(args.model, tmp)
        print("simulating patterns ...", flush=True)
        q, Y = make_patterns(args.patterns, args.seed)
        sizer = LiveSizer(model=path, device=args.device, num_threads=args.num_threads or None,
                          chunk_size=args.chunk_size, queue_size=args.queue_size)
        t_event: dict[tuple[str, int], float] = {}  # (run uid, seq_num) -> event time
        lat_ms: list[float] = []
        emitted = {"n": 0}
        state = {"run": None}

        def probe(name, doc):  # downstream of the sizer, before the writer: when each estimate is emitted
            if name == "event" and "latency_ms" in doc["data"]:
                t0 = t_event.pop((state["run"], int(doc["data"]["source_seq_num"])), None)
                if t0 is not None:
                    lat_ms.append((time.time() - t0) * 1e3)
                emitted["n"] += 1

        sizer.subscribe(probe)
        writer = store.writer(batch_size=args.tiled_batch, threaded=args.threaded_writer)
        sizer.subscribe(writer)

        conf = {"waxs": {"data": {"waxs_q": q.tolist(), "waxs_x_unit": "q"},
                         "timestamps": {"waxs_q": 0.0, "waxs_x_unit": 0.0},
                         "data_keys": {"waxs_q": {"dtype": "array", "shape": [q.size], "source": "sim", "units": "1/A"},
                                       "waxs_x_unit": {"dtype": "string", "shape": [], "source": "sim"}}}}

        def one_run(n_events: int, report: bool):
            run = compose_run(metadata={"plan_name": "bench_load", "qdots_pattern_key": "waxs_intensity",
                                        "num_points": n_events, "rate_hz": args.rate})
            uid = run.start_doc["uid"]
            state["run"] = uid
            lat_ms.clear()
            emitted["n"] = 0
            sizer("start", run.start_doc)
            desc = run.compose_descriptor(
                name="primary", configuration=conf, object_keys={"waxs": ["waxs_intensity"]},
                data_keys={"waxs_intensity": {"dtype": "array", "shape": [q.size], "dtype_numpy": "<f8",
                                              "source": "sim", "units": "counts", "object_name": "waxs"}})
            sizer("descriptor", desc.descriptor_doc)
            call_ms: list[float] = []
            late = max_queue = 0
            period = 1.0 / args.rate
            t0 = time.perf_counter()
            next_report, mark_call, mark_lat = args.report_every, 0, 0
            for i in range(n_events):
                target = t0 + i * period
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
                elif now - target > period:
                    late += 1
                ev = desc.compose_event(data={"waxs_intensity": Y[i % len(Y)]}, timestamps={"waxs_intensity": time.time()},
                                        validate=False)
                t_event[(uid, ev["seq_num"])] = ev["time"]
                t = time.perf_counter()
                sizer("event", ev)
                call_ms.append((time.perf_counter() - t) * 1e3)
                max_queue = max(max_queue, sizer.queued)
                elapsed = time.perf_counter() - t0
                if report and (elapsed >= next_report or i == n_events - 1):
                    calls, lats = call_ms[mark_call:], list(lat_ms[mark_lat:])
                    mark_call, mark_lat = len(call_ms), len(lat_ms)
                    print(f"[{elapsed / 60:5.2f} min] events in {i + 1}, estimates emitted {emitted['n']}, "
                          f"queue {sizer.queued}; callback ms median {statistics.median(calls):.2f} "
                          f"p99 {pct(calls, 99):.2f}; latency ms median "
                          f"{statistics.median(lats) if lats else float('nan'):.1f} p99 {pct(lats, 99):.1f}; "
                          f"RSS bench {rss_mib():.0f} MiB, Tiled server {rss_mib(server.pid):.0f} MiB", flush=True)
                    next_report += args.report_every
            elapsed = time.perf_counter() - t0
            t = time.perf_counter()
            sizer("stop", run.compose_stop())
            if args.threaded_writer:
                writer.flush()
            stop_s = time.perf_counter() - t
            return uid, call_ms, late, max_queue, elapsed, stop_s

        if args.warmup_seconds > 0:
            print(f"warm-up: {args.warmup_seconds:g} s at {args.rate:g} events/s (not counted) ...", flush=True)
            one_run(max(1, int(round(args.warmup_seconds * args.rate))), report=False)
        n = max(1, int(round(args.minutes * 60 * args.rate)))
        print(f"model: {path} ({origin}); device {sizer.predictor.device}; torch threads "
              f"{args.num_threads or 'default'}; chunk {args.chunk_size}; {q.size}-point patterns; TiledWriter batch "
              f"{args.tiled_batch}{' (threaded)' if args.threaded_writer else ''}", flush=True)
        print(f"measured run: {n} events at {args.rate:g}/s for {args.minutes:g} min; RSS at start: bench "
              f"{rss_mib():.0f} MiB, Tiled server {rss_mib(server.pid):.0f} MiB", flush=True)
        uid, call_ms, late, max_queue, elapsed, stop_s = one_run(n, report=True)
        lat = list(lat_ms)

        t = time.perf_counter()
        reader = connect(server.uri)
        run = reader.runs[uid]
        sizes = read_sizes(run)
        seqs = np.asarray(sizes.get("source_seq_num", []), dtype=int)
        stored = len(seqs)
        distinct = len(set(seqs.tolist()))
        complete = bool(stored == n and np.array_equal(seqs, np.arange(1, n + 1)))
        try:
            raw_stored = int(run["primary"]["waxs_intensity"].shape[0])
        except Exception as exc:  # noqa: BLE001 - a layout this reader does not know
            raw_stored = f"? ({exc.__class__.__name__})"
        num_events = run.metadata.get("stop", {}).get("num_events")
        statuses = dict(zip(*np.unique(np.asarray(sizes.get("status", [])).astype(str), return_counts=True)))
        read_s = time.perf_counter() - t

        lost = n - distinct
        print("--- summary ---")
        print(f"events in {n}; estimates stored in Tiled {stored} (distinct source events {distinct}, seq_num "
              f"1..{n} {'complete' if complete else 'NOT complete'}); lost {lost}; raw events stored {raw_stored}; "
              f"stop num_events {num_events}; statuses {{{', '.join(f'{k}: {v}' for k, v in statuses.items())}}}")
        print(f"achieved rate {n / elapsed:.1f} events/s over {elapsed:.1f} s; late ticks {late}; "
              f"max sizer queue depth {max_queue}; stop document (pending estimates + last writes) {stop_s:.2f} s; "
              f"read back {read_s:.1f} s")
        print(f"RunEngine-thread cost of the callback (ms per event): median {statistics.median(call_ms):.3f}, "
              f"p99 {pct(call_ms, 99):.3f}, max {max(call_ms):.3f}")
        if lat:
            print(f"end-to-end latency, event time -> estimate document (ms): median {statistics.median(lat):.1f}, "
                  f"p99 {pct(lat, 99):.1f}, max {max(lat):.1f} ({len(lat)} estimates)")
        print(f"RSS at the end: bench {rss_mib():.0f} MiB, Tiled server {rss_mib(server.pid):.0f} MiB")
        return 0 if (lost == 0 and complete) else 1
    finally:
        if sizer is not None:
            sizer.close()
        if args.threaded_writer and writer is not None and hasattr(writer, "close"):
            writer.close()
        if server is not None:
            server.stop()
        if args.keep or args.directory:
            print(f"Tiled files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
