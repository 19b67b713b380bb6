"""The ``qdots demo``, ``qdots replay`` and ``qdots serve`` subcommands.

``add_demo(sub)``, ``add_replay(sub)``, ``add_serve(sub)`` add them to an argparse subparsers
object (each sets ``func``; the function returns the exit status: 0 ok, 1 failed check, 2 bad
input or unreachable service).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import add_device_option, fail as _fail, resolve_cli_device
from ..units import XUnit

DEFAULT_DEMO_DIRECTORY = "qdots_demo_data"


# ------------------------------------------------------------------------------------------------ shared options
def _add_model_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options that choose and configure the model of ``command`` ("demo", "replay" or "serve")."""
    p.add_argument("--model", metavar="PATH",
                   help="model bundle (.safetensors) to size with (default: the shipped model of qdots-bluesky)")
    add_device_option(p)
    p.add_argument("--num-threads", type=int, default=None, metavar="N",
                   help="PyTorch CPU threads for inference with --device cpu (default: PyTorch's choice; "
                        "fewer threads leave cores to the acquisition)")
    p.add_argument("--instrument-fwhm", type=float, nargs=2, default=None, metavar=("GAUSS", "LORENTZ"),
                   help="the beamline's resolution where it is known (from a standard): Gaussian and Lorentzian FWHM "
                        "in 1/A of a capillary (synchrotron) setup, told to a model trained with an instrument input "
                        "(qdots train --known-instrument-share); recorded in the stream's configuration (default: "
                        + {"demo": "the demo's simulated detector is ideal, so the demo tells such a model 0 0 unless "
                                   "--unknown-instrument",
                           "replay": "the resolution the runs were sized with live, so that a replay reproduces "
                                     "them; unknown where they say none or with --unknown-instrument",
                           }.get(command, "unknown") + ")")
    if command == "replay":
        p.add_argument("--unknown-instrument", action="store_true",
                       help="size as of an unknown instrument even where the runs were sized live told a resolution")
    if command == "replay":
        p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                       help="patterns per inference call; results depend on model, device and chunk size only "
                            "(default: the chunk size stored with the live estimates, else 8)")
    else:
        p.add_argument("--chunk-size", type=int, default=8, metavar="N",
                       help="patterns per inference call; results depend on model, device and chunk size only, "
                            "so replays reproduce live numbers (default 8)")


def _add_store_options(p: argparse.ArgumentParser, *, default_directory: str | None, catalog: bool = True) -> None:
    g = p.add_argument_group("where runs are stored (one of)")
    g.add_argument("--tiled-uri", metavar="URI",
                   help="a running Tiled server, e.g. http://host:8000/api/v1?api_key=SECRET (runs go into its "
                        "CatalogOfBlueskyRuns node, or its 'raw' child, created if missing)")
    g.add_argument("--directory", metavar="DIR", default=None,
                   help="start an embedded Tiled server storing in this local directory (created if missing; "
                        "reuse it to read the runs again)"
                        + (f" (default {default_directory})" if default_directory else ""))
    if catalog:
        g.add_argument("--catalog", metavar="NAME",
                       help="a databroker 2.x catalog by name (databroker.catalog[NAME], i.e. a Tiled profile; runs in "
                            "its 'raw' node when it has one, as databroker.Broker.named)")
    p.add_argument("--api-key", default=None,
                   help="Tiled API key, when not in the URI (default: $TILED_API_KEY or none)")
    p.set_defaults(_default_directory=default_directory)


def _open_store(args, command: str):
    from ..callbacks.tiled_store import connect

    uri, directory, catalog = args.tiled_uri, args.directory, getattr(args, "catalog", None)
    if sum(bool(v) for v in (uri, directory, catalog)) > 1:
        raise ValueError("give only one of --tiled-uri, --directory, --catalog")
    if not (uri or directory or catalog):
        if args._default_directory is None:
            raise ValueError("say where runs are: --tiled-uri URI, --directory DIR or --catalog NAME")
        directory = args._default_directory
    import os

    api_key = args.api_key or os.environ.get("TILED_API_KEY")
    # replay reads stored runs: a mistyped --directory is an error, not a new empty store
    return connect(uri, directory=directory, catalog=catalog, api_key=api_key, create=command != "replay")


def _make_sizer(args, **options):
    from ..models.bundle import BundleError, default_bundle_path
    from ..callbacks.live_sizer import LiveSizer

    if args.model is None and not default_bundle_path().is_file():
        raise ValueError(f"no model: the shipped model {default_bundle_path()} is not there yet; train one with "
                         "`qdots train` or pass --model PATH")
    if args.model is not None and not Path(args.model).is_file():
        raise ValueError(f"--model {args.model}: no such file")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size {args.chunk_size}; accepted: an integer >= 1")
    if args.num_threads is not None and args.num_threads < 1:
        raise ValueError(f"--num-threads {args.num_threads}; accepted: an integer >= 1")
    if getattr(args, "instrument_fwhm", None) is not None:
        options["instrument_fwhm_q"] = tuple(args.instrument_fwhm)
    try:
        return LiveSizer(model=args.model, device=resolve_cli_device(args.device, batch_independent=True),
                         num_threads=args.num_threads, chunk_size=args.chunk_size or 8, **options)
    except BundleError as exc:
        raise ValueError(f"the model does not load: {exc}") from None


def _has_instrument_input(model: str | None) -> bool:
    """Whether a model bundle (None: the shipped one) was trained with an instrument input (False where it does not
    load: the sizer then says why)."""
    from ..models.bundle import BundleError, read_bundle

    try:
        return bool(read_bundle(model).config.get("instrument_input"))
    except (BundleError, OSError, ValueError):
        return False


def _errors():
    from ..callbacks.runs import RunNotFoundError
    from ..callbacks.tiled_store import TiledUnavailableError

    return (ValueError, TiledUnavailableError, RunNotFoundError)


# ------------------------------------------------------------------------------------------------ demo
def add_demo(sub) -> argparse.ArgumentParser:
    """Add ``demo``: a simulated synthesis scan sized live, stored in Tiled, read back, tabulated and plotted."""
    p = sub.add_parser(
        "demo", help="simulated synthesis scan with live sizing, stored in Tiled",
        description="Run a simulated in-situ synthesis (PbS reactor + WAXS detector) under a Bluesky RunEngine "
                    "with live quantum-dot sizing; store the run with its 'qdots_size' stream in Tiled (an "
                    "embedded server in --directory, or --tiled-uri); read it back, print a table of true and "
                    "predicted sizes and save a plot. With --system gold: a gold nanoparticle synthesis (icosahedra, "
                    "then decahedra, then fcc as they grow) seen by a SAXS + WAXS detector, sized and classified live "
                    "by the shipped gold shape + size model; the plot shows structure probabilities and size over time.")
    p.add_argument("--system", choices=("pbs", "gold"), default="pbs",
                   help="what is synthesised: pbs (quantum dots, WAXS; the default) or gold (Au clusters, SAXS + WAXS; "
                        "the first run computes the detector's cluster patterns, about a minute, cached afterwards)")
    _add_model_options(p, "demo")
    p.add_argument("--points", type=int, default=30, metavar="N", help="number of patterns in the scan (default 30)")
    p.add_argument("--delay", type=float, default=2.0, metavar="S",
                   help="seconds between patterns (default 2); the reaction advances --time-scale times faster")
    p.add_argument("--time-scale", type=float, default=60.0, metavar="X",
                   help="simulated reaction seconds per real second (default 60: 2 s apart = 2 min of reaction)")
    p.add_argument("--virtual-time", action="store_true",
                   help="do not wait: the plan's sleeps advance the simulated reaction at once")
    p.add_argument("--temperature", type=float, default=None, metavar="C",
                   help="reaction temperature in deg C: pbs 60-200 (default 140; hotter grows bigger dots), gold 20-110 "
                        "(default 80)")
    p.add_argument("--x-unit", choices=XUnit.choices(), default="tth",
                   help="detector x axis of pbs: 'tth' (2theta, X04SA-like 0.5-84 deg) or 'q' (1-15 1/A) (default tth; "
                        "gold: always Q, 0.02-15 1/A log-spaced)")
    p.add_argument("--tth-step", type=float, default=None, metavar="DEG",
                   help="2theta step of the simulated detector in degrees (default 0.0036, X04SA: 23 195 points; "
                        "0.0168 gives ~5 000 points)")
    p.add_argument("--max-diameter", type=float, default=None, metavar="NM",
                   help="largest cluster diameter (nm) the simulated detector computes patterns for (pbs: default 21, as "
                        "the reference series; 12 starts several times faster, enough below ~9 nm; gold: default 10, "
                        "at most 12; the scan stops with an error once the mean grows past it)")
    p.add_argument("--count-rate", type=float, default=None, metavar="N",
                   help="pbs: counts per second at the strongest point of the simulated detector (exposure 1 s): the "
                        "signal-to-noise ratio there is sqrt(N) (default 1e4: 100, within the training's range; the "
                        "measured X04SA colloids of the development set reach 1000-2000, i.e. ~1e6-4e6); gold: counts "
                        "per second on a unit level of the blank (default 1e4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the detector noise (default 0)")
    p.add_argument("--refine", action="store_true",
                   help="pbs: also refine the patterns by DSE on the sizing worker (qdots fit's refinement seeded by "
                        "the network, the solvent model chosen from hexane and toluene, the instrument resolution "
                        "held where the network is told it, else refined); the table and figure show the refined D_N "
                        "+- e.s.d. beside the network's. A worker behind the scan refines the newest pattern of each "
                        "batch: with --virtual-time not every one")
    p.add_argument("--unknown-instrument", action="store_true",
                   help="pbs: size as of an uncharacterised beamline, the network allowing for any instrument "
                        "resolution (default with a model trained with an instrument input: it is told the simulated "
                        "detector's, which is ideal: 0 0)")
    p.add_argument("--plot", default="qdots_demo.png", metavar="PNG",
                   help="figure of predicted vs true size over time (default qdots_demo.png; '' for none)")
    _add_store_options(p, default_directory=DEFAULT_DEMO_DIRECTORY, catalog=False)
    p.set_defaults(func=cmd_demo, command="demo")
    return p


def cmd_demo(args) -> int:
    from ..callbacks.demo import demo_title, format_system_table, plot_system_demo, run_demo
    from ..callbacks.runs import mask_api_key
    from ..io import check_output_path

    if args.points < 1:
        return _fail("demo", f"--points {args.points}; accepted: an integer >= 1")
    if not args.delay >= 0:
        return _fail("demo", f"--delay {args.delay}; accepted: seconds >= 0")
    if not args.time_scale > 0:
        return _fail("demo", f"--time-scale {args.time_scale}; accepted: a positive number")
    if args.max_diameter is not None and not args.max_diameter > 2.0:
        return _fail("demo", f"--max-diameter {args.max_diameter}; accepted: a diameter in nm above 2")
    if args.count_rate is not None and not 1e-3 <= args.count_rate <= 1e12:
        return _fail("demo", f"--count-rate {args.count_rate}; accepted: counts/s from 1e-3 to 1e12")
    if args.refine and args.system != "pbs":
        return _fail("demo", "--refine: the DSE refinement refines quantum-dot sizes; accepted with --system pbs")
    if args.plot:
        try:
            check_output_path(args.plot, "--plot")  # before the scan, not after it
        except ValueError as exc:
            return _fail("demo", str(exc))
    gold = args.system == "gold"
    temperature = args.temperature if args.temperature is not None else (80.0 if gold else 140.0)
    beamline = {}
    if args.tth_step is not None and not gold:
        beamline["tth_step"] = args.tth_step
    if args.max_diameter is not None:
        beamline["d_max_nm" if gold else "max_diameter_nm"] = args.max_diameter
    if args.count_rate is not None:
        beamline["count_rate"] = args.count_rate
    if gold and args.model is None:
        from ..models.bundle import shipped_bundle_path

        args.model = str(shipped_bundle_path("metal-shape-size"))
    if args.unknown_instrument and args.instrument_fwhm is not None:
        return _fail("demo", "--unknown-instrument and --instrument-fwhm contradict; accepted: one of them")
    if not gold and not args.unknown_instrument and args.instrument_fwhm is None and _has_instrument_input(args.model):
        args.instrument_fwhm = [0.0, 0.0]  # the simulated detector's resolution: ideal DSE patterns
    refine: dict = {}
    if args.max_diameter is not None:
        refine["max_diameter_nm"] = args.max_diameter
    if args.instrument_fwhm is not None:  # a resolution known to the beamline is known to its refinement too
        refine["instrument_fwhm"] = tuple(args.instrument_fwhm)
    try:
        sizer = _make_sizer(args, **({"refine": refine or True} if args.refine else {}))
    except _errors() as exc:
        return _fail("demo", str(exc))
    try:
        store = _open_store(args, "demo")
    except _errors() as exc:
        sizer.close()
        return _fail("demo", str(exc))
    try:
        told = getattr(sizer.predictor, "instrument_fwhm_q", None)
        instrument = ("" if gold else "; instrument resolution unknown" if told is None
                      else "; the network is told the instrument resolution: Gaussian and Lorentzian FWHM {:g} and {:g} "
                           "1/A{}".format(*told, " (an ideal detector)" if not any(told) else ""))
        print(f"model {sizer.predictor.path} on {sizer.predictor.device}{instrument}; runs stored in "
              f"{store.description}", flush=True)
        print(f"scan: {args.points} patterns, {args.delay:g} s apart"
              f"{' (virtual time)' if args.virtual_time else ''}, {temperature:g} C", flush=True)
        try:
            result = run_demo(store, sizer, points=args.points, delay=args.delay, temperature=temperature,
                              time_scale=args.time_scale, virtual_time=args.virtual_time, seed=args.seed,
                              x_unit=args.x_unit, plot=None, beamline_options=beamline, system=args.system)
        except ValueError as exc:
            return _fail("demo", str(exc))
        # the table and the replay hint first: a figure that cannot be written must not lose them
        print(f"\nrun {result.uid} read back from Tiled: streams {result.streams}, num_events {result.num_events}")
        print(format_system_table(result.table, args.system))
        where = (f"--directory {store.server.directory}" if store.server is not None
                 else f"--tiled-uri '{mask_api_key(store.uri)}'")
        print(f"re-size it later with: qdots replay {where} {result.uid[:8]} [--model NEWER.safetensors] [--write-back]")
        n_events = result.num_events.get("primary", 0)
        status = 0 if result.num_events.get(sizer.stream_name) == n_events == len(result.table["seq_num"]) else 1
        if args.plot:
            try:
                path = plot_system_demo(args.plot, result.table, args.system,
                                        title=demo_title(result.uid, temperature, sizer.predictor.path))
            except (OSError, ValueError) as exc:
                return _fail("demo", f"the figure could not be written to {args.plot}: {exc}")
            print(f"plot saved to {path}")
        return status
    finally:
        sizer.close()
        store.close()


# ------------------------------------------------------------------------------------------------ replay
def add_replay(sub) -> argparse.ArgumentParser:
    """Add ``replay``: re-size stored runs through the same LiveSizer, optionally storing the results."""
    p = sub.add_parser(
        "replay", help="re-size stored runs (e.g. with a newer model)",
        description="Read stored runs from Tiled (or a databroker catalog), pass their documents through the "
                    "same live sizing callback and print the estimates next to the stored live ones. With "
                    "--write-back the new estimates are stored as a new run (plan_name 'qdots_replay', start key "
                    "'qdots_replay_of' = the original uid) holding one 'qdots_size' stream; stored runs are "
                    "never modified.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run uid (or its first 5+ characters), scan id (a positive integer: the latest run with "
                        "it) or negative index (-1 = the latest run)")
    _add_model_options(p, "replay")
    p.add_argument("--write-back", action="store_true",
                   help="store each replay as a new run that references the original uid")
    p.add_argument("--quiet", action="store_true", help="print only the summary line of each run, not the table")
    _add_store_options(p, default_directory=None, catalog=True)
    p.set_defaults(func=cmd_replay, command="replay")
    return p


def cmd_replay(args) -> int:
    import numpy as np

    from ..callbacks.replay import replay_run
    from ..callbacks.runs import read_sizes, select_runs

    if args.unknown_instrument and args.instrument_fwhm is not None:
        return _fail("replay", "--unknown-instrument and --instrument-fwhm contradict; accepted: one of them")
    store = sizer = None
    status = 0
    try:
        store = _open_store(args, "replay")
        runs = select_runs(store.runs, args.runs, where=store.location)
        stored_instruments = [_stored_instrument(run) for run in runs]  # (one metadata read per run)
        told = _replay_instrument(args, stored_instruments)
        try:
            sizer = _make_sizer(args)
        except _errors() as exc:
            return _fail("replay", str(exc))
        for run, stored in zip(runs, stored_instruments):
            if stored != told and stored != "none":
                print(f"run {run.metadata['start']['uid'][:8]}: sized live with the instrument "
                      f"{_instrument_text(stored)}, replayed with {_instrument_text(told)}", flush=True)
            uid = run.metadata["start"]["uid"]
            live = None
            if sizer.stream_name in list(run):
                try:
                    live = read_sizes(run, sizer.stream_name)
                except Exception as exc:  # a damaged stored stream does not stop the replay
                    logging.getLogger(__name__).warning("could not read the stored estimates of %s: %s", uid[:8], exc)
            result = replay_run(run, sizer, write_to=store if args.write_back else None,
                                chunk_size="stored" if args.chunk_size is None else args.chunk_size)
            table = result.table()
            if not table:
                original = run.metadata["start"].get("qdots_replay_of")
                hint = f"; it is a replay of run {original}: replay that one" if original else ""
                print(f"run {uid}: nothing to size (no pattern found){hint}")
                status = max(status, 1)
                continue
            same = None
            if live is not None and len(live.get("size_nm", [])) == len(table["size_nm"]):
                compared = [k for k in ("size_nm", "size_std_nm", "confidence", "probabilities", "shape_probabilities")
                            if k in live and k in table]  # what the model's task publishes
                same = all(np.array_equal(np.asarray(live[k], float), np.asarray(table[k], float), equal_nan=True)
                           for k in compared)
            if not args.quiet:
                print(f"{'#':>4} {'replay D(nm)':>15} {'status':>8}" + (f" {'stored D(nm)':>15}" if live is not None else ""))
                for i in range(len(table["size_nm"])):
                    pred = (f"{table['size_nm'][i]:6.2f} ± {table['size_std_nm'][i]:4.2f}"
                            if np.isfinite(table["size_nm"][i]) else "-")
                    line = f"{int(table['source_seq_num'][i]):>4} {pred:>15} {str(table['status'][i]):>8}"
                    if live is not None and i < len(live["size_nm"]):
                        old = (f"{live['size_nm'][i]:6.2f} ± {live['size_std_nm'][i]:4.2f}"
                               if np.isfinite(live["size_nm"][i]) else "-")
                        line += f" {old:>15}"
                    print(line)
            counts = {s: int(np.sum(table["status"] == s)) for s in ("ok", "flagged", "error")}
            summary = f"run {uid}: {len(table['size_nm'])} estimates {counts}"
            if same is not None:
                summary += "; identical to the stored live estimates" if same else "; differ from the stored estimates"
            if result.new_uid:
                summary += f"; stored as run {result.new_uid}"
            print(summary, flush=True)
    except _errors() as exc:
        return _fail("replay", str(exc))
    finally:
        if sizer is not None:
            sizer.close()
        if store is not None:
            store.close()
    return status


def _stored_instrument(run) -> tuple[float, float] | None | str:
    """The instrument resolution the live sizer of a stored run told its network ((G, L) in 1/A), None where it was
    unknown, "none" where the run holds no sizer configuration that says (no qdots_size stream, older runs)."""
    from ..callbacks.schema import SIZER_OBJECT, STREAM_NAME

    try:
        data = run[STREAM_NAME].metadata["configuration"][SIZER_OBJECT]["data"]
    except (KeyError, TypeError):
        return "none"
    if "instrument_known" not in data:
        return "none"
    if not data["instrument_known"]:
        return None
    return float(data["instrument_gauss_fwhm_q"]), float(data["instrument_lorentz_fwhm_q"])


def _instrument_text(instrument) -> str:
    return "unknown" if instrument in (None, "none") else f"told {instrument[0]:g} {instrument[1]:g} 1/A"


def _replay_instrument(args, stored_instruments: list) -> tuple[float, float] | None:
    """The resolution the replay tells the network: --instrument-fwhm, none with --unknown-instrument, else the one
    the first run was sized with live where the model can be told it (so that a replay reproduces the live numbers).
    Sets ``args.instrument_fwhm`` for the sizer."""
    if args.instrument_fwhm is None and not args.unknown_instrument and _has_instrument_input(args.model):
        stored = next((i for i in stored_instruments if i != "none"), None)
        if stored is not None:
            args.instrument_fwhm = list(stored)
            print(f"telling the network the instrument the runs were sized with live: {stored[0]:g} {stored[1]:g} 1/A "
                  "(--unknown-instrument to size as of an unknown one)", flush=True)
    return None if args.instrument_fwhm is None else tuple(float(v) for v in args.instrument_fwhm)


# ------------------------------------------------------------------------------------------------ serve
def add_serve(sub) -> argparse.ArgumentParser:
    """Add ``serve``: the sizer as its own process, fed by a bluesky 0MQ proxy, writing to Tiled."""
    p = sub.add_parser(
        "serve", help="run the sizer as a service fed by a bluesky 0MQ proxy",
        description="Receive the documents of a RunEngine through a bluesky 0MQ proxy (RunEngine side: "
                    "RE.subscribe(bluesky.callbacks.zmq.Publisher('HOST:IN_PORT')); proxy: bluesky-0MQ-proxy "
                    "--in-address HOST:IN_PORT --out-address HOST:OUT_PORT), add the live 'qdots_size' stream "
                    "to every run and store the runs (raw data + estimates) in Tiled. The RunEngine side should not "
                    "write the same runs to that catalog itself. Stops on Ctrl-C / SIGTERM.")
    p.add_argument("--zmq", default="localhost:5578", metavar="HOST:PORT",
                   help="the proxy's output (subscriber) address (default localhost:5578)")
    p.add_argument("--prefix", default="", help="only documents published with this 0MQ prefix (default: all)")
    _add_model_options(p, "serve")
    _add_store_options(p, default_directory=None, catalog=True)
    p.add_argument("--no-store", action="store_true", help="do not store the runs (only print / --publish)")
    p.add_argument("--publish", metavar="HOST:PORT",
                   help="also re-publish the sized documents to this 0MQ proxy input, for further consumers")
    p.add_argument("--max-runs", type=int, default=None, metavar="N",
                   help="exit after N runs (default: run until stopped)")
    p.add_argument("--emit-from", choices=["worker", "caller"], default="worker",
                   help="thread that sends the new events downstream (default worker)")
    p.add_argument("--idle-log", type=float, default=60.0, metavar="S",
                   help="log a line when no document has arrived for S seconds (default 60)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every estimate and log at INFO level")
    p.set_defaults(func=cmd_serve, command="serve")
    return p


def cmd_serve(args) -> int:
    from ..callbacks.demo import live_printer
    from ..callbacks.serve import check_zmq_address, serve

    if args.max_runs is not None and args.max_runs < 1:
        return _fail("serve", f"--max-runs {args.max_runs}; accepted: an integer >= 1")
    if " " in args.prefix:
        return _fail("serve", "--prefix may not contain spaces")
    try:
        for option, address in (("--zmq", args.zmq), ("--publish", args.publish)):
            if address is not None:
                check_zmq_address(address, option)
        if args.idle_log is not None and not args.idle_log > 0:
            raise ValueError(f"--idle-log {args.idle_log}; accepted: seconds > 0")
    except ValueError as exc:
        return _fail("serve", str(exc))
    try:
        sizer = _make_sizer(args, emit_from=args.emit_from)
    except _errors() as exc:
        return _fail("serve", str(exc))
    store = None
    try:
        if not args.no_store:
            store = _open_store(args, "serve")
            print(f"qdots serve: storing runs in {store.description}", flush=True)
            if store.server is not None:
                print(f"qdots serve: read them with --directory {store.server.directory}", flush=True)
        elif args.tiled_uri or args.directory or getattr(args, "catalog", None):
            raise ValueError("--no-store and a storage option contradict each other")
        print(f"qdots serve: model {sizer.predictor.path} on {sizer.predictor.device}", flush=True)
        if args.verbose:
            sizer.subscribe(live_printer(None, sizer.stream_name))
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        serve(args.zmq, sizer, store=store, publish=args.publish, prefix=args.prefix.encode(), max_runs=args.max_runs,
              idle_log_s=args.idle_log)
    except _errors() as exc:
        return _fail("serve", str(exc))
    finally:
        sizer.close()
        if store is not None:
            store.close()
    return 0
