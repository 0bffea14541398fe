"""Check a downloaded OpenFWI dataset and write relative split files for it.

    python -m fwi_jax.data.prepare --dataset flatvel-a --root /data/flatvel-a

Scans ROOT for seismic / velocity pairs in either naming scheme (``data/dataN.npy`` +
``model/modelN.npy``, or ``seisX.npy`` + ``velX.npy``), checks every file's shape, dtype and sample
count and (unless --quick) that every value is finite, then writes ``train.txt`` and ``val.txt``
with paths relative to ROOT: the official file counts when the whole dataset is there, else the
fraction given by --train-fraction. The user's .npy files are only read, never written; existing
split files that fwi_jax did not write are left alone (choose --out for ours).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from fwi_jax.cli import ArgumentParser
from fwi_jax.data.datasets import DatasetSpec, get_dataset
from fwi_jax.data.generate import MANIFEST as GENERATION_MANIFEST
from fwi_jax.data.sources import open_npy, scan_pairs
from fwi_jax.fileio import atomic_write_text, check_output_dir

MANIFEST = "fwi_jax_prepare.json"
_CHUNK_BYTES = 64 << 20  # finiteness is checked in 64 MB slices: flat memory for 700 MB files


def check_pair(seis_path: Path, vel_path: Path, spec: DatasetSpec, full: bool = True) -> tuple[int, list[str]]:
    """(samples, problems) of one pair: shapes, dtypes, equal counts and, if ``full``, finite values."""
    problems, arrays = [], []
    for path, shape in ((seis_path, spec.seismic_shape), (vel_path, spec.velocity_shape)):
        try:
            arrays.append(open_npy(path, shape))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        return 0, problems
    seis, vel = arrays
    if len(seis) != len(vel):
        return 0, [f"{seis_path} holds {len(seis)} samples but {vel_path} holds {len(vel)}"]
    if full:
        for path, arr in ((seis_path, seis), (vel_path, vel)):
            bad = _first_non_finite(arr)
            if bad is not None:
                problems.append(f"{path}: sample {bad} holds NaN or inf")
        if not problems and (vel.min() <= 0):
            problems.append(f"{vel_path}: velocities must be positive m/s (min {float(vel.min())})")
    return len(seis), problems


def _first_non_finite(arr: np.ndarray) -> int | None:
    per = max(1, _CHUNK_BYTES // max(arr[0].nbytes, 1))
    for start in range(0, len(arr), per):
        chunk = np.asarray(arr[start : start + per])
        ok = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def split_counts(num_pairs: int, spec: DatasetSpec, train_fraction: float | None) -> tuple[int, int]:
    """(train files, val files): the official counts for a complete dataset, else by fraction."""
    official = spec.train_files + spec.val_files
    if train_fraction is None:
        if num_pairs == official:
            return spec.train_files, spec.val_files
        raise ValueError(
            f"found {num_pairs} file pairs, but {spec.name} has {official} ({spec.train_files} train / "
            f"{spec.val_files} val). Download the rest, or pass --train-fraction (e.g. 0.8) to split what is there."
        )
    if not 0 < train_fraction < 1:
        raise ValueError(f"--train-fraction must be in (0, 1), got {train_fraction}")
    n_train = min(max(1, round(num_pairs * train_fraction)), num_pairs - 1)
    if num_pairs < 2:
        raise ValueError(f"found {num_pairs} file pair; need at least 2 (one train, one val)")
    return n_train, num_pairs - n_train


def _rel(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def _writable_split(path: Path, out: Path) -> None:
    """Never overwrite a split file we did not write (e.g. the reference's own)."""
    ours = (out / MANIFEST).exists() or (out / GENERATION_MANIFEST).exists()
    if path.exists() and not ours:
        raise FileExistsError(
            f"{path} exists and was not written by fwi_jax; pass --out DIR to write the split files elsewhere"
        )


def prepare(
    dataset: str,
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    train_fraction: float | None = None,
    full_check: bool = True,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    """Validate the pairs under ``root`` and write ``train.txt`` / ``val.txt``; returns a report."""
    spec = get_dataset(dataset)
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root} is not a directory")
    out = Path(out).expanduser().absolute() if out else root
    pairs, unpaired, scheme = scan_pairs(root)
    if not pairs:
        seen = f" (found unpaired: {', '.join(p.name for p in unpaired[:5])})" if unpaired else ""
        raise FileNotFoundError(
            f"no OpenFWI file pairs under {root}: expected data/dataN.npy + model/modelN.npy "
            f"or seisX.npy + velX.npy{seen}"
        )
    if scheme != spec.naming:
        print(f"note: {spec.name} usually uses the {spec.naming!r} naming scheme; found {scheme!r}", file=sys.stderr)
    n_train, n_val = split_counts(len(pairs), spec, train_fraction)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), unit="pair", desc="checking", dynamic_ncols=True)
    counts, problems = [0] * len(pairs), []
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:  # numpy reads release the GIL
        futures = {pool.submit(check_pair, s, v, spec, full_check): k for k, (s, v) in enumerate(pairs)}
        for fut in concurrent.futures.as_completed(futures):
            counts[futures[fut]], errs = fut.result()
            problems += errs
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    if unpaired:
        problems += [f"{p}: no matching partner file" for p in unpaired]
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in {root}:\n  " + "\n  ".join(sorted(problems)))

    out.mkdir(parents=True, exist_ok=True)
    splits = {"train.txt": pairs[:n_train], "val.txt": pairs[n_train:]}
    for name in splits:
        _writable_split(out / name, out)
    for name, chunk in splits.items():
        atomic_write_text(out / name, "".join(f"{_rel(s, root)}\t{_rel(v, root)}\n" for s, v in chunk))
    nbytes = {name: sum(s.stat().st_size + v.stat().st_size for s, v in chunk) for name, chunk in splits.items()}
    report = {
        "dataset": spec.name,
        "root": str(root),
        "scheme": scheme,
        "train_files": n_train,
        "val_files": n_val,
        "train_samples": int(sum(counts[:n_train])),
        "val_samples": int(sum(counts[n_train:])),
        "train_bytes": nbytes["train.txt"],
        "val_bytes": nbytes["val.txt"],
        "free_bytes": shutil.disk_usage(out).free,
        "finite_checked": full_check,
        "official_counts": train_fraction is None,
    }
    atomic_write_text(out / MANIFEST, json.dumps(report, indent=2) + "\n")
    return report


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.data.prepare", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, help="OpenFWI dataset name, e.g. flatvel-a (normalization, shapes)")
    p.add_argument("--root", required=True, help="folder holding the downloaded .npy files")
    p.add_argument("--out", default=None, help="where to write train.txt / val.txt (default: ROOT)")
    p.add_argument("--train-fraction", type=float, default=None, help="split a partial download by file fraction")
    p.add_argument("--quick", action="store_true", help="check headers only (skip the NaN/inf scan)")
    p.add_argument("--workers", type=int, default=2, help="files checked in parallel")
    a = p.parse_args(argv)
    try:
        if a.out:  # ROOT itself is the default
            check_output_dir(a.out, "--out")
        r = prepare(a.dataset, a.root, a.out, a.train_fraction, not a.quick, a.workers)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        p.exit(2, f"error: {e}\n")
    out = Path(a.out).expanduser().absolute() if a.out else Path(r["root"])
    print(
        f"{r['dataset']} ({r['scheme']} naming): train {r['train_files']} files / {r['train_samples']} samples "
        f"({_gb(r['train_bytes'])}), val {r['val_files']} files / {r['val_samples']} samples "
        f"({_gb(r['val_bytes'])}); {_gb(r['free_bytes'])} free.\n"
        f"wrote {out / 'train.txt'} and {out / 'val.txt'}; train with\n"
        f"  python -m fwi_jax.train --config configs/{r['dataset'].replace('-', '_')}.py --workdir runs/{r['dataset']} "
        f"--config.data.root={r['root']}"
        + (
            ""
            if out == Path(r["root"])
            else f" --config.data.train_split={out / 'train.txt'} --config.data.val_split={out / 'val.txt'}"
        )
    )


if __name__ == "__main__":
    main()
