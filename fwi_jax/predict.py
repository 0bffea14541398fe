"""Predict velocity maps (m/s) from raw seismic data with a trained checkpoint.

    python -m fwi_jax.predict --workdir runs/quickstart --input seis.npy --out vel.npy [--checkpoint best]

Input: an OpenFWI seismic file, (N, 5, 1000, 70) float32 raw pressure (any N; a single
(5, 1000, 70) sample also works). Output: (N, 1, 70, 70) float32 velocities in m/s, the OpenFWI
velocity layout. The input is read and predicted in batches (memory-mapped), normalized with the
constants stored in the checkpoint. The output appears only when complete (written to a
temporary name, then renamed).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fwi_jax import inference
from fwi_jax.cli import ArgumentParser
from fwi_jax.data.pipeline import to_example
from fwi_jax.data.sources import map_npy
from fwi_jax.data.transforms import denormalize_velocity
from fwi_jax.fileio import atomic_path, check_output_file


def open_input(path: str | Path, sample_shape: tuple[int, ...]) -> np.ndarray:
    """The input as an (N, *sample_shape) array (memory-mapped when it is a .npy file)."""
    path = Path(path)
    x = map_npy(path, fix="pass an OpenFWI seismic .npy as --input")
    if tuple(x.shape) == tuple(sample_shape):
        x = x[None]
    if x.ndim != len(sample_shape) + 1 or tuple(x.shape[1:]) != tuple(sample_shape):
        raise ValueError(
            f"{path} has shape {x.shape}; expected (N, {', '.join(map(str, sample_shape))}) = "
            "(samples, shots, time steps, receivers), OpenFWI's seismic layout"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{path} has dtype {x.dtype}; expected float32 pressure")
    return x


def _predict_batch(trained: inference.Trained, x: np.ndarray, start: int, bs: int, input_path) -> np.ndarray:
    """m/s maps of samples start .. start + bs of ``x`` (a fixed batch shape: one compilation)."""
    spec = trained.spec
    raw = np.asarray(x[start : start + bs], np.float32)
    finite = np.isfinite(raw).reshape(len(raw), -1).all(axis=1)
    if not finite.all():
        bad = start + int(np.argmin(finite))
        raise ValueError(f"{input_path}: sample {bad} holds NaN or inf; fix or drop it")
    seis = np.stack([to_example(s, np.zeros(spec.velocity_shape, np.float32), spec)[0] for s in raw])
    seis = np.concatenate([seis, np.zeros((bs - len(seis), *seis.shape[1:]), np.float32)])
    return denormalize_velocity(trained.predict_normalized(seis)[: len(raw)], spec)


def predict_velocities(
    trained: inference.Trained, x: np.ndarray, batch_size: int = 16, input_path="input"
) -> np.ndarray:
    """(N, H, W) m/s predictions of (N, S, T, R) raw seismic ``x``, in batches."""
    n_dev = trained.mesh.devices.size
    bs = -(-max(1, batch_size) // n_dev) * n_dev
    return np.concatenate([_predict_batch(trained, x, i, bs, input_path) for i in range(0, len(x), bs)])


def predict(
    workdir: str | Path,
    input_path: str | Path,
    out_path: str | Path,
    checkpoint: str = "best",
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Write (N, 1, H, W) m/s predictions of ``input_path`` to ``out_path``; returns a summary."""
    trained = inference.load(workdir, checkpoint)
    spec = trained.spec
    x = open_input(input_path, spec.seismic_shape)
    out_path = Path(out_path)
    if out_path.resolve() == Path(input_path).resolve():
        raise ValueError("--out must differ from --input")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n_dev = trained.mesh.devices.size
    bs = -(-max(1, batch_size) // n_dev) * n_dev
    n = len(x)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="sample", desc="predicting", dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        with atomic_path(out_path) as tmp:  # never leaves a partial output
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *spec.velocity_shape))
            for start in range(0, n, bs):
                out[start : start + bs, 0] = _predict_batch(trained, x, start, bs, input_path)
                if bar is not None:
                    bar.update(min(bs, n - start))
            out.flush()
            del out
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    return {
        "samples": n,
        "out": str(out_path),
        "checkpoint": trained.label,
        "step": trained.step,
        "seconds": seconds,
        "samples_per_s": n / seconds if seconds > 0 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.predict", description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a training run's --workdir")
    p.add_argument("--input", required=True, help="seismic .npy, (N, 5, 1000, 70) raw pressure")
    p.add_argument("--out", required=True, help="velocity .npy to write, (N, 1, 70, 70) m/s")
    p.add_argument("--checkpoint", default="best", help="best (default), latest or a step number")
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args(argv)
    try:
        check_output_file(a.out, "--out", inputs=(a.input,), example="velocity.npy")
        r = predict(a.workdir, a.input, a.out, a.checkpoint, a.batch_size)
    except (ValueError, FileNotFoundError) as e:
        p.exit(2, f"error: {e}\n")
    print(
        f"wrote {r['samples']} velocity maps (m/s) to {r['out']} with the {r['checkpoint']} checkpoint "
        f"(step {r['step']}), {r['samples_per_s']:.1f} samples/s"
    )


if __name__ == "__main__":
    from fwi_jax.cpu_runtime import use_transparent_hugepages

    use_transparent_hugepages()
    main()
