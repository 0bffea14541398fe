"""Generate an OpenFWI-format dataset with the built-in velocity families and acoustic solver.

    python -m fwi_jax.data.generate --family flatvel-a --num 1000 --out data/flatvel-a \
        [--mode exact|fast] [--seed 0] [--file-size 500]

Layout (as OpenFWI's Vel family): ``data/dataK.npy`` (K, 5, 1000, 70) float32 seismic,
``model/modelK.npy`` (K, 1, 70, 70) float32 velocity in m/s, K = 1, 2, ...; split files
``train.txt`` / ``val.txt`` / ``all.txt`` hold tab-separated relative path pairs, and
``generation.json`` records the settings. Re-running the same command resumes: complete files
are kept, each file is written under a temporary name and renamed, and map i of a (family, seed)
stream is the same whatever was generated before it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fwi_jax.cli import ArgumentParser
from fwi_jax.cpu_runtime import use_all_cpu_cores
from fwi_jax.data import velocity
from fwi_jax.fileio import atomic_path, atomic_write_text, check_output_dir
from fwi_jax.physics import forward, openfwi_geometry

MANIFEST = "generation.json"


@dataclasses.dataclass(frozen=True)
class GenerationSpec:
    family: str
    num: int
    seed: int = 0
    mode: str = "exact"
    file_size: int = 500
    layout: str = "released"
    val_files: int | None = None  # default: ~1/5 of the files, at least 1 when there are 2+

    def num_files(self) -> int:
        return -(-self.num // self.file_size)

    def file_range(self, k: int) -> tuple[int, int]:
        """Sample indices [start, stop) of file k (1-based)."""
        start = (k - 1) * self.file_size
        return start, min(start + self.file_size, self.num)

    def identity(self) -> dict:
        """Settings that determine file contents; a resumed run must match them."""
        return {
            "family": self.family,
            "seed": self.seed,
            "mode": self.mode,
            "file_size": self.file_size,
            "layout": self.layout,
        }


def _file_complete(path: Path, shape: tuple[int, ...]) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError):  # missing, corrupt, truncated or empty: made again
        return False
    return arr.shape == shape and arr.dtype == np.float32


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _write_splits(out: Path, spec: GenerationSpec) -> None:
    n = spec.num_files()
    lines = [f"data/data{k}.npy\tmodel/model{k}.npy\n" for k in range(1, n + 1)]
    nval = spec.val_files if spec.val_files is not None else (max(1, round(n / 5)) if n >= 2 else 0)
    if not 0 <= nval < max(n, 1) and n > 0:
        raise ValueError(f"val_files={nval} leaves no training file out of {n}")
    for name, chunk in (("all.txt", lines), ("train.txt", lines[: n - nval]), ("val.txt", lines[n - nval :])):
        atomic_write_text(out / name, "".join(chunk))


def _check_manifest(out: Path, spec: GenerationSpec) -> None:
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is corrupt ({e}); delete it or choose another --out") from None
        mismatch = {k: (old.get(k), v) for k, v in spec.identity().items() if old.get(k) != v}
        if mismatch:
            detail = ", ".join(f"{k}: existing {a!r} vs requested {b!r}" for k, (a, b) in mismatch.items())
            raise ValueError(
                f"{out} already holds data generated with other settings ({detail}); "
                "use the same settings to resume, or another --out"
            )
    atomic_write_text(path, json.dumps({**spec.identity(), "num": spec.num}, indent=2) + "\n")


def generate_dataset(
    spec: GenerationSpec,
    out: str | os.PathLike,
    *,
    batch_size: int = 16,
    progress: bool = True,
    simulate: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Write the dataset described by ``spec`` under ``out``; returns a summary dict.

    ``simulate`` maps (B, 70, 70) velocities to (B, 5, 1000, 70) seismic; the acoustic solver in
    ``spec.mode`` by default.
    """
    if spec.family not in velocity.FAMILIES:
        raise ValueError(f"unknown family {spec.family!r}; choose one of {velocity.family_names()}")
    if spec.num < 1 or spec.file_size < 1 or batch_size < 1:
        raise ValueError(f"num, file_size and batch_size must be >= 1, got {spec.num}, {spec.file_size}, {batch_size}")
    if spec.mode not in ("exact", "fast"):
        raise ValueError(f"unknown mode {spec.mode!r}; use 'exact' or 'fast'")
    geometry = openfwi_geometry(spec.layout)
    if simulate is None:

        def simulate(v: np.ndarray) -> np.ndarray:
            return np.asarray(forward(v, geometry, mode=spec.mode))

    out = Path(out).absolute()
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir(parents=True, exist_ok=True)
    _check_manifest(out, spec)

    shots, nt, nrec = geometry.num_shots, geometry.nt, geometry.num_receivers
    todo, skipped = [], 0
    for k in range(1, spec.num_files() + 1):
        start, stop = spec.file_range(k)
        n = stop - start
        if _file_complete(out / "data" / f"data{k}.npy", (n, shots, nt, nrec)) and _file_complete(
            out / "model" / f"model{k}.npy", (n, 1, geometry.nz, geometry.nx)
        ):
            skipped += n
        else:
            todo.append(k)
    total = sum(spec.file_range(k)[1] - spec.file_range(k)[0] for k in todo)

    bar = None
    if progress and total:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="sample", desc=f"{spec.family} ({spec.mode})", smoothing=0.1)
    t0 = time.perf_counter()
    for k in todo:
        start, stop = spec.file_range(k)
        models = velocity.generate(spec.family, stop - start, spec.seed, geometry.nz, geometry.nx, start=start)
        data = np.empty((stop - start, shots, nt, nrec), np.float32)
        for i in range(0, stop - start, batch_size):
            chunk = simulate(models[i : i + batch_size])
            if not np.all(np.isfinite(chunk)):
                raise FloatingPointError(f"non-finite seismic for samples {start + i}..; file {k} not written")
            data[i : i + batch_size] = chunk
            if bar is not None:
                bar.update(len(chunk))
        _atomic_save(out / "model" / f"model{k}.npy", models[:, None])
        _atomic_save(out / "data" / f"data{k}.npy", data)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    _write_splits(out, spec)
    return {
        "out": str(out),
        "files": spec.num_files(),
        "generated": total,
        "skipped": skipped,
        "seconds": seconds,
        "samples_per_s": total / seconds if total and seconds > 0 else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m fwi_jax.data.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--family", required=True, choices=velocity.family_names())
    parser.add_argument("--num", type=int, required=True, help="number of samples")
    parser.add_argument("--out", required=True, help="output directory (resumes if it exists)")
    parser.add_argument(
        "--mode",
        default="exact",
        choices=("exact", "fast"),
        help="exact: OpenFWI's scheme (default); fast: thin CPML, for bulk data",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--file-size", type=int, default=500, help="samples per .npy file (OpenFWI: 500)")
    parser.add_argument(
        "--layout",
        default="released",
        choices=("released", "shifted"),
        help="acquisition columns: released data (x=10..700 m) or shifted (x=0..690 m)",
    )
    parser.add_argument("--val-files", type=int, default=None, help="files in val.txt (default ~1/5)")
    parser.add_argument("--batch-size", type=int, default=16, help="models per solver call")
    args = parser.parse_args(argv)
    use_all_cpu_cores()
    spec = GenerationSpec(args.family, args.num, args.seed, args.mode, args.file_size, args.layout, args.val_files)
    try:
        check_output_dir(args.out, "--out")
        summary = generate_dataset(spec, args.out, batch_size=args.batch_size)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    rate = summary["samples_per_s"]
    print(
        f"wrote {summary['generated']} samples ({summary['skipped']} already present) in "
        f"{summary['seconds']:.1f} s" + (f" ({rate:.2f} samples/s)" if rate else "") + f" to {summary['out']}"
    )


if __name__ == "__main__":
    from fwi_jax.cpu_runtime import use_transparent_hugepages

    use_transparent_hugepages()
    main()
