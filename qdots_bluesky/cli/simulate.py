"""``qdots simulate`` and ``qdots library``: DSE patterns of quantum-dot populations (needs the [sim] extra)."""
from __future__ import annotations

import time
from pathlib import Path

from .. import __version__
from .common import float_list


def add_simulate(sub) -> None:
    """Add ``simulate``: one DSE pattern of a log-normal population, written as columns."""
    p = sub.add_parser("simulate", help="DSE powder pattern of a quantum-dot population",
                       description="Compute the X-ray powder pattern of a log-normal population of near-spherical "
                                   "quantum dots with the Debye scattering equation and write it as two columns, "
                                   "with a header (wavelength_a, x_unit) that `qdots predict` reads.")
    p.add_argument("--material", default="PbS", help="built-in material (PbS, PbSe, CdSe) or the path of a CIF file (default PbS)")
    p.add_argument("--diameter", type=float, required=True, help="mean diameter in nm of the log-normal number distribution")
    p.add_argument("--dispersion", type=float, default=0.0,
                   help="relative standard deviation of the diameter, in [0, 0.5); 0 = the single nearest cluster (default 0)")
    p.add_argument("--strain", type=float, default=0.0,
                   help="fractional isotropic change of the lattice parameter, within +-0.1 (default 0)")
    p.add_argument("--wavelength", type=float, default=None,
                   help="X-ray wavelength in angstrom; needed with --tth; sets anomalous dispersion and Compton recoil "
                        "(default 0.56 when only --q is given)")
    p.add_argument("--tth", metavar="START:STOP:STEP", help="2theta grid in degrees, e.g. 0.5:84:0.0036")
    p.add_argument("--q", metavar="START:STOP:N", help="N Q points in 1/angstrom, e.g. 1:15:5004 (the default grid)")
    p.add_argument("--no-compton", action="store_true", help="leave out the incoherent (Compton) scattering")
    p.add_argument("--components", action="store_true", help="also write the crystal and Compton parts as columns 3 and 4")
    p.add_argument("--max-diameter", type=float, default=21.0,
                   help="largest cluster diameter in nm used for the distribution (default 21, as the reference series); "
                        "a larger --diameter needs a larger value")
    p.add_argument("--precision", choices=["fast", "double"], default="fast",
                   help="'fast' (float32 sine after float64 range reduction, error < 3e-7) or 'double' (default fast)")
    p.add_argument("-o", "--output", required=True, help="output text file (x, intensity) with a '#' header")
    p.add_argument("--plot", metavar="PNG", help="also save a plot of the pattern and its components")
    p.set_defaults(func=cmd_simulate)


def _population(structure, args):
    """Validate the population before any heavy work; errors name the options."""
    from ..sim.physics.population import population_weights

    if args.diameter > args.max_diameter:
        raise ValueError(f"--diameter {args.diameter:g} nm is beyond --max-diameter {args.max_diameter:g} nm, the largest "
                         "cluster used; accepted: a mean diameter up to --max-diameter, or raise --max-diameter "
                         "(more atoms, slower)")
    try:
        return population_weights(structure, args.diameter, args.dispersion, args.strain, args.max_diameter)
    except ValueError as exc:
        raise ValueError(str(exc).replace("raise the maximum cluster diameter", "raise --max-diameter")) from None


def cmd_simulate(args) -> int:
    import numpy as np

    from ..io import check_output_path, check_text_file, write_xy
    from ..sim.physics.grids import simulation_grid
    from ..sim.physics.materials import builtin_materials, get_structure
    from ..sim.physics.population import simulate_population

    check_output_path(args.output, "-o/--output")
    if args.plot:
        check_output_path(args.plot, "--plot")
        import matplotlib  # noqa: F401  (fail before the simulation when the [sim] extra is missing)
    q, tth = simulation_grid(args.tth, args.q, args.wavelength)
    wavelength = 0.56 if args.wavelength is None else args.wavelength
    if args.material.lower() not in {m.lower() for m in builtin_materials()} and Path(args.material).exists():
        check_text_file(args.material, "CIF file")
    structure = get_structure(args.material)
    pop = _population(structure, args)
    t0 = time.perf_counter()
    pattern = simulate_population(structure, args.diameter, q, args.dispersion, args.strain, wavelength,
                                  compton=not args.no_compton, precision=args.precision, progress=True,
                                  max_diameter_nm=args.max_diameter)
    elapsed = time.perf_counter() - t0
    x = tth if tth is not None else q
    header = {
        "program": f"qdots-bluesky {__version__} (qdots simulate)",
        "material": f"{structure.name} ({structure.source})",
        "mean_diameter_nm": args.diameter,
        "dispersion": args.dispersion,
        "strain": args.strain,
        "wavelength_a": wavelength,
        "x_unit": "2theta_deg" if tth is not None else "q_inv_angstrom",
        "grid": args.tth or args.q or "1:15:5004",
        "compton": not args.no_compton,
        "max_cluster_diameter_nm": args.max_diameter,
        "clusters_n": f"{int(pop.n.min())}..{int(pop.n.max())} ({pop.n.size} clusters)",
        "number_mean_diameter_of_clusters_nm": round(float(np.sum(pop.weights * pop.diameters_nm)), 4),
        "precision": args.precision,
        "intensity": "electron units per nanocrystal",
    }
    columns = "x intensity"
    y = pattern.total
    if args.components:
        y = np.column_stack([pattern.total, pattern.crystal, pattern.compton])
        columns = "x total crystal compton"
    write_xy(args.output, x, y, header, columns=columns)
    print(f"wrote {args.output}: {structure.name}, mean diameter {args.diameter} nm, dispersion {args.dispersion}, "
          f"strain {args.strain}, {x.size} points, clusters n={int(pop.n.min())}..{int(pop.n.max())}, {elapsed:.2f} s")
    if args.plot:
        from ..plotting import plot_simulated_pattern

        xlabel = "2theta (deg)" if tth is not None else "Q (1/A)"
        title = f"{structure.name}: D = {args.diameter} nm, dispersion {args.dispersion:.0%}, strain {args.strain:+.2%}"
        plot_simulated_pattern(args.plot, x, pattern.total, pattern.crystal, pattern.compton, xlabel, title)
        print(f"plot saved to {args.plot}")
    return 0


def add_library(sub) -> None:
    """Add ``library build`` and ``library info``: the grid of populations in one HDF5 file."""
    p = sub.add_parser("library", help="build or inspect a training library of DSE patterns")
    lsub = p.add_subparsers(dest="library_command", required=True)
    b = lsub.add_parser("build", help="compute the grid of populations (default: the reference grid, 1292 patterns)",
                        description="Compute DSE patterns for every mean diameter x dispersion x lattice ratio and store "
                                    "patterns, crystal and Compton parts and all parameters in one HDF5 file.")
    b.add_argument("-o", "--output", default="library.h5", help="HDF5 file to write (default library.h5)")
    b.add_argument("--material", default="PbS", help="built-in material or CIF path (default PbS)")
    b.add_argument("--diameters", type=float_list, default=None,
                   help="mean diameters in nm, START:STOP:STEP or a comma list (default 2:10:0.5, 17 values)")
    b.add_argument("--dispersions", type=float_list, default=None,
                   help="relative standard deviations, comma list or range (default 0.05,0.10,0.15,0.20)")
    b.add_argument("--lattice-ratios", type=float_list, default=None,
                   help="a/a_bulk values, comma list or range (default 19 values from 0.9975 to 1.0051)")
    b.add_argument("--wavelength", type=float, default=0.56, help="wavelength in angstrom (default 0.56)")
    b.add_argument("--tth", default="0.5:84:0.0036", metavar="START:STOP:STEP",
                   help="2theta grid in degrees (default 0.5:84:0.0036, the X04SA instrument)")
    b.add_argument("--no-tth", action="store_true", help="do not compute the 2theta grid")
    b.add_argument("--q", default="1:15:5004", metavar="START:STOP:N", help="Q grid in 1/angstrom (default 1:15:5004)")
    b.add_argument("--no-q", action="store_true", help="do not compute the Q grid")
    b.add_argument("--no-compton", action="store_true", help="leave out the incoherent (Compton) scattering")
    b.add_argument("--max-diameter", type=float, default=21.0, help="largest cluster diameter in nm (default 21)")
    b.set_defaults(func=cmd_library_build)
    i = lsub.add_parser("info", help="summarise a library file")
    i.add_argument("path", help="library HDF5 file")
    i.set_defaults(func=cmd_library_info)


def cmd_library_build(args) -> int:
    from ..io import check_output_path
    from ..sim.physics.grids import parse_range, q_grid, tth_grid
    from ..sim.physics.library import LibrarySettings, build_library

    check_output_path(args.output, "-o/--output")
    settings = LibrarySettings(material=args.material, wavelength_a=args.wavelength, compton=not args.no_compton,
                               max_diameter_nm=args.max_diameter)
    if args.diameters is not None:
        settings.mean_diameters_nm = args.diameters
    if args.dispersions is not None:
        settings.dispersions = args.dispersions
    if args.lattice_ratios is not None:
        settings.lattice_ratios = args.lattice_ratios
    if args.no_tth:
        settings.tth_grid_deg = None
    else:
        settings.tth_grid_deg = parse_range(args.tth, "--tth")
        tth_grid(*settings.tth_grid_deg)
    if args.no_q:
        settings.q_grid = None
    else:
        q0, q1, n = parse_range(args.q, "--q")
        q_grid(q0, q1, n)
        settings.q_grid = (q0, q1, int(n))
    n_patterns = len(settings.mean_diameters_nm) * len(settings.dispersions) * len(settings.lattice_ratios)
    print(f"building {n_patterns} patterns of {settings.material} -> {args.output}")
    t0 = time.perf_counter()
    build_library(settings, args.output, progress=True)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_library_info(args) -> int:
    import h5py
    import numpy as np

    from ..sim.physics.library import LIBRARY_FORMAT

    try:
        f = h5py.File(args.path, "r")
    except OSError as exc:
        raise ValueError(f"{args.path!r} is not a readable HDF5 library file: {exc}") from exc
    with f:
        if f.attrs.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"{args.path!r} is not a qdots library (format {f.attrs.get('format')!r}, expected {LIBRARY_FORMAT!r})")
        par = f["parameters"]
        n = par["mean_diameter_nm"].shape[0]
        strain = par["strain"][()]
        print(f"{args.path}: {f.attrs['format']}, material {f.attrs['material']}, created {f.attrs['created']}, "
              f"program {f.attrs['program_version']}")
        print(f"  {n} patterns: mean diameters {sorted(set(np.round(par['mean_diameter_nm'][()], 3).tolist()))} nm")
        print(f"  dispersions {sorted(set(np.round(par['dispersion'][()], 3).tolist()))}, "
              f"strains {strain.min():+.4f}..{strain.max():+.4f}")
        for name in f["grids"]:
            q = f[f"grids/{name}/q"]
            print(f"  grid {name}: {q.shape[0]} points, Q {q[0]:.4f}..{q[-1]:.4f} 1/A")
    return 0
