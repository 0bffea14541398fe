"""grain input pipelines: deterministic training batches by step, padded-and-masked evaluation.

Batch ``step`` of a run holds the samples ``perm(seed, epoch)[j * B : (j + 1) * B]`` with
``epoch, j = divmod(step, steps_per_epoch)``: resuming at a step needs nothing but the step, and
every process takes its own contiguous slice of the global batch. The last partial batch of an
epoch is dropped (as the reference). Reads run in grain's thread pool with prefetch.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grain
import numpy as np

from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.data.sources import OpenFWISource
from fwi_jax.data.transforms import normalize_seismic, normalize_velocity


def to_example(seismic: np.ndarray, velocity: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """On-disk (S, T, R) / (1, H, W) -> normalized NHWC (T, R, S) / (H, W, 1) float32."""
    seis = normalize_seismic(np.transpose(seismic, (1, 2, 0)), spec).astype(np.float32)
    vel = normalize_velocity(np.transpose(velocity, (1, 2, 0)), spec).astype(np.float32)
    return seis, vel


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _read(source: OpenFWISource, indices: np.ndarray) -> dict[str, np.ndarray]:
    spec = source.spec
    seis = np.empty((len(indices), spec.time_samples, spec.receivers, spec.shots), np.float32)
    vel = np.empty((len(indices), spec.depth, spec.width, 1), np.float32)
    for k, i in enumerate(indices):
        raw_s, raw_v = source[int(i)]
        if not (np.all(np.isfinite(raw_s)) and np.all(np.isfinite(raw_v))):
            f, j = source.locate(int(i))
            raise ValueError(f"sample {j} of {source.files[f][0].name} / {source.files[f][1].name} holds NaN or inf")
        seis[k], vel[k] = to_example(raw_s, raw_v, spec)
    return {"seismic": seis, "velocity": vel}


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    return num_samples // global_batch


def _check_batch(global_batch: int, process_count: int) -> int:
    if global_batch % process_count:
        raise ValueError(f"batch size {global_batch} is not divisible by the {process_count} processes")
    return global_batch // process_count


def train_batches(
    source: OpenFWISource,
    global_batch: int,
    seed: int,
    start_step: int,
    num_steps: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    prefetch: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Host-local batches for steps start_step .. num_steps - 1 (batch k feeds step k + 1)."""
    local = _check_batch(global_batch, process_count)
    spe = steps_per_epoch(len(source), global_batch)
    if spe < 1:
        raise ValueError(f"the training set has {len(source)} samples, fewer than one batch of {global_batch}")

    def load(step: int) -> dict[str, np.ndarray]:
        epoch, j = divmod(int(step), spe)
        idx = _permutation(seed, epoch, len(source))[j * global_batch : (j + 1) * global_batch]
        return _read(source, idx[process_index * local : (process_index + 1) * local])

    ds = grain.MapDataset.range(start_step, num_steps).map(load)
    return iter(
        ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads)))
    )


def eval_batches(
    source: OpenFWISource,
    global_batch: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
) -> Iterator[dict[str, np.ndarray]]:
    """Every sample exactly once, in order; the last batch is zero-padded with ``mask`` 0."""
    local = _check_batch(global_batch, process_count)
    n = len(source)

    def load(b: int) -> dict[str, np.ndarray]:
        idx = np.arange(b * global_batch, (b + 1) * global_batch)[process_index * local : (process_index + 1) * local]
        valid = idx < n
        batch = _read(source, np.where(valid, idx, 0))
        batch["seismic"][~valid] = 0.0
        batch["velocity"][~valid] = 0.0
        batch["mask"] = valid.astype(np.float32)
        return batch

    ds = grain.MapDataset.range(-(-n // global_batch)).map(load)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=num_threads)))
