"""The benchmarks' shared scaffolding: host setup, alternating rounds, the ratio, tables, results, child rows.

Every benchmark script uses it the same way::

    from _harness import prepare_host
    prepare_host(__name__, all_cores=True)   # first, before JAX is imported
    ...
    rounds = alternate({"fwi_jax": ours, "PyTorch": theirs}, a.rounds)
    row |= Ratio.of(rounds["fwi_jax"], rounds["PyTorch"]).fields()
    table = print_table(rows, ["batch", Col("s/call", "seconds", "{:.2f}"), ratio_col("fwi_jax / PyTorch")])
    write_results(a.out, {"rows": rows}, table=table, args=a)

The ratio. Two sides (fwi_jax and PyTorch, a loop and its step) are timed in alternating rounds:
each round times every side once, seconds apart, so each round's pair sees the same machine state.
This VM's speed drifts by tens of % over minutes, which moves both members of a round's pair
alike: a per-round ratio cancels the drift, where a ratio of medians (each median taken over
rounds at different moments) keeps it. So every benchmark reports one definition: the median of
the per-round ratios, with their range (min-max) as its spread (`Ratio`).

The results JSON: ``{"meta": ..., <the script's content>, "table": [markdown lines]}``, where
``meta`` is the same in every file (`metadata`: date, git commit, command line and arguments, CPU
model and ISA flags, JAX device kind / count / backend / version, Python, GLIBC_TUNABLES) and
``table`` is the table the script printed (accelerator.py shows it from there).

Nothing here imports JAX at module level (`prepare_host` must run before it is imported).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

# Re-exported: one timing loop for both interpreters, kept in _sidecar (the one the PyTorch side can import).
from _sidecar import timed as timed
from _sidecar import timings as timings

from fwi_jax.device_facts import ISA_FLAGS, cpu_info

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ---- host setup ---------------------------------------------------------------------------------


def prepare_host(name: str, all_cores: bool = False, hugepages: bool = True) -> None:
    """The benchmarks' preamble: call it first, ``prepare_host(__name__)``, before JAX is imported.

    As the script's ``__main__`` it restarts once with huge pages for XLA:CPU's buffers
    (fwi_jax.cpu_runtime.use_transparent_hugepages; its sidecars and children inherit them, so
    both sides of a comparison run alike); imported (a test, a grain worker's re-import) it does
    not; ``hugepages=False`` adds them on neither side (a script says why; an inherited
    GLIBC_TUNABLES still applies, and the results' meta record it). ``all_cores``: one
    JAX CPU device per core (use_all_cpu_cores), for scripts that shard a batch of models over the
    devices.
    """
    from fwi_jax.cpu_runtime import use_all_cpu_cores, use_transparent_hugepages

    if name == "__main__" and hugepages:
        use_transparent_hugepages()
    if all_cores:
        use_all_cpu_cores()


# ---- rounds and the ratio -----------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    """The benchmarks' one median (of times, rates, ratios), as a plain float."""
    return float(statistics.median(values))


def alternate(sides: Mapping[str, Callable[[], Any]], rounds: int, quiet: bool = False) -> dict[str, list]:
    """Call every side once per round, in the order given, ``rounds`` times: {side: [its result per round]}.

    A side returns what it timed (seconds, a list of step times, a dict of them); one line per round
    goes to stderr.
    """
    out: dict[str, list] = {name: [] for name in sides}
    for r in range(rounds):
        for name, fn in sides.items():
            out[name].append(fn())
        if not quiet:
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return out


def _round_value(value: float | Sequence[float]) -> float:
    return median(value) if isinstance(value, Sequence) else float(value)


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios, and their range (see the module docstring for why)."""

    median: float
    min: float
    max: float
    per_round: tuple[float, ...]

    @classmethod
    def of(cls, numerator: Sequence, denominator: Sequence) -> Ratio:
        """numerator[r] / denominator[r] per round r; a round given as several timings counts as their median."""
        if len(numerator) != len(denominator) or not numerator:
            raise ValueError(f"need the same number of rounds on both sides, got {len(numerator)}, {len(denominator)}")
        per_round = tuple(_round_value(n) / _round_value(d) for n, d in zip(numerator, denominator, strict=True))
        return cls(median(per_round), min(per_round), max(per_round), per_round)

    def fields(self, key: str = "ratio") -> dict[str, float]:
        """The row keys: ``key`` (the median), ratio_min, ratio_max."""
        return {key: self.median, "ratio_min": self.min, "ratio_max": self.max}


def ratio_text(row: Mapping, key: str = "ratio") -> str:
    """``1.23x (1.10-1.40)``: a row's ratio and its range over rounds; "-" when it has none."""
    if row.get(key) is None:
        return "-"
    return f"{row[key]:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"


# ---- tables -------------------------------------------------------------------------------------


class Col(NamedTuple):
    """A table column: its header, the row's key (or a function of the row) and a str.format pattern.

    A missing value (absent key, None) prints as "-"; a function may return the finished text.
    """

    header: str
    value: str | Callable[[Mapping], Any]
    fmt: str = "{}"

    def cell(self, row: Mapping) -> str:
        v = self.value(row) if callable(self.value) else row.get(self.value)
        return "-" if v is None else v if isinstance(v, str) else self.fmt.format(v)


def ratio_col(header: str, key: str = "ratio") -> Col:
    return Col(header, lambda row: ratio_text(row, key))


Columns = Sequence[Col | str]  # a str: a column whose header is the row's key


def table_lines(rows: Iterable[Mapping], columns: Columns) -> list[str]:
    """A markdown table, padded so it also reads aligned in a terminal."""
    cols = [Col(c, c) if isinstance(c, str) else c for c in columns]
    cells = [[c.cell(r) for c in cols] for r in rows]
    widths = [max([len(c.header), 3, *(len(line[k]) for line in cells)]) for k, c in enumerate(cols)]

    def line(values: Iterable[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    return [line(c.header for c in cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)]


def print_table(rows: Iterable[Mapping], columns: Columns, title: str = "") -> list[str]:
    """Print ``title`` (if any) and the table after a blank line; returns the lines, for `write_results`."""
    lines = ([title, ""] if title else []) + table_lines(rows, columns)
    print("\n" + "\n".join(lines), flush=True)
    return lines


# ---- results JSON -------------------------------------------------------------------------------


def _quiet_run(cmd: Sequence[str], **kw) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine() -> dict[str, Any]:
    """CPU model, cores and the ISA flags of ISA_FLAGS it has (from /proc/cpuinfo on Linux)."""
    model, flags = cpu_info()
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "platform": platform.platform(),
    }


def _jax_facts_here() -> dict[str, Any]:
    import jax

    d = jax.devices()
    return {
        "device_kind": d[0].device_kind,
        "device_count": len(d),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }


@functools.cache
def jax_facts() -> dict[str, Any]:
    """Device kind and count, backend and version of JAX: in this process when it has imported JAX,
    else asked of a child process (importing JAX here would hold the accelerator's memory from the
    children that do the work)."""
    if "jax" in sys.modules:
        return _jax_facts_here()
    code = "import json, _harness; print(json.dumps(_harness._jax_facts_here()))"
    out = _quiet_run([sys.executable, "-c", code], cwd=HERE)
    return json.loads(out.splitlines()[-1]) if out else dict.fromkeys(("device_kind", "device_count", "backend", "jax"))


def _script_name() -> str:
    """The script as run from the repository root (benchmarks/x.py), else as given."""
    script = Path(sys.argv[0]).resolve()
    return str(script.relative_to(REPO)) if script.is_relative_to(REPO) else sys.argv[0]


def metadata(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """What every results file records about its run, under the same keys."""
    commit = _quiet_run(["git", "rev-parse", "HEAD"], cwd=REPO)
    dirty = _quiet_run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": bool(dirty) if commit else None,
        "command": " ".join([_script_name(), *sys.argv[1:]]),
        "args": vars(args) if args is not None else None,
        "machine": machine(),
        **jax_facts(),
        "python": platform.python_version(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }


def _plain(value: Any) -> Any:
    """JSON for what json does not know: numpy scalars and arrays, paths."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_results(
    path: str | Path, content: Mapping[str, Any], table: list[str] | None = None, args: argparse.Namespace | None = None
) -> Path:
    """Write ``{"meta": metadata(args), **content, "table": table}`` to ``path``; prints where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": metadata(args), **content, "table": table}
    path.write_text(json.dumps(report, indent=1, default=_plain) + "\n")
    print(f"wrote {path}")
    return path


def read_table(path: str | Path) -> list[str] | None:
    """The markdown lines a results file carries (None when it is missing or has none)."""
    try:
        return json.loads(Path(path).read_text()).get("table")
    except (OSError, ValueError, AttributeError):
        return None


# ---- child processes, one row each --------------------------------------------------------------


def child_row(script: str | Path, args: Sequence[object], env: Mapping[str, str] | None = None) -> dict:
    """Run ``python SCRIPT --child ARGS`` in a fresh process (its own peak RSS, its own JAX devices)
    and return the row it printed with `print_row` (its last stdout line)."""
    cmd = [sys.executable, str(script), "--child", *map(str, args)]
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_row(row: Mapping[str, Any]) -> None:
    """The child's side of `child_row`: one JSON line on stdout."""
    print(json.dumps(row, default=_plain), flush=True)
