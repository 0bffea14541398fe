"""Device-resident training data (``--config.data.placement=device``): the training split is
loaded once, normalized, into arrays sharded over the mesh's data axis, and the train step itself
gathers its batch on the devices (`make_batch` inside `Steps.train_on_device_data`): no host work per step.

Each device samples from its own shard, never across devices: at load the samples are dealt to
the devices by a seeded permutation (device d holds m = N // devices of them; the N % devices left
over are not used), and in epoch e device d takes its local batch j as
``permutation(key(seed, e, d), m)[j * b : (j + 1) * b]`` of its m samples (b = batch / devices),
computed on the device from the train state's step. So every sample of a shard is seen once per
epoch (m % b of them sit out each epoch, different ones each time), the batch of a step is a pure
function of (seed, step), and resuming needs only the step. BatchNorm still sees the whole global batch.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fwi_jax import parallel
from fwi_jax.data import pipeline
from fwi_jax.data.transforms import prepare_batch

STORAGE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_LOAD_CHUNK = 8  # samples read (raw bytes on the host) and normalized (on their device) at a time


def dataset_bytes(num_samples: int, spec, storage_dtype: str) -> int:
    per_sample = sum(np.prod(shape) for shape in pipeline_shapes(spec))
    return int(num_samples * per_sample * jnp.dtype(STORAGE_DTYPES[storage_dtype]).itemsize)


def pipeline_shapes(spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return (spec.time_samples, spec.receivers, spec.shots), (spec.depth, spec.width, 1)


def free_device_bytes(mesh: Mesh) -> tuple[int, str]:
    """(bytes free for data on this process's devices, where that figure comes from)."""
    devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    stats = [d.memory_stats() for d in devices] if devices[0].platform != "cpu" else []
    if stats and all(s and "bytes_limit" in s for s in stats):
        return sum(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats), f"{len(devices)} devices' memory"
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE")), "available host RAM"


def check_fits(num_samples: int, spec, storage_dtype: str, mesh: Mesh, free: int | None = None) -> int:
    """The bytes the shards take; a clear error when they would not fit (90% of what is free)."""
    need = dataset_bytes(num_samples, spec, storage_dtype)
    free, where = (free, "free memory") if free is not None else free_device_bytes(mesh)
    if need > 0.9 * free:
        half = dataset_bytes(num_samples, spec, "bfloat16")
        hint = (
            f"set --config.data.storage_dtype=bfloat16 ({half / 2**30:.1f} GiB) or --config.data.placement=host"
            if storage_dtype == "float32" and half <= 0.9 * free
            else "set --config.data.placement=host (read from disk each step)"
        )
        raise ValueError(
            f"the training set needs {need / 2**30:.1f} GiB on the devices as {storage_dtype} but "
            f"{where} is {free / 2**30:.1f} GiB: {hint}"
        )
    return need


class DeviceBatches:
    """The training split in shards on the devices, and the global batch of any step gathered from them."""

    def __init__(
        self,
        source,
        batch_size: int,
        seed: int,
        mesh: Mesh,
        storage_dtype: str = "float32",
        progress: bool = True,
    ):
        if storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"data.storage_dtype must be one of {sorted(STORAGE_DTYPES)}, got {storage_dtype!r}")
        self.mesh, self.seed = mesh, seed
        self.devices = mesh.devices.size
        # positions in the mesh of this process's devices (it loads and indexes their shards only)
        self._local = [k for k, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
        self.local_batch = batch_size // self.devices
        self.per_device = len(source) // self.devices
        self.steps_per_epoch = self.per_device // self.local_batch
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(source)} samples over {self.devices} devices make no batch of {batch_size}")
        check_fits(self.per_device * self.devices, source.spec, storage_dtype, mesh)
        self.seismic, self.velocity = self._load(source, STORAGE_DTYPES[storage_dtype], progress)
        self._sample = functools.partial(
            _local_rows, seed=seed, per_device=self.per_device, local_batch=self.local_batch, steps=self.steps_per_epoch
        )
        self._batch = jax.jit(self.make_batch)
        self._indices = jax.jit(jax.vmap(self._sample, in_axes=(None, 0)))

    def _load(self, source, dtype, progress: bool) -> tuple[jax.Array, jax.Array]:
        """The shards, filled in place (donated) a few rows per device at a time, all devices at once: the
        host reads raw bytes only, each device normalizes its rows. Peak memory: the data + one chunk."""
        order = np.random.default_rng([self.seed, 2**31 - 1]).permutation(len(source))
        rows = [order[k * self.per_device : (k + 1) * self.per_device] for k in self._local]
        sharding = NamedSharding(self.mesh, P(parallel.DATA_AXIS))
        n = self.per_device * self.devices
        seismic, velocity = (_zeros((n, *shape), dtype, sharding) for shape in pipeline_shapes(source.spec))
        put = jax.jit(
            jax.shard_map(
                functools.partial(_put_normalized, spec=source.spec),
                mesh=self.mesh,
                in_specs=(P(parallel.DATA_AXIS), P(parallel.DATA_AXIS), P(parallel.DATA_AXIS), P()),
                out_specs=P(parallel.DATA_AXIS),
            ),
            donate_argnums=(0, 1),
        )
        bar = _load_bar(progress, n, len(rows) * self.per_device, source.spec, dtype)
        per = max(1, _LOAD_CHUNK // len(rows))  # rows per device per chunk
        for lo in range(0, self.per_device, per):
            chunk = np.concatenate([r[lo : lo + per] for r in rows])  # in mesh order: global_batch deals it
            raw = parallel.global_batch(pipeline.read_raw(source, chunk), self.mesh)
            seismic, velocity, finite = put(seismic, velocity, raw, np.int32(lo))
            if not all(np.all(np.asarray(shard.data)) for shard in finite.addressable_shards):
                pipeline.read_normalized(source, chunk)  # raises, naming the file and sample
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return seismic, velocity

    def make_batch(self, step: jax.Array, seismic: jax.Array, velocity: jax.Array) -> dict[str, jax.Array]:
        """Global batch ``step`` (0-based) of ``seismic`` / ``velocity`` (this object's shards), gathered on each
        device from its own shard. Traceable: `Steps.train_on_device_data` calls it with the state's step
        inside the step."""
        sharded = P(parallel.DATA_AXIS)
        gather = jax.shard_map(
            functools.partial(_local_gather, rows=self._sample),
            mesh=self.mesh,
            in_specs=(P(), sharded, sharded),
            out_specs=sharded,
        )
        return gather(jnp.asarray(step, jnp.int32), seismic, velocity)

    def indices(self, step: int) -> np.ndarray:
        """(devices, local batch) positions within each device's shard for global batch ``step`` (0-based)."""
        return np.asarray(self._indices(jnp.int32(step), jnp.arange(self.devices)))

    def batch(self, step: int) -> dict[str, jax.Array]:
        return self._batch(step, self.seismic, self.velocity)

    def close(self) -> None:
        self.seismic = self.velocity = None


def _load_bar(progress: bool, n: int, local: int, spec, dtype):
    if not progress or jax.process_index() != 0:
        return None
    from tqdm import tqdm

    size = dataset_bytes(n, spec, jnp.dtype(dtype).name)
    desc = f"loading the training set onto the devices ({size / 2**30:.2f} GiB)"
    return tqdm(total=local, unit="sample", desc=desc, dynamic_ncols=True)


def _zeros(shape: tuple[int, ...], dtype, sharding: NamedSharding) -> jax.Array:
    return jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()


def _put_normalized(seismic: jax.Array, velocity: jax.Array, raw: dict, start, spec) -> tuple[jax.Array, ...]:
    """(In one device's shard_map block) raw rows normalized by the train step's own transform
    (`prepare_batch`), cast to the storage dtype and written at row ``start``; and whether all were finite."""
    batch, finite = prepare_batch(raw, spec)
    put = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=start, axis=0)
    return (
        put(seismic, batch["seismic"].astype(seismic.dtype)),
        put(velocity, batch["velocity"].astype(velocity.dtype)),
        finite[None],
    )


def _local_rows(step: jax.Array, device: jax.Array, *, seed: int, per_device: int, local_batch: int, steps: int):
    """Positions within ``device``'s shard of its part of global batch ``step`` (``steps`` per epoch)."""
    epoch, j = jnp.divmod(step, steps)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), epoch), device)
    return jax.lax.dynamic_slice_in_dim(jax.random.permutation(key, per_device), j * local_batch, local_batch)


def _local_gather(step: jax.Array, seismic: jax.Array, velocity: jax.Array, rows) -> dict[str, jax.Array]:
    """(In one device's shard_map block) this device's rows of batch ``step``, as float32."""
    i = rows(step, jax.lax.axis_index(parallel.DATA_AXIS))
    return {"seismic": seismic[i].astype(jnp.float32), "velocity": velocity[i].astype(jnp.float32)}
