"""Atomic file writes: readers never see half a file, and a failed write leaves the old file intact.
Append-only JSON-lines logs: readers skip a torn or malformed line, appenders cut a torn tail first."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary name beside ``path`` to write; on success it is synced and renamed
    onto ``path``, on any error it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # missing parent folders are created (check_output_file)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


# ---- append-only JSON-lines logs (metrics.jsonl): a crash can tear the last line ---------------


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The complete JSON objects of a JSON-lines file; a malformed line (a crash mid-write, an edit)
    is skipped with a warning naming its line number, never an error."""
    rows = []
    for number, line in enumerate(Path(path).read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            warnings.warn(f"{path}: line {number} is not valid JSON ({e.msg}); skipped", stacklevel=2)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            warnings.warn(f"{path}: line {number} is not a JSON object; skipped", stacklevel=2)
    return rows


def repair_jsonl_tail(path: str | os.PathLike) -> str | None:
    """Before appending to ``path``: a last line that does not end in a newline (a crash mid-write) is
    cut off, its bytes kept in ``<path>.torn`` (or, if it is whole JSON, given its newline), so the next
    line starts on a line of its own. Returns a note of what was done; None when the file was whole."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    if size == 0:
        return None
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        data = f.read()  # a metrics log is megabytes at most
        cut = data.rfind(b"\n") + 1  # 0: the whole file is one torn line
        torn = data[cut:]
        try:
            json.loads(torn)
        except ValueError:  # cut mid-line: set it aside
            with open(path.with_name(path.name + ".torn"), "ab") as keep:
                keep.write(torn + b"\n")
            f.truncate(cut)
            note = f"cut {len(torn)} byte(s) at offset {cut} and kept them in {path.name}.torn"
        else:  # whole but for its newline
            f.seek(size)
            f.write(b"\n")
            note = "it was whole but for its newline, which was added"
        f.flush()
        os.fsync(f.fileno())
    return f"{path.name}: its last line was torn (a crash mid-write): {note}"


# ---- output paths a command is given: checked before any work --------------------------------
# One rule for every command (docs/reliability.md): missing parent folders are created when the output
# is written; a folder where a file is expected, a file where a folder is expected (the path or a
# parent), a location that cannot be written and an output that is also an input are errors naming
# the path and the fix. What an existing output means is the command's own rule (replaced, resumed).


def nearest_existing(path: Path) -> Path:
    """`path` or its closest existing parent (where a folder to be created would go)."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


@contextlib.contextmanager
def _lookups_checked(flag: str, given: Path) -> Iterator[None]:
    """A path lookup that fails (e.g. under a folder without search permission) as a ValueError."""
    try:
        yield
    except OSError as e:
        raise ValueError(f"{flag} {given}: cannot check {e.filename} ({e.strerror}); choose another location") from None


def _check_writable_folder(folder: Path, flag: str, given: Path) -> None:
    """``folder`` (existing or to be created) can hold new files; errors name ``given``, the flag's path."""
    base = nearest_existing(folder)
    if not base.is_dir():
        raise ValueError(f"{flag} {given}: {base} is a file, not a folder; choose another location")
    try:
        with tempfile.NamedTemporaryFile(dir=base, prefix=".fwi_jax-write-check-"):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {given}: cannot write in {base} ({e.strerror}); choose a writable place") from None


def check_output_file(path: str | os.PathLike, flag: str = "--out", inputs: tuple = (), example: str = "") -> Path:
    """The absolute path of a file a command will write, or a ValueError naming the problem and the fix."""
    out = Path(path).expanduser().absolute()
    with _lookups_checked(flag, out):
        if out.is_dir():
            hint = f" (e.g. {out / example})" if example else ""
            raise ValueError(f"{flag} {out} is a folder; name the file to write inside it{hint}")
        _check_writable_folder(out.parent, flag, out)
        _check_not_an_input(out, flag, inputs)
    return out


def check_output_dir(path: str | os.PathLike, flag: str = "--out", inputs: tuple = ()) -> Path:
    """The absolute path of a folder a command will write into (created if missing), or a ValueError."""
    out = Path(path).expanduser().absolute()
    with _lookups_checked(flag, out):
        if out.exists() and not out.is_dir():
            raise ValueError(f"{flag} {out} is a file; name a folder (it is created if missing)")
        _check_writable_folder(out, flag, out)
        _check_not_an_input(out, flag, inputs)
    return out


def _check_not_an_input(out: Path, flag: str, inputs: tuple) -> None:
    for given in inputs:
        if given is None:
            continue
        src = Path(given).expanduser().absolute()
        if out == src or (out.exists() and src.exists() and os.path.samefile(out, src)):
            raise ValueError(f"{flag} {out} is also an input of this command; write the output elsewhere")
