"""grain input pipelines: deterministic training batches by step, padded-and-masked evaluation.

Training batches are raw: the host copies each sample's bytes out of its file (the reads of one
batch in parallel threads) and does no arithmetic; the jitted step transposes, normalizes and
checks them for NaN / inf on the devices (`transforms.prepare_batch`), and `named_nonfinite`
re-reads a flagged step's samples to name the file.

Batch ``step`` of a run holds the samples ``perm(seed, epoch)[j * B : (j + 1) * B]`` with
``epoch, j = divmod(step, steps_per_epoch)``: resuming at a step needs nothing but the step, and
every process takes its own contiguous slice of the global batch, and the data position saved in a
checkpoint is that step. The last partial batch of an epoch is dropped (as the reference).

Reads run in grain's thread pool with prefetch; ``num_workers > 0`` adds that many worker
processes (spawned: scripts that use them need an ``if __name__ == "__main__":`` guard). Without
grain installed (an accelerator image, say), batches are read in order in the calling thread, with
a warning; `--config.data.placement=device` reads the training set once and needs no prefetch. A source
is anything with ``spec``, ``len``, ``source[i] -> (seismic, velocity)`` and ``describe(i)``:
`OpenFWISource` (memory-mapped .npy) or `TFDSSource` (a built TFDS dataset's array_record files).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fwi_jax.data.datasets import DatasetSpec
from fwi_jax.data.transforms import (
    RAW_SEISMIC,
    RAW_VELOCITY,
    normalize_seismic,
    normalize_velocity,
    prepare_batch,
)


def to_example(seismic: np.ndarray, velocity: np.ndarray, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """On-disk (S, T, R) / (1, H, W) -> normalized NHWC (T, R, S) / (H, W, 1) float32."""
    seis = normalize_seismic(np.transpose(seismic, (1, 2, 0)), spec).astype(np.float32)
    vel = normalize_velocity(np.transpose(velocity, (1, 2, 0)), spec).astype(np.float32)
    return seis, vel


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def read_normalized(source, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Samples ``indices`` of ``source`` as normalized NHWC float32 arrays; NaN / inf samples are named."""
    return prepare_batch(read_raw(source, indices, check=True), source.spec)[0]


def _check_finite(source, index: int, seismic: np.ndarray, velocity: np.ndarray) -> None:
    if not (np.all(np.isfinite(seismic)) and np.all(np.isfinite(velocity))):
        raise ValueError(f"{source.describe(int(index))} holds NaN or inf; fix or drop that file")


@functools.lru_cache(maxsize=1)
def _read_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="fwi_jax-read")  # one per process (grain workers too)


def read_raw(source, indices: np.ndarray, threads: int = 1, check: bool = False) -> dict[str, np.ndarray]:
    """Samples ``indices`` as on disk, (B, S, T, R) / (B, 1, H, W) float32, read by ``threads``
    threads in parallel (copies release the GIL); ``check`` names a NaN / inf sample on the host."""
    spec = source.spec
    seis = np.empty((len(indices), *spec.seismic_shape), np.float32)
    vel = np.empty((len(indices), *spec.velocity_shape), np.float32)

    def read(k: int) -> None:
        seis[k], vel[k] = source[int(indices[k])]
        if check:
            _check_finite(source, indices[k], seis[k], vel[k])

    if threads > 1 and len(indices) > 1:
        list(_read_pool(threads).map(read, range(len(indices))))
    else:
        for k in range(len(indices)):
            read(k)
    return {RAW_SEISMIC: seis, RAW_VELOCITY: vel}


def _grain():
    try:
        import grain  # optional: the fallback below reads without it
    except ImportError:
        return None
    return grain


def _iterate(steps: range, load: Callable[[int], dict], num_threads: int, prefetch: int, num_workers: int):
    grain = _grain()
    if grain is None:
        if num_workers > 0:
            raise ValueError(  # a setting that this install cannot run: the trainer's one-line errors
                f"data.num_workers={num_workers} needs grain, which is not installed: pip install grain "
                "(offline: carry its wheel, README 'On an accelerator image'), or set --config.data.num_workers=0"
            )
        warnings.warn(
            "grain is not installed: batches are read in order without prefetch (pip install grain)", stacklevel=3
        )
        return (load(i) for i in steps)
    ds = grain.MapDataset.range(steps.start, steps.stop).map(load)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=max(prefetch, num_threads)))
    if num_workers > 0:
        _mark_absl_flags_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2))
        # Copy out of the workers' shared memory at once: it is then unlinked promptly, not at exit.
        it = it.map(_own_arrays)
    return iter(it)


def _own_arrays(batch: dict) -> dict:
    return {k: np.array(v) for k, v in batch.items()}


def _mark_absl_flags_parsed() -> None:
    """grain's workers read absl flags; outside absl.app.run they are not parsed yet."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def steps_per_epoch(num_samples: int, global_batch: int) -> int:
    return num_samples // global_batch


def _check_batch(global_batch: int, process_count: int) -> int:
    if global_batch % process_count:
        raise ValueError(f"batch size {global_batch} is not divisible by the {process_count} processes")
    return global_batch // process_count


def batch_indices(num_samples: int, global_batch: int, seed: int, step: int) -> np.ndarray:
    """Global sample indices of training batch ``step`` (0-based; it feeds step ``step + 1``)."""
    epoch, j = divmod(int(step), steps_per_epoch(num_samples, global_batch))
    return _permutation(seed, epoch, num_samples)[j * global_batch : (j + 1) * global_batch]


def train_batches(
    source,
    global_batch: int,
    seed: int,
    start_step: int,
    num_steps: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    prefetch: int = 4,
    num_workers: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Host-local raw batches for steps start_step .. num_steps - 1 (batch k feeds step k + 1);
    `transforms.prepare_batch` normalizes them inside the jitted step."""
    local = _check_batch(global_batch, process_count)
    if steps_per_epoch(len(source), global_batch) < 1:
        raise ValueError(f"the training set has {len(source)} samples, fewer than one batch of {global_batch}")

    def load(step: int) -> dict[str, np.ndarray]:
        idx = batch_indices(len(source), global_batch, seed, step)
        return read_raw(source, idx[process_index * local : (process_index + 1) * local], threads=num_threads)

    # Two batches in flight, each read by the shared pool of num_threads threads.
    return _iterate(range(start_step, num_steps), load, min(num_threads, 2), prefetch, num_workers)


def named_nonfinite(source, global_batch: int, seed: int, steps: range) -> str | None:
    """Which sample of training batches ``steps`` (0-based) holds NaN or inf, re-read on the host."""
    for step in steps:
        for i in batch_indices(len(source), global_batch, seed, step):
            try:
                _check_finite(source, i, *source[int(i)])
            except ValueError as e:
                return f"{e} (read for step {step + 1})"
    return None


def eval_batches(
    source,
    global_batch: int,
    *,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    num_workers: int = 0,
    raw: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Every sample exactly once, in order; the last batch is zero-padded with ``mask`` 0.
    ``raw``: as on disk (for the jitted steps, which normalize), else normalized NHWC."""
    local = _check_batch(global_batch, process_count)
    n = len(source)

    def load(b: int) -> dict[str, np.ndarray]:
        idx = np.arange(b * global_batch, (b + 1) * global_batch)[process_index * local : (process_index + 1) * local]
        valid = idx < n
        idx = np.where(valid, idx, 0)
        batch = read_raw(source, idx, check=True) if raw else read_normalized(source, idx)
        for v in batch.values():
            v[~valid] = 0.0
        batch["mask"] = valid.astype(np.float32)
        return batch

    return _iterate(range(-(-n // global_batch)), load, num_threads, num_threads, num_workers)
