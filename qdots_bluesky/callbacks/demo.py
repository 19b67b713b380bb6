"""The end-to-end demonstration behind ``qdots demo``: a simulated synthesis, sized live, stored in Tiled.

:func:`run_demo` builds the simulated beamline (:func:`qdots_bluesky.sim.beamline.devices.make_simulated_beamline`),
subscribes ``LiveSizer -> TiledWriter`` to a RunEngine, runs
:func:`qdots_bluesky.plans.insitu_synthesis`, reads the run back from Tiled and returns
:class:`DemoResult` (the joined table of truth and estimates); :func:`format_table` and
:func:`plot_demo` present it.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from .live_sizer import STREAM_NAME, LiveSizer
from .runs import read_sizes, read_stream
from .tiled_store import TiledStore


@dataclass
class DemoResult:
    """``uid`` of the run; ``table``: per source event, the truth and the estimate read back from Tiled."""

    uid: str
    table: dict[str, np.ndarray]
    streams: list[str]
    num_events: dict[str, int]
    store_description: str
    plot: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sizes_with_truth(run: Any, stream: str = STREAM_NAME) -> dict[str, np.ndarray]:
    """Join a stored run's ``qdots_size`` stream with the reactor truth of its source events.

    Keys: ``seq_num``, ``t_scan_s`` (since the first event), ``elapsed_s`` (reaction time, when
    recorded), ``true_size_nm``, ``true_dispersion`` (NaN when not recorded), ``truth:<key>`` for every data key
    the start document's ``qdots_truth_keys`` names, and the estimate keys ``size_nm``, ``size_std_nm``,
    ``size_class_nm``, ``dispersion``, ``confidence``, ``status``, ``message`` (and ``structure``,
    ``structure_probabilities`` of a shape model; ``refined``, ``refined_size_nm``, ``refined_size_std_nm``,
    ``refined_flags`` of a refining sizer).
    """
    sizes = read_sizes(run, stream)
    n = len(sizes["size_nm"])
    source_stream = "primary"
    desc = run[stream].metadata.get("configuration", {}).get("qdots_sizer", {}).get("data", {})
    source_stream = desc.get("source_stream") or source_stream
    primary = read_stream(run, source_stream) if source_stream in list(run) else {}
    seq = np.asarray(sizes["source_seq_num"], dtype=int)
    idx = seq - 1

    def pick(key: str) -> np.ndarray:
        values = primary.get(key)
        if values is None or len(values) == 0:
            return np.full(n, np.nan)
        values = np.asarray(values, dtype=float)
        ok = (idx >= 0) & (idx < len(values))
        out = np.full(n, np.nan)
        out[ok] = values[idx[ok]]
        return out

    start = run.metadata["start"]
    truth_keys = start.get("qdots_truth_keys") or []
    size_key = next((k for k in truth_keys if k.endswith("true_size")), "reactor_true_size")
    disp_key = next((k for k in truth_keys if k.endswith("true_dispersion")), "reactor_true_dispersion")
    elapsed_key = next((k for k in truth_keys if k.endswith("elapsed")), "reactor_elapsed")
    t_event = pick("time") if "time" in primary else np.asarray(sizes.get("time", np.full(n, np.nan)), dtype=float)
    t0 = np.nanmin(t_event) if n and np.isfinite(t_event).any() else 0.0
    table = {"seq_num": seq, "t_scan_s": t_event - t0, "elapsed_s": pick(elapsed_key),
             "true_size_nm": pick(size_key), "true_dispersion": pick(disp_key)}
    for key in ("size_nm", "size_std_nm", "size_volume_nm", "size_volume_std_nm", "size_class_nm", "dispersion",
                "dispersion_std", "strain", "strain_std", "confidence", "outcome", "status", "flags", "message",
                "latency_ms", "structure", "structure_probabilities", "refined", "refined_size_nm",
                "refined_size_std_nm", "refined_flags"):
        if key in sizes:
            table[key] = sizes[key]
    for key in truth_keys:  # the rest of the truth the run names (e.g. the gold reactor's structure fractions)
        table.setdefault(f"truth:{key}", pick(key))
    return table


def _fmt(value: Any, spec: str, width: int) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-".rjust(width)
    return format(v, spec).rjust(width) if np.isfinite(v) else "-".rjust(width)


def _refined(table: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """The refined D_N and its e.s.d. (NaN where not refined) of a refining sizer's table, else None."""
    if "refined_size_nm" not in table:
        return None
    size = np.asarray(table["refined_size_nm"], dtype=float)
    return size, np.asarray(table.get("refined_size_std_nm", np.full(size.shape, np.nan)), dtype=float)


def accuracy_line(label: str, size: np.ndarray, std: np.ndarray, true: np.ndarray, extra: str = "") -> str:
    """'mean |label - true| = ... nm over N estimates (M within 2 sigma)' over the finite sizes; '' if none."""
    err = np.asarray(size, dtype=float) - np.asarray(true, dtype=float)
    good = np.isfinite(err)
    if not good.any():
        return ""
    within = np.abs(err[good]) <= 2.0 * np.asarray(std, dtype=float)[good]
    return (f"mean |{label} - true| = {np.mean(np.abs(err[good])):.2f} nm over {int(good.sum())} estimates "
            f"({int(within.sum())} within 2 sigma){extra}")


def format_table(table: dict[str, np.ndarray]) -> str:
    """A text table: event, scan time, reaction time, true size, predicted size +- uncertainty (and the refined D_N
    +- e.s.d. of a refining sizer), status."""
    continuous = "size_volume_nm" in table and np.isfinite(np.asarray(table["size_volume_nm"], dtype=float)).any()
    refined = _refined(table)
    lines = [f"{'#':>3} {'t_scan(s)':>9} {'t_reac(min)':>11} {'true D(nm)':>10} {'predicted D(nm)':>17} "
             + (f"{'D_V(nm)':>15} {'dispersion':>12} {'strain(%)':>13} " if continuous else "")
             + (f"{'refined D(nm)':>15} " if refined is not None else "")
             + f"{'class':>6} {'conf':>5}  status"]
    for i in range(len(table["seq_num"])):
        size, std = float(table["size_nm"][i]), float(table["size_std_nm"][i])
        pred = f"{size:6.2f} ± {std:4.2f}" if np.isfinite(size) else "-"
        if continuous:
            pm = [(float(table[k][i]) * f, float(table[k_std][i]) * f) for k, k_std, f in
                  (("size_volume_nm", "size_volume_std_nm", 1.0), ("dispersion", "dispersion_std", 1.0),
                   ("strain", "strain_std", 100.0))]
            pred = pred.rjust(17) + " " + " ".join((f"{v:.2f} ± {e:.2f}" if np.isfinite(v) else "-").rjust(w)
                                   for (v, e), w in zip(pm, (15, 12, 13)))
        status = str(table["status"][i])
        outcome = str(table["outcome"][i]) if "outcome" in table else "sized"
        note = ""
        if outcome not in ("sized", "error"):  # no size: say why ("no nanocrystals detected", "> 11.0 nm ...")
            note = str(table["message"][i]).split(";")[0]
        elif status == "flagged":
            note = str(table["flags"][i]) if "flags" in table else str(table["message"][i])
        elif status == "error":
            note = str(table["message"][i])
        note = f" ({note[:70]})" if note else ""
        if refined is not None:
            r, r_std = float(refined[0][i]), float(refined[1][i])
            pred = pred.rjust(17) + " " + (f"{r:6.2f} ± {r_std:4.2f}" if np.isfinite(r) else "-").rjust(15)
            refined_note = str(table["refined_flags"][i]) if "refined_flags" in table else ""
            if refined_note:
                note = f"{note} (refinement: {refined_note})" if note else f" (refinement: {refined_note})"
        lines.append(" ".join([str(int(table["seq_num"][i])).rjust(3), _fmt(table["t_scan_s"][i], ".1f", 9),
                               _fmt(table["elapsed_s"][i] / 60.0, ".1f", 11), _fmt(table["true_size_nm"][i], ".2f", 10),
                               pred.rjust(17), _fmt(table["size_class_nm"][i], ".1f", 6),
                               _fmt(table["confidence"][i], ".2f", 5)]) + f"  {status}{note}")
    ok = np.asarray([str(s) != "error" for s in table["status"]])
    size = np.where(ok, np.asarray(table["size_nm"], dtype=float), np.nan)
    line = accuracy_line("predicted", size, table["size_std_nm"], table["true_size_nm"],
                         f"; {int((~ok).sum())} errors")
    if line:
        lines.append(line)
    if refined is not None:
        n = len(table["seq_num"])
        n_refined = int(np.sum(np.asarray(table.get("refined", np.zeros(n)), dtype=float) > 0))
        n_sized = int(np.isfinite(refined[0]).sum())
        extra = f"; {n_refined} of {n} patterns refined"
        if n_refined < n:
            extra += " (a worker behind the scan refines the newest of each batch)"
        if n_sized < n_refined:
            extra += f", {n_refined - n_sized} of them without a refined size"
        line = accuracy_line("refined", refined[0], refined[1], table["true_size_nm"], extra)
        lines.append(line or f"no refined sizes{extra}")
    return "\n".join(lines)


def plot_demo(path: str | Path, table: dict[str, np.ndarray], title: str = "") -> Path:
    """Save a figure of the predicted (with 1-sigma bars, by status) and the true size over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    elapsed = np.asarray(table["elapsed_s"], dtype=float)
    use_reaction = np.isfinite(elapsed).all() and len(elapsed) > 0
    t = elapsed / 60.0 if use_reaction else np.asarray(table["t_scan_s"], dtype=float)
    status = np.asarray([str(s) for s in table["status"]])
    size = np.asarray(table["size_nm"], dtype=float)
    std = np.asarray(table["size_std_nm"], dtype=float)
    fig, ax = plt.subplots(figsize=(8, 4.8), constrained_layout=True)
    true = np.asarray(table["true_size_nm"], dtype=float)
    if np.isfinite(true).any():
        ax.plot(t, true, "-", color="k", lw=1.5, label="true mean diameter (simulation)")
    for name, color, marker in (("ok", "tab:blue", "o"), ("flagged", "tab:orange", "s")):
        m = status == name
        if m.any():
            ax.errorbar(t[m], size[m], yerr=std[m], fmt=marker, color=color, ms=4, capsize=2, lw=1,
                        label=f"predicted ± 1σ ({name})")
    refined = _refined(table)
    if refined is not None and np.isfinite(refined[0]).any():
        m = np.isfinite(refined[0])
        steps = np.diff(t)
        offset = 0.15 * float(np.median(steps[np.isfinite(steps)])) if np.isfinite(steps).any() else 0.0
        ax.errorbar(t[m] + offset, refined[0][m], yerr=refined[1][m],
                    fmt="D", color="tab:green", ms=3.5, capsize=2, lw=1, label="DSE refinement ± 1 e.s.d.")
    m = status == "error"
    if m.any():
        low = np.nanmin(np.concatenate([size[np.isfinite(size)], true[np.isfinite(true)], [2.0]]))
        ax.plot(t[m], np.full(m.sum(), low - 0.3), "x", color="tab:red", label="error (no estimate)")
    ax.set_xlabel("reaction time (min)" if use_reaction else "time since the first pattern (s)")
    ax.set_ylabel("mean diameter (nm)")
    ax.set_title(title or "Live quantum-dot sizing during a simulated synthesis")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def live_printer(stream: TextIO | None = None, stream_name: str = STREAM_NAME) -> Callable[[str, dict], None]:
    """A callback printing one line per new estimate to ``stream`` (default: the current sys.stdout)."""
    state: dict[str, Any] = {"desc": set()}

    def cb(name: str, doc: dict) -> None:
        if name == "descriptor" and doc.get("name") == stream_name:
            state["desc"].add(doc["uid"])
        elif name == "event" and doc.get("descriptor") in state["desc"]:
            d = doc["data"]
            outcome = d.get("outcome", "sized")
            text = (f"D = {d['size_nm']:5.2f} ± {d['size_std_nm']:4.2f} nm" if outcome == "sized"
                    else "no estimate" if outcome == "error" else d["message"].split(";")[0])
            extra = f" ({d['flags'] or d['message'][:60]})" if d["status"] != "ok" and outcome == "sized" else ""
            print(f"  event {d['source_seq_num']:3d}: {text}  [{d['status']}]{extra}  {d['latency_ms']:.1f} ms",
                  file=stream or sys.stdout, flush=True)

    return cb


def run_demo(store: TiledStore, sizer: LiveSizer, *, points: int = 30, delay: float = 2.0, temperature: float = 140.0,
             time_scale: float = 60.0, virtual_time: bool = False, seed: int | None = 0, x_unit: str = "tth",
             beamline_options: dict[str, Any] | None = None, plot: str | Path | None = "qdots_demo.png",
             echo: TextIO | bool | None = True, md: dict[str, Any] | None = None, system: str = "pbs") -> DemoResult:
    """Run a simulated synthesis scan with live sizing, store it in ``store``, read it back; see the module docstring.

    ``system``: "pbs" (quantum dots, WAXS) or "gold" (gold clusters, SAXS + WAXS: :mod:`.gold_demo`; the table gains
    the true structure fractions and the predicted structure probabilities; ``x_unit`` is Q).
    ``echo``: where progress goes (True: the current sys.stdout; None/False: nowhere).
    """
    if system not in ("pbs", "gold"):
        raise ValueError(f"system {system!r}; accepted: 'pbs' or 'gold'")
    if echo is True:
        echo = sys.stdout
    echo = echo or None
    from bluesky import RunEngine

    from ..plans import insitu_synthesis
    from ..sim.beamline import gold_synthesis_devices, make_simulated_beamline, use_virtual_time

    options = dict(clock="manual" if virtual_time else "real", time_scale=time_scale, temperature=temperature,
                   seed=seed, progress=echo is not None)
    if system == "pbs":
        options["x_unit"] = x_unit
    options.update(beamline_options or {})
    t0 = time.perf_counter()
    reactor, detector = (make_simulated_beamline if system == "pbs" else gold_synthesis_devices)(**options)
    if echo:
        n = np.asarray(detector.tth.get() if system == "pbs" and x_unit == "tth" else detector.q.get()).size
        print(f"simulated beamline ready ({n}-point patterns, {time.perf_counter() - t0:.1f} s)", file=echo, flush=True)
    RE = RunEngine({})
    if virtual_time:
        use_virtual_time(RE, reactor)
    writer = store.writer()
    tokens = [sizer.subscribe(writer)]
    if echo:
        tokens.append(sizer.subscribe(live_printer(echo, sizer.stream_name)))
    RE.subscribe(sizer)
    from bluesky.utils import FailedStatus

    try:
        result = RE(insitu_synthesis(detector, reactor, points, delay, md=md or {}))
    except FailedStatus as exc:  # a device failed (e.g. the dots grew past the detector's clusters): say why, once
        cause = exc.__cause__ or exc
        raise ValueError(f"the scan stopped: {cause}") from None
    finally:
        for token in tokens:
            sizer.unsubscribe(token)
    uids = tuple(result) if isinstance(result, (tuple, list)) else tuple(getattr(result, "run_start_uids", ()))
    if not uids:
        raise RuntimeError("the scan produced no run")
    uid = uids[-1]
    run = store.runs[uid]
    table = sizes_with_truth(run, sizer.stream_name)
    if system == "gold":
        from .gold_demo import gold_table

        table = gold_table(table)
    out = DemoResult(uid=uid, table=table, streams=sorted(run), num_events=dict(run.metadata["stop"]["num_events"]),
                     store_description=store.description)
    if plot:
        out.plot = plot_system_demo(plot, table, system, title=demo_title(uid, temperature, sizer.predictor.path))
    return out


def plot_system_demo(path: str | Path, table: dict[str, np.ndarray], system: str, title: str = "") -> Path:
    """The demo's figure for its system: size over time (pbs); structure probabilities and size over time (gold)."""
    if system == "gold":
        from .gold_demo import plot_gold_demo

        return plot_gold_demo(path, table, title)
    return plot_demo(path, table, title)


def format_system_table(table: dict[str, np.ndarray], system: str) -> str:
    """The demo's text table for its system (:func:`format_table`, or the gold one with structures)."""
    if system == "gold":
        from .gold_demo import format_gold_table

        return format_gold_table(table)
    return format_table(table)


def demo_title(uid: str, temperature: float, model_path: Any) -> str:
    """The title of the demo figure: run, reaction temperature (deg C), model file."""
    return f"qdots demo: run {uid[:8]}, {temperature:g} °C, model {Path(str(model_path)).name}"
