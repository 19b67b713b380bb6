"""Reading and writing 1D powder patterns as text files (.xy, .xye, .dat, .chi, .csv).

The reader takes any column text file: comment lines (``#``, ``!``, ``;``, ``%``), free-text
header lines before the numbers (``2theta,I``, the Fit2D .chi title / axis names / point count),
columns separated by whitespace, tabs, commas or semicolons (``1,5;20,3`` with a semicolon is read
as decimal commas), 2 columns (x, y) or 3 and more (x, y, sigma; further columns are ignored).
The x unit is whatever the file holds (2theta in degrees or Q in 1/A); the caller says which.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

#: Characters that start a comment line.
COMMENT_CHARS = ("#", "!", ";", "%")
#: The fewest data points a pattern may have.
MIN_POINTS = 50

_ACCEPTED = (
    "accepted: a text file (.xy/.xye/.dat/.chi/.csv or any text) with optional comment lines "
    "(# ! ; %) and header lines, then at least 50 rows of 2 or 3 numeric columns "
    "(x, intensity, optional sigma) separated by spaces, tabs, commas or semicolons, "
    "x strictly increasing"
)
_KEY_VALUE = re.compile(r"^([A-Za-z_][^:=]{0,80}?)\s*[:=]\s*(.*?)\s*$")
_FIELD_SPLIT = re.compile(r"[\s,;]+")
_BLOCK_SKIP = re.compile(r"\n[ \t]*[#!;%\n]")
_WAVELENGTH_KEY = re.compile(r"^\s*(wave[\s_\-]*length|lambda|wl)\b", re.I)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_UNIT = re.compile(r"^\s*\[?\(?\s*(angstroms?|ang|a|å|nm|pm|m)\b", re.I)
_UNIT_IN_KEY = re.compile(r"[\(\[_\s](angstroms?|ang|a|å|nm|pm|m)[\)\]]?\s*$", re.I)
_TO_ANGSTROM = {"a": 1.0, "å": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0,
                "nm": 10.0, "pm": 0.01, "m": 1e10}


class PatternFileError(ValueError):
    """A pattern file that cannot be read; the message names the file, the fault and what is accepted."""


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

    Raises PatternFileError for a missing, unreadable, binary or empty file, fewer than
    50 points, non-numeric values in the data block, NaN/inf, or x not strictly increasing.
    """
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    header, start, mode = _scan_header(lines, path)
    data, line_numbers = _parse_block(lines, start, mode, path)

    n = data.shape[0]
    if n < MIN_POINTS:
        raise PatternFileError(
            f"{path}: only {n} data points (lines {line_numbers[0]}-{line_numbers[-1]}); "
            f"at least {MIN_POINTS} are needed. {_ACCEPTED}"
        )
    used = data[:, : min(data.shape[1], 3)]
    finite = np.isfinite(used)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise PatternFileError(
            f"{path}: NaN or infinite value at line {line_numbers[row]} "
            f"({lines[line_numbers[row] - 1].strip()[:80]!r}); {_ACCEPTED}, all values finite"
        )
    x = np.ascontiguousarray(data[:, 0])
    step = np.diff(x)
    if not (step > 0).all():
        bad = np.flatnonzero(step <= 0)
        row = int(bad[0]) + 1
        raise PatternFileError(
            f"{path}: x is not strictly increasing at line {line_numbers[row]}: "
            f"x = {x[row]:.10g} follows x = {x[row - 1]:.10g} (line {line_numbers[row - 1]}); "
            f"{bad.size} such place(s). Sort the file and remove repeated x values; {_ACCEPTED}"
        )
    y = np.ascontiguousarray(data[:, 1])
    sigma = np.ascontiguousarray(data[:, 2]) if data.shape[1] >= 3 else None
    return Pattern(x=x, y=y, sigma=sigma, source=str(path), header=header)


def write_xy(path: str | Path, x: np.ndarray, y: np.ndarray, header: Mapping[str, object], columns: str = "x intensity") -> Path:
    """Write two columns (x, intensity) with a '#' header of ``key: value`` lines."""
    path = Path(path)
    lines = [f"{k}: {v}" for k, v in header.items()] + [f"columns: {columns}"]
    np.savetxt(path, np.column_stack([x, y]), fmt="%.8g", header="\n".join(lines), comments="# ")
    return path


# --------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    """The file's text; PatternFileError if missing, unreadable, binary or empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PatternFileError(f"{path}: file not found; {_ACCEPTED}") from None
    except IsADirectoryError:
        raise PatternFileError(f"{path}: is a directory, not a pattern file; {_ACCEPTED}") from None
    except OSError as exc:
        raise PatternFileError(f"{path}: cannot be read ({exc.strerror or exc}); {_ACCEPTED}") from None
    if not raw.strip():
        raise PatternFileError(f"{path}: the file is empty; {_ACCEPTED}")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 text with a byte-order mark (Windows software)
        try:
            raw = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            pass
    head = raw[:65536]
    control = sum(head.count(bytes([c])) for c in (*range(0, 9), 11, *range(14, 32)))
    if b"\x00" in head or control > 0.01 * len(head):
        raise PatternFileError(
            f"{path}: looks like a binary file (image, HDF5, instrument raw format), not text; "
            f"integrate or export it to columns first. {_ACCEPTED}"
        )
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


def _scan_header(lines: list[str], path: Path) -> tuple[dict[str, str], int, str]:
    """Header key/values, index of the first data line, and the delimiter mode of the data."""
    header: dict[str, str] = {}
    n_lines = len(lines)
    for i, line in enumerate(lines):
        s = line.strip()
        if not s:
            continue
        if s[0] in COMMENT_CHARS:
            s = s.lstrip("#!;% \t")
        else:
            n_fields = _numeric_fields(s)
            if n_fields >= 2:
                nxt = next((j for j in range(i + 1, n_lines) if not _is_skipped(lines[j])), None)
                if nxt is None or _numeric_fields(lines[nxt]) == n_fields:
                    if ";" in s:
                        return header, i, "semicolon-decimal-comma" if "," in s else "semicolon"
                    return header, i, "comma" if "," in s else "whitespace"
        match = _KEY_VALUE.match(s)
        if match:
            header.setdefault(match.group(1).strip(), match.group(2))
    raise PatternFileError(f"{path}: no rows of numbers found (only comments or text); {_ACCEPTED}")


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
            raise PatternFileError(
                f"{path}: non-numeric value {bad!r} in the data block at line {number} "
                f"({row.strip()[:80]!r}); {_ACCEPTED}"
            ) from None
        if len(fields) != n_cols:
            raise PatternFileError(
                f"{path}: line {number} has {len(fields)} columns, the data before it {n_cols} "
                f"({row.strip()[:80]!r}); {_ACCEPTED}"
            ) from None
    raise PatternFileError(f"{path}: cannot parse the data block ({exc}); {_ACCEPTED}") from None
