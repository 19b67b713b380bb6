"""Reading and writing 1D powder patterns as text files (.xy, .xye, .dat, .chi, .csv).

The reader takes any column text file: comment lines (``#``, ``!``, ``;``, ``%``), free-text
header lines before the numbers (``2theta,I``, the Fit2D .chi title / axis names / point count),
columns separated by whitespace, tabs, commas or semicolons (``1,5;20,3`` with a semicolon is read
as decimal commas), 2 columns (x, y) or 3 and more (x, y, sigma; further columns are ignored).
The x unit is read from the header where it says so: our own ``x_unit`` key (written by ``qdots
simulate``), a ``unit`` key, or a column-header line of pyFAI and other reducers (``2th_deg``,
``2th_rad``, ``q_A^-1``, ``q_nm^-1``, ``2theta``, ``Q (1/A)``, the Fit2D ``2-Theta Angle (Degrees)``).
2theta in radians is converted to degrees and Q in 1/nm to 1/A; other units (``r_mm``, ``chi_deg``,
``d*2_A^-2``) are refused with the accepted ones. Without a unit in the file the caller says which.
Descending x (a scan recorded from high to low angle) is reversed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

#: Characters that start a comment line.
COMMENT_CHARS = ("#", "!", ";", "%")
#: The fewest data points a pattern may have.
MIN_POINTS = 50

#: What the reader accepts, in words (the tail of every PatternFileError message).
ACCEPTED = (
    "accepted: a text file (.xy/.xye/.dat/.chi/.csv or any text) with optional comment lines "
    "(# ! ; %) and header lines, then at least 50 rows of 2 or 3 numeric columns "
    "(x, intensity, optional sigma) separated by spaces, tabs, commas or semicolons, "
    "x strictly increasing or strictly decreasing"
)
#: The x units a file header may declare, in words.
ACCEPTED_UNITS = (
    "accepted x units: 2theta in degrees (2th_deg, 2theta, tth), 2theta in radians (2th_rad), "
    "Q in 1/A (q_A^-1, q_inv_angstrom, Q (1/A)) or Q in 1/nm (q_nm^-1, Q (1/nm); converted to 1/A)"
)
_KEY_VALUE = re.compile(r"^([A-Za-z_][^:=]{0,80}?)\s*[:=]\s*(.*?)\s*$")
_FIELD_SPLIT = re.compile(r"[\s,;]+")
_BLOCK_SKIP = re.compile(r"\n[ \t]*[#!;%\n]")
_WAVELENGTH_KEY = re.compile(r"^\s*(wave[\s_\-]*length|lambda|wl)(?![a-z])", re.I)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_UNIT = re.compile(r"^\s*\[?\(?\s*(angstroms?|ang|a|å|nm|pm|m)\b", re.I)
_UNIT_IN_KEY = re.compile(r"[\(\[_\s](angstroms?|ang|a|å|nm|pm|m)[\)\]]?\s*$", re.I)
_TO_ANGSTROM = {"a": 1.0, "å": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0,
                "nm": 10.0, "pm": 0.01, "m": 1e10}


class PatternFileError(ValueError):
    """A pattern file that cannot be read; the message names the file, the fault and what is accepted.

    ``problem`` is the fault alone (no path, no accepted tail), ``accepted`` what would be read:
    a caller reporting many files prints ``problem`` per file and ``accepted`` once.
    """

    def __init__(self, path: str | Path, problem: str, accepted: str = ACCEPTED) -> None:
        self.path, self.problem, self.accepted = str(path), problem, accepted
        super().__init__(f"{path}: {problem}; {accepted}")


@dataclass
class Pattern:
    """A 1D powder pattern as read from a file.

    ``x`` is in the file's unit (2theta in degrees or Q in 1/A), ``y`` the intensity, ``sigma``
    its standard uncertainty (None without a third column), ``source`` the file path and
    ``header`` the ``key: value`` / ``key = value`` pairs of the comment and header lines.
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    source: str
    header: dict[str, str] = field(default_factory=dict)
    #: "tth" (degrees) or "q" (1/A) when the file says which, else None.
    x_unit: str | None = None
    #: The unit as the file wrote it (e.g. "q_nm^-1"), None without one.
    x_unit_declared: str | None = None

    def wavelength_from_header(self) -> float | None:
        """Wavelength in A from a ``wavelength`` / ``lambda`` header key, or None.

        Units in the value or key (A, Angstrom, nm, pm, m) are converted; a bare number below
        1e-6 is taken as metres (pyFAI writes metres), otherwise as angstrom.
        """
        for key, value in self.header.items():
            if not _WAVELENGTH_KEY.match(key):
                continue
            number = _NUMBER.search(value)
            if number is None:
                continue
            wavelength = float(number.group(0))
            unit = _UNIT.match(value[number.end():]) or _UNIT_IN_KEY.search(key)
            if unit is not None:
                return wavelength * _TO_ANGSTROM[unit.group(1).lower()]
            return wavelength * 1e10 if 0.0 < wavelength < 1e-6 else wavelength
        return None


def read_pattern(path: str | Path) -> Pattern:
    """Read a powder pattern (x, y, optional sigma) from a column text file.

    The x unit comes from the header where it says so (see the module docstring): Q in 1/nm is
    converted to 1/A, 2theta in radians to degrees, and ``Pattern.x_unit`` says "tth" or "q".
    Descending x is reversed. Raises PatternFileError for a missing, unreadable, binary or empty
    file, fewer than 50 points, non-numeric values in the data block, NaN/inf, x not monotonic,
    or an x unit that is not accepted.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    header, start, mode, unit_line = _scan_header(lines, path)
    data, line_numbers = _parse_block(lines, start, mode, path)

    n = data.shape[0]
    if n < MIN_POINTS:
        raise PatternFileError(path, f"only {n} data points (lines {line_numbers[0]}-{line_numbers[-1]}); "
                                     f"at least {MIN_POINTS} are needed")
    used = data[:, : min(data.shape[1], 3)]
    finite = np.isfinite(used)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise PatternFileError(path, f"NaN or infinite value at line {line_numbers[row]} "
                                     f"({lines[line_numbers[row] - 1].strip()[:80]!r}); all values must be finite")
    x = data[:, 0]
    step = np.diff(x)
    if (step < 0).all():  # recorded from high to low angle: reverse, do not reject
        data, line_numbers = data[::-1], line_numbers[::-1]
        x = data[:, 0]
        step = np.diff(x)
    if not (step > 0).all():
        bad = np.flatnonzero(step <= 0)
        row = int(bad[0]) + 1
        raise PatternFileError(
            path, f"x is not strictly increasing at line {line_numbers[row]}: x = {x[row]:.10g} follows "
                  f"x = {x[row - 1]:.10g} (line {line_numbers[row - 1]}); {bad.size} such place(s). Sort the file "
                  "and remove repeated x values")
    unit, declared, scale = _x_unit(header, unit_line, path)
    x = np.ascontiguousarray(data[:, 0])
    if scale == "rad":
        x = np.degrees(x)
    elif scale != 1.0:
        x = x * scale
    y = np.ascontiguousarray(data[:, 1])
    sigma = np.ascontiguousarray(data[:, 2]) if data.shape[1] >= 3 else None
    return Pattern(x=x, y=y, sigma=sigma, source=str(path), header=header, x_unit=unit, x_unit_declared=declared)


def write_xy(path: str | Path, x: np.ndarray, y: np.ndarray, header: Mapping[str, object], columns: str = "x intensity") -> Path:
    """Write two columns (x, intensity) with a '#' header of ``key: value`` lines."""
    path = Path(path)
    lines = [f"{k}: {v}" for k, v in header.items()] + [f"columns: {columns}"]
    np.savetxt(path, np.column_stack([x, y]), fmt="%.8g", header="\n".join(lines), comments="# ")
    return path


def check_output_path(path: str | Path, option: str) -> Path:
    """Raise ValueError (naming ``option``) unless a file can be written at ``path``: its folder exists and
    is writable and the path is not a folder. Call it before long work whose result goes there."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory; accepted: a file name, e.g. {path / 'out.xy'}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: the folder {folder} does not exist; accepted: a file in an existing folder")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable; accepted: a file in a writable folder")
    return path


def check_text_file(path: str | Path, what: str) -> Path:
    """Raise ValueError saying why unless ``path`` is a readable, non-empty text file (``what`` names it)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a directory, not a file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what} {path}: file not found") from None
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise ValueError(f"{what} {path}: the file is empty")
    if _looks_binary(raw):
        raise ValueError(f"{what} {path}: looks like a binary file, not text")
    return path


def _looks_binary(raw: bytes) -> bool:
    """True for bytes with NUL or more than 1 % control characters in the first 64 kB."""
    head = raw[:65536]
    control = sum(head.count(bytes([c])) for c in (*range(0, 9), 11, *range(14, 32)))
    return b"\x00" in head or control > 0.01 * len(head)


# --------------------------------------------------------------------------------------------
#: Unit tokens (lower case, no spaces) -> (unit, scale to degrees or 1/A; "rad" = radians to degrees).
_UNIT_TOKENS: tuple[tuple[re.Pattern, str, object], ...] = (
    (re.compile(r"^(2th|2theta|2-theta|tth|twotheta|2θ)([_(\[]?(deg|degree|degrees|°)[)\]]?)?$"), "tth", 1.0),
    (re.compile(r"^2theta_deg$|^2th_deg$"), "tth", 1.0),
    (re.compile(r"^(2th|2theta|2-theta|tth|twotheta|2θ)[_(\[]?rad(ians?)?[)\]]?$"), "tth", "rad"),
    (re.compile(r"^q([_(\[]?(a|å|angstrom|ang)(\^?-1)[)\]]?|[_(\[]?1/(a|å|angstrom|ang)[)\]]?|_inv_angstrom|_inv_a)?$"),
     "q", 1.0),
    (re.compile(r"^q([_(\[]?nm\^?-1[)\]]?|[_(\[]?1/nm[)\]]?|_inv_nm)$"), "q", 0.1),
)
#: Units of other reducers' radial axes that are not 2theta or Q (pyFAI's r_mm, d*2_A^-2, chi_deg, s_nm^-1...).
_OTHER_UNITS = re.compile(r"^(r_(mm|m)|chi_(deg|rad)|d\*2_(a|nm)\^-2|d_(a|nm)|(log|log10|log1p|arcsinh)\(.*q.*\)_none)$")
_UNIT_KEYS = re.compile(r"^(x[\s_]*unit|unit|units|radial[\s_]*unit|x[\s_]*axis)$", re.I)


def _unit_token(text: str) -> str:
    """Normalize a unit text: lower case, 'Q (1/A)' -> 'q(1/a)', the first field only."""
    t = re.sub(r"\s+(?=[(\[])", "", text.strip().lower())
    return _FIELD_SPLIT.split(t, maxsplit=1)[0] if t else ""


def _classify_unit(token: str) -> tuple[str, object] | None:
    """(unit, scale) for a known unit token, ("other", None) for a refused one, None for no unit."""
    if token in ("q_inv_angstrom", "2theta_deg", "q"):
        return ("q", 1.0) if token.startswith("q") else ("tth", 1.0)
    for pattern, unit, scale in _UNIT_TOKENS:
        if pattern.match(token):
            return unit, scale
    if _OTHER_UNITS.match(token):
        return "other", None
    return None


def _x_unit(header: Mapping[str, str], unit_line: str | None, path: Path) -> tuple[str | None, str | None, object]:
    """The x unit the file declares: (unit, as written, scale); (None, None, 1.0) without one."""
    candidates = [v for k, v in header.items() if _UNIT_KEYS.match(k.strip())]
    if unit_line is not None:
        candidates.append(unit_line)
    for text in candidates:
        token = _unit_token(text)
        found = _classify_unit(token)
        if found is None:
            continue
        unit, scale = found
        if unit == "other":
            raise PatternFileError(path, f"the x unit {text.split()[0]!r} of the file header is neither 2theta nor Q",
                                   ACCEPTED_UNITS)
        return unit, text.split()[0], scale
    return None, None, 1.0


def _read_text(path: Path) -> str:
    """The file's text; PatternFileError if missing, unreadable, binary or empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PatternFileError(path, "file not found") from None
    except IsADirectoryError:
        raise PatternFileError(path, "is a directory, not a pattern file") from None
    except OSError as exc:
        raise PatternFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    if not raw.strip():
        raise PatternFileError(path, "the file is empty")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 text with a byte-order mark (Windows software)
        try:
            raw = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            pass
    if _looks_binary(raw):
        raise PatternFileError(path, "looks like a binary file (image, HDF5, instrument raw format), not text; "
                                     "integrate or export it to columns first")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _numeric_fields(line: str) -> int:
    """Number of fields if the line is all numbers (any delimiter), else 0."""
    fields = [f for f in _FIELD_SPLIT.split(line.strip()) if f]
    try:
        for f in fields:
            float(f)
    except ValueError:
        return 0
    return len(fields)


def _is_skipped(line: str) -> bool:
    s = line.lstrip()
    return not s or s[0] in COMMENT_CHARS


def _scan_header(lines: list[str], path: Path) -> tuple[dict[str, str], int, str, str | None]:
    """Header key/values, index of the first data line, the delimiter mode of the data, and the last
    header line whose first field is an x unit (a column-header line such as '2th_deg I sigma')."""
    header: dict[str, str] = {}
    unit_line: str | None = None
    one_column = 0
    n_lines = len(lines)
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if s[0] in COMMENT_CHARS:
            s = s.lstrip("#!;% \t")
        else:
            n_fields = _numeric_fields(s)
            if n_fields == 1:
                one_column += 1
            if n_fields >= 2:
                nxt = next((j for j in range(i + 1, n_lines) if not _is_skipped(lines[j])), None)
                if nxt is None or _numeric_fields(lines[nxt]) == n_fields:
                    if ";" in s:
                        return header, i, "semicolon-decimal-comma" if "," in s else "semicolon", unit_line
                    return header, i, "comma" if "," in s else "whitespace", unit_line
        match = _KEY_VALUE.match(s)
        if match:
            header.setdefault(match.group(1).strip(), match.group(2))
        elif s and _classify_unit(_unit_token(s)) is not None:
            unit_line = s
    if one_column:
        raise PatternFileError(path, f"found {one_column} line(s) with a single number and none with two or more: "
                                     "one column (intensity only?) cannot be sized without its x values")
    raise PatternFileError(path, "no rows of numbers found (only comments or text)")


def _parse_block(lines: list[str], start: int, mode: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the data block with numpy; returns the (n, ncol) array and 1-based file line numbers."""
    block = lines[start:]
    if _BLOCK_SKIP.search("\n".join(block)):  # comment or blank lines inside the data: drop them
        keep = [i for i in range(start, len(lines)) if not _is_skipped(lines[i])]
        block = [lines[i] for i in keep]
        line_numbers = np.asarray(keep) + 1
    else:
        line_numbers = np.arange(start + 1, len(lines) + 1)
    if mode != "whitespace":
        text = "\n".join(block)
        if mode == "semicolon-decimal-comma":
            text = text.replace(",", ".").replace(";", " ")
        elif mode == "semicolon":
            text = text.replace(";", " ")
        else:
            text = text.replace(",", " ")
        block = text.splitlines()
    try:
        data = np.loadtxt(block, dtype=float, comments="#", ndmin=2)
    except ValueError as exc:
        _raise_bad_line(block, line_numbers, path, exc)
    return data, line_numbers


def _raise_bad_line(rows: list[str], line_numbers: np.ndarray, path: Path, exc: Exception) -> None:
    """Find the offending line of a block numpy could not parse and raise PatternFileError."""
    n_cols = len(rows[0].split())
    for row, number in zip(rows, line_numbers):
        fields = row.split("#")[0].split()
        bad = None
        for f in fields:
            try:
                float(f)
            except ValueError:
                bad = f
                break
        if bad is not None:
            raise PatternFileError(path, f"non-numeric value {bad!r} in the data block at line {number} "
                                         f"({row.strip()[:80]!r})") from None
        if len(fields) != n_cols:
            raise PatternFileError(path, f"line {number} has {len(fields)} columns, the data before it {n_cols} "
                                         f"({row.strip()[:80]!r})") from None
    raise PatternFileError(path, f"cannot parse the data block ({exc})") from None
