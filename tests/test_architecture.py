"""The dependency rules of ARCHITECTURE.md, read from the source (every import, function-level ones included).

Rooms and what each may import inside ``qdots_bluesky`` (a room may always import itself and the package root,
for ``__version__``):

- cli -> anything;
- callbacks, plans (Bluesky glue, one room) -> predictor, estimate, models, standardize, io, units, plotting,
  refine (the optional refinement after the network; callbacks only) (sim.beamline only in callbacks/demo.py);
- file_sizing (the files side of the predictor) -> predictor, estimate, models, standardize, io, units, plotting,
  refine (``qdots predict --refine``);
- predictor -> estimate, models, standardize, units, io (plotting lazily, for its figure), compute_device,
  cluster_predictor (the answers of SAXS + WAXS task bundles) -> estimate, models, saxs_waxs_input, units,
  compute_device; compute_device (which device runs a network) -> nothing;
- saxs_waxs_input (the SAXS + WAXS models' input) -> units;
- models -> standardize, units; standardize -> units, lru; io -> units; estimate, lru, plotting, units -> nothing;
- sim.learning -> sim.physics, models, predictor, cluster_predictor, estimate, standardize, saxs_waxs_input, units, io,
  lru;
- refine (DSE refinement, pure numerics) -> sim.physics, units, io;
- sim.beamline -> sim.physics, units, lru;
- sim.physics -> units, io (the leaf file readers, for measured blanks), lru, and of third-party packages only numpy,
  scipy, ase, h5py, xraylib, tqdm, matplotlib.

Known violations are listed in ALLOWED_VIOLATIONS with the reason; the list should only shrink. Modules longer than
MAX_LINES are listed in LONG_MODULES, likewise.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qdots_bluesky"
ROOT = "qdots_bluesky"

#: Rooms, longest prefix first, and the rooms each may import.
RULES: dict[str, set[str]] = {
    "cli": {"*"},
    "callbacks": {"plans", "predictor", "estimate", "models", "standardize", "io", "units", "plotting", "refine"},
    "plans": {"predictor", "estimate", "models", "standardize", "io", "units", "plotting"},
    "file_sizing": {"predictor", "estimate", "models", "standardize", "io", "units", "plotting", "refine"},
    "predictor": {"estimate", "models", "standardize", "units", "io", "plotting", "cluster_predictor", "compute_device"},
    "cluster_predictor": {"estimate", "models", "saxs_waxs_input", "units", "compute_device"},
    "compute_device": set(),
    "saxs_waxs_input": {"units"},
    "estimate": set(),
    "models": {"standardize", "units"},
    "standardize": {"units", "lru"},
    "io": {"units"},
    "lru": set(),
    "plotting": set(),
    "units": set(),
    "refine": {"sim.physics", "units", "io"},
    "sim.learning": {"sim.physics", "models", "predictor", "cluster_predictor", "estimate", "standardize",
                     "saxs_waxs_input", "units", "io", "lru"},
    "sim.beamline": {"sim.physics", "units", "lru"},
    "sim.physics": {"units", "io", "lru"},
    "sim": set(),
}
#: Extra permissions of single modules.
MODULE_EXCEPTIONS: dict[str, set[str]] = {
    "callbacks.demo": {"sim.beamline"},  # the demo drives the simulated beamline
}
#: Third-party packages the physics core may import.
PHYSICS_THIRD_PARTY = {"numpy", "scipy", "ase", "h5py", "xraylib", "tqdm", "matplotlib"}
#: Known violations today: (module, imported room) -> reason. Fix the code, then delete the line.
ALLOWED_VIOLATIONS: dict[tuple[str, str], str] = {
}

#: The longest module, in lines.
MAX_LINES = 500
#: Modules longer than MAX_LINES, each with the reason it is one cohesive thing; keep this list empty if you can.
LONG_MODULES: dict[str, str] = {
}


def _modules() -> dict[str, Path]:
    """Dotted module name (without the package prefix; '' for the root) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _room(module: str) -> str:
    """The room of a module: the longest RULES key that is the module or a package above it."""
    for room in sorted(RULES, key=len, reverse=True):
        if module == room or module.startswith(room + "."):
            return room
    return module


def _package_of(module: str, path: Path) -> list[str]:
    parts = module.split(".") if module else []
    return parts if path.name == "__init__.py" else parts[:-1]


def imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every import of a module as (absolute dotted name, line): module level, in functions, in classes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, path)
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([ROOT, *base])
                target = f"{prefix}.{node.module}" if node.module else prefix
                if node.module is None:  # from . import x: x may be a module
                    out += [(f"{target}.{a.name}" if f"{target}.{a.name}"[len(ROOT) + 1:] in MODULES else target,
                             node.lineno) for a in node.names]
                    continue
                out.append((target, node.lineno))
            else:
                out.append((node.module or "", node.lineno))
    return out


def _internal(name: str) -> str | None:
    """The module (without the package prefix) an internal import names, or None for third-party/stdlib."""
    if name == ROOT:
        return ""
    if name.startswith(ROOT + "."):
        return name[len(ROOT) + 1:]
    return None


def violations() -> list[tuple[str, str, int]]:
    """(module, imported room, line) for every import the rules forbid."""
    bad = []
    for module, path in MODULES.items():
        if module == "":
            continue
        room = _room(module)
        allowed = RULES.get(room, set()) | MODULE_EXCEPTIONS.get(module, set()) | {room, ""}
        for name, line in imports(module, path):
            target = _internal(name)
            if target is None or "*" in allowed:
                continue
            target_room = _room(target) if target else ""
            if target_room not in allowed:
                bad.append((module, target_room, line))
    return bad


def test_every_module_has_a_room():
    unknown = [m for m in MODULES if m and _room(m) not in RULES]
    assert not unknown, f"modules outside every room of RULES: {unknown}"


def test_imports_follow_the_dependency_rules():
    found = [(m, t, line) for m, t, line in violations() if (m, t) not in ALLOWED_VIOLATIONS]
    assert not found, "imports against the rules (module, imported room, line): " + repr(found)


def test_allowed_violations_still_exist():
    current = {(m, t) for m, t, _ in violations()}
    stale = [key for key in ALLOWED_VIOLATIONS if key not in current]
    assert not stale, f"fixed: remove from ALLOWED_VIOLATIONS: {stale}"


def test_physics_imports_only_its_third_party_packages():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for module, path in MODULES.items():
        if _room(module) != "sim.physics":
            continue
        for name, line in imports(module, path):
            top = name.split(".")[0]
            if _internal(name) is None and top not in stdlib and top not in PHYSICS_THIRD_PARTY:
                bad.append((module, name, line))
    assert not bad, f"sim.physics imports outside numpy/scipy/ase/h5py/xraylib/tqdm/matplotlib: {bad}"


@pytest.mark.parametrize("module", ["io", "units", "standardize", "predictor", "file_sizing", "models",
                                    "cluster_predictor", "saxs_waxs_input", "models.task", "models.architectures",
                                    "compute_device",
                                    "models.bundle", "models.engine", "models.calibration", "models.continuous",
                                    "cli", "cli.main", "cli.common", "cli.predict", "cli.simulate", "cli.training",
                                    "cli.bluesky_commands"])
def test_the_predict_path_imports_no_heavy_package_at_module_level(module):
    """The light install (numpy, scipy, safetensors, h5py) must import these; heavier packages only in functions."""
    heavy = {"torch", "bluesky", "ophyd", "tiled", "event_model", "databroker", "zmq", "ase", "xraylib", "matplotlib",
             "tqdm", "bluesky_tiled_plugins"}
    tree = ast.parse(MODULES[module].read_text())
    top = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            top.append(node.module.split(".")[0])
    assert not set(top) & heavy, f"{module} imports {set(top) & heavy} at module level"


def test_modules_are_short():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    new = {k: v for k, v in long.items() if k not in LONG_MODULES}
    assert not new, f"modules over {MAX_LINES} lines (split them): {new}"
    shrunk = [k for k in LONG_MODULES if k not in long]
    assert not shrunk, f"now short enough: remove from LONG_MODULES: {shrunk}"
