"""Device-resident training data: batches are a pure function of the step, each device's shard is
covered once per epoch, resume is exact, bfloat16 storage trains like float32, too big is a clear error."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal, params_of, smoke_config

from fwi_jax import parallel
from fwi_jax.data import pipeline
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.device import DeviceBatches, check_fits
from fwi_jax.data.open import open_sources
from fwi_jax.training.loop import train_and_evaluate
from fwi_jax.training.steps import make_steps


def test_device_batches_are_the_right_samples_pure_in_the_step_and_cover_each_shard(cache_dir):
    config = smoke_config(cache_dir)
    train, _, spec = open_sources(config)
    mesh = parallel.make_mesh()
    data = DeviceBatches(train, 8, seed=0, mesh=mesh, progress=False)
    assert (data.devices, data.per_device, data.local_batch, data.steps_per_epoch) == (8, 2, 1, 2)
    again = DeviceBatches(train, 8, seed=0, mesh=mesh, progress=False)  # as a resumed run
    for step in range(4):
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(data.batch(step)), jax.device_get(again.batch(step)))
    # The loop's step gathers inside itself the batch of the state's step: the step on that batch.
    steps = make_steps(config, spec, mesh, data.steps_per_epoch)
    fused, state = steps.train_on_device_data(data.make_batch), steps.init()
    for _ in range(3):
        expected, _ = steps.train(jax.tree.map(jnp.copy, state), data.batch(int(state.step)))
        state, _ = fused(state, data.seismic, data.velocity)
        assert_trees_equal(jax.device_get(state), jax.device_get(expected))
    for epoch in range(2):  # every sample of a shard once per epoch
        rows = np.concatenate([data.indices(epoch * data.steps_per_epoch + j) for j in range(2)], axis=1)
        assert all(sorted(r) == [0, 1] for r in rows)
    # The gathered batch holds the samples the load order dealt to each device, normalized as the host's
    # numpy transform does (on the devices: to float32 rounding).
    order = np.random.default_rng([0, 2**31 - 1]).permutation(len(train))
    rows = data.indices(1)[:, 0]
    expected = pipeline.read_normalized(train, order[np.arange(8) * 2 + rows])
    batch = jax.device_get(data.batch(1))
    for key in ("seismic", "velocity"):
        np.testing.assert_allclose(batch[key], expected[key], rtol=0, atol=1e-6)


def test_device_placement_resumes_exactly_and_bfloat16_storage_trains_close(cache_dir, tmp_path, monkeypatch):
    device = {"data.placement": "device"}
    full = train_and_evaluate(smoke_config(cache_dir, **device), tmp_path / "full")
    train_and_evaluate(smoke_config(cache_dir, **device, num_train_steps=3), tmp_path / "resumed")
    resumed = train_and_evaluate(smoke_config(cache_dir, **device), tmp_path / "resumed")
    assert_trees_equal(params_of(full), params_of(resumed))
    # As on an accelerator image without the optional wheels: no grain, no tensorboardX.
    for name in ("grain", "tensorboardX"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.warns(UserWarning, match="grain is not installed"):
        config = smoke_config(cache_dir, **device, **{"data.storage_dtype": "bfloat16"})
        bf16 = train_and_evaluate(config, tmp_path / "bf")
    assert (tmp_path / "bf" / "metrics.jsonl").is_file() and not (tmp_path / "bf" / "tensorboard").exists()
    # bfloat16 keeps 8 mantissa bits of the normalized inputs: measured 1.7% apart after 4 steps.
    assert bf16["train"]["loss"] == pytest.approx(full["train"]["loss"], rel=0.05)
    assert bf16["val"]["ssim"] == pytest.approx(full["val"]["ssim"], abs=0.01)


def test_a_training_set_too_big_for_the_devices_is_a_clear_error():
    spec, mesh = get_dataset("flatvel-a"), parallel.make_mesh()
    with pytest.raises(
        ValueError,
        match=r"needs 31.7 GiB on the devices as float32 but free memory is 20.0 GiB: "
        r"set --config.data.storage_dtype=bfloat16 \(15.9 GiB\) or --config.data.placement=host",
    ):
        check_fits(24_000, spec, "float32", mesh, free=20 * 2**30)
    with pytest.raises(ValueError, match=r"set --config.data.placement=host"):
        check_fits(24_000, spec, "bfloat16", mesh, free=4 * 2**30)
