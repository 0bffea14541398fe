"""Check this machine for fwi_jax: versions, JAX backend and devices, data paths, a writable workdir.

    python -m fwi_jax.doctor [--workdir runs/x] [--data-root /data/flatvel-a] [--dataset flatvel-a]

Prints one line per check and a verdict; exits 1 when something would stop training.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import sys
import time
import tomllib
from pathlib import Path

import fwi_jax
from fwi_jax.cli import ArgumentParser
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.sources import scan_pairs
from fwi_jax.device_facts import describe
from fwi_jax.fileio import check_output_dir, nearest_existing
from fwi_jax.paths import CACHE_ENV, cache_root

# What each optional package is for; everything else in fwi_jax's requirements is needed to train.
OPTIONAL = {
    "grain": "data.placement=host (streaming batches from disk); device placement needs no grain",
    "tensorboardX": "TensorBoard events (config.tensorboard); metrics.jsonl is written without it",
    "tensorflow-datasets": "data.source=tfds",
    "array-record": "data.source=tfds",
    "importlib_resources": "data.source=tfds",
}
OFFLINE = "offline: carry its wheel (README, 'On an accelerator image')"


class Report:
    def __init__(self):
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def ok(self, what: str, detail: str) -> None:
        print(f"  ok    {what}: {detail}")

    def warn(self, what: str, detail: str) -> None:
        self.warnings.append(what)
        print(f"  warn  {what}: {detail}")

    def fail(self, what: str, detail: str) -> None:
        self.problems.append(what)
        print(f"  FAIL  {what}: {detail}")


def _version_tuple(version: str) -> tuple[int, ...]:
    """Release numbers, padded (1.0 == 1.0.0); a pre-release (0.11.0rc1) counts as the release before."""
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits[0]))
        if digits[0] != piece:  # 0rc1, 0.dev2, ...: below the release
            parts[-1] -= 1 if re.match(r"\d+(a|b|rc|\.?dev)", piece) else 0
            break
    return tuple(parts + [0] * (6 - len(parts)))


def requirement_floors() -> dict[str, str]:
    """{name: floor} from fwi_jax's installed metadata (pyproject.toml when run from a source tree
    that was never installed), the tfds extra included."""
    try:
        reqs = importlib.metadata.requires("fwi_jax") or []
    except importlib.metadata.PackageNotFoundError:
        project = tomllib.loads((Path(fwi_jax.__file__).parents[1] / "pyproject.toml").read_text())["project"]
        reqs = project["dependencies"] + [f'{r}; extra == "tfds"' for r in project["optional-dependencies"]["tfds"]]
    floors = {}
    for req in reqs:
        spec, _, marker = req.partition(";")
        if marker and "tfds" not in marker:
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\(\s*)?>=\s*([0-9][^,;)\s]*)\s*\)?\s*", spec)
        if m:
            floors[m[1]] = m[2]
    return floors


def check_versions(r: Report) -> None:
    r.ok("python", f"{platform.python_version()} ({sys.executable})")
    r.ok("fwi_jax", f"{fwi_jax.__version__} ({Path(fwi_jax.__file__).parent})")
    for pkg, floor in requirement_floors().items():
        try:
            version = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            if pkg in OPTIONAL:
                r.warn(pkg, f"not installed; only needed for {OPTIONAL[pkg]} (pip install '{pkg}>={floor}')")
            else:
                r.fail(pkg, f"not installed: pip install '{pkg}>={floor}' ({OFFLINE})")
            continue
        if _version_tuple(version) >= _version_tuple(floor):
            r.ok(pkg, version)
        elif pkg in ("jax", "jaxlib"):
            r.fail(
                pkg,
                f"{version} is older than fwi_jax supports ({floor}): use an image with jax>={floor}, or "
                f"install a JAX matched to this machine's CUDA / TPU runtime (never a CPU build over it)",
            )
        else:
            (r.warn if pkg in OPTIONAL else r.fail)(
                pkg, f"{version} is older than fwi_jax supports: pip install '{pkg}>={floor}' ({OFFLINE})"
            )
    if "tensorflow" in sys.modules:
        r.warn("tensorflow", "imported; fwi_jax never needs it")


def check_jax(r: Report) -> None:
    try:
        import jax
        import jax.numpy as jnp
    except Exception as e:  # a broken jaxlib install
        r.fail("jax import", str(e))
        return
    try:
        devices = jax.devices()
    except Exception as e:  # a plugin that fails to start its device
        r.fail("backend", f"JAX found no usable device: {str(e).splitlines()[0]}")
        return
    kinds = sorted({d.device_kind for d in devices})
    names = (d.metadata["Name"] or "" for d in importlib.metadata.distributions())
    plugins = sorted({n for n in names if n.startswith(("jax-cuda", "jax_cuda"))})
    if jax.default_backend() == "cpu" and plugins and "cpu" not in os.environ.get("JAX_PLATFORMS", ""):
        r.warn("backend", f"{', '.join(plugins)} installed, yet JAX runs on the CPU: check the driver / CUDA libraries")
    r.ok("backend", f"{jax.default_backend()} with {len(devices)} device(s): {', '.join(kinds)}")
    facts = describe(devices)
    where = "host RAM, shared by the CPU devices" if facts.platform == "cpu" else "per device: JAX's allocator limit"
    r.ok("memory", f"{facts.memory_text()} ({where})")
    peak = f"; datasheet dense bf16 peak {facts.bf16_peak_tflops:.0f} TFLOP/s" if facts.bf16_peak_tflops else ""
    r.ok("bfloat16", f"{'native' if facts.bf16_native else 'not native'}: {facts.bf16_note}{peak}")
    r.ok("processes", f"{jax.process_count()} (this is process {jax.process_index()})")
    if jax.default_backend() == "cpu" and len(devices) == 1 and (os.cpu_count() or 1) > 1:
        r.ok("cpu", f"{os.cpu_count()} cores; XLA uses them inside one device (data generation splits them itself)")
    t = time.perf_counter()
    try:
        y = jax.jit(lambda a: (a @ a.T).sum())(jnp.ones((256, 256)))
        y.block_until_ready()
        r.ok("compute", f"a jitted matmul ran in {time.perf_counter() - t:.2f} s (result {float(y):.0f})")
    except Exception as e:
        r.fail("compute", f"a jitted matmul failed: {e}")
    flags = os.environ.get("XLA_FLAGS")
    if flags:
        r.ok("XLA_FLAGS", flags)


def _writable(path: Path, what: str) -> str | None:
    """None if `path` (existing or not) can hold new files, else the problem (the commands' own check;
    nothing is left behind)."""
    try:
        check_output_dir(path, what)  # lookups that fail come back as ValueErrors too
    except ValueError as e:
        return str(e)
    return None


def check_paths(r: Report, workdir: str | None, data_root: str | None, dataset: str) -> None:
    cache = cache_root()
    err = _writable(cache, CACHE_ENV)
    if err:
        r.warn("cache", f"{err}, or set data.cache_dir and compilation_cache")
    else:
        sets = sorted(p.name for p in (cache / "datasets").glob("*") if (p / "val.txt").exists())
        r.ok("cache", f"{cache} ({len(sets)} generated dataset(s){': ' + ', '.join(sets[:4]) if sets else ''})")
    if workdir:
        wd = Path(workdir).expanduser().absolute()
        err = _writable(wd, "--workdir")
        if err:
            r.fail("workdir", err)
        else:
            free = shutil.disk_usage(nearest_existing(wd)).free / 1e9
            has = [d for d in ("checkpoints", "best") if (wd / d).is_dir()]
            state = "no checkpoints yet" if wd.exists() else "new"
            if has:
                state = f"holds {' and '.join(has)} (training resumes, evaluate/predict can use it)"
            (r.warn if free < 1 else r.ok)("workdir", f"{wd} writable, {free:.1f} GB free, {state}")
    if data_root:
        root = Path(data_root).expanduser()
        if not root.is_dir():
            r.fail("data root", f"{root} is not a directory")
            return
        pairs, unpaired, scheme = scan_pairs(root)
        spec = get_dataset(dataset)
        if not pairs:
            r.fail("data root", f"{root} holds no OpenFWI file pairs")
            return
        splits = [s for s in ("train.txt", "val.txt") if (root / s).is_file()]
        detail = f"{len(pairs)} pairs ({scheme} naming), {len(unpaired)} unpaired"
        detail += f"; {spec.name} has {spec.train_files + spec.val_files}"
        if len(splits) < 2:
            r.warn("data root", f"{detail}; no split files yet: python -m fwi_jax.data.prepare --root {root}")
        else:
            r.ok("data root", f"{detail}; split files present")


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m fwi_jax.doctor", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default=None, help="a workdir to check for writing")
    p.add_argument("--data-root", default=None, help="a downloaded OpenFWI dataset folder to check")
    p.add_argument("--dataset", default="flatvel-a", help="the dataset at --data-root")
    a = p.parse_args(argv)
    r = Report()
    print("fwi_jax doctor")
    check_versions(r)
    check_jax(r)
    check_paths(r, a.workdir, a.data_root, a.dataset)
    if r.problems:
        print(f"verdict: NOT READY: {', '.join(r.problems)} (see FAIL lines)")
        return 1
    extra = f" ({len(r.warnings)} warning(s): {', '.join(r.warnings)})" if r.warnings else ""
    print(f"verdict: READY to train{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
