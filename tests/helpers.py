"""Helpers shared by the test modules (import as ``from helpers import ...``; pytest puts tests/ on the path)."""

import contextlib

import jax
import numpy as np

from fwi_jax.config import quickstart_config
from fwi_jax.data import velocity
from fwi_jax.data.datasets import get_dataset
from fwi_jax.data.transforms import normalize_velocity
from fwi_jax.training import objectives

SPEC = get_dataset("flatvel-a")


def smoke_config(cache_dir, **overrides):
    """The quickstart's smoke variant with its dataset in ``cache_dir``; ``overrides`` as {"a.b": value}."""
    c = quickstart_config("smoke")
    c.data.cache_dir = str(cache_dir)
    c.progress = False
    c.num_plot_samples = 2
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def fixed_batch(n, seed=0):
    """n NHWC samples of full OpenFWI shape whose seismic carries a learnable cue of the velocity."""
    rng = np.random.default_rng(seed)
    vel = normalize_velocity(velocity.generate("flatvel-a", n, seed=seed), SPEC)[..., None]
    seis = rng.normal(size=(n, 1000, 70, 5)).astype(np.float32) * 0.3
    seis[..., 0] += vel.mean(axis=(1, 2, 3))[:, None, None]
    return {"seismic": seis, "velocity": vel.astype(np.float32)}


def params_of(summary):
    return jax.device_get(summary["state"].params)


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@contextlib.contextmanager
def registered_objective(name, factory):
    """``loss.objective=name`` builds ``factory(config, model, spec)`` inside the block (the public registry)."""
    objectives.register(name, factory)
    try:
        yield
    finally:
        objectives.unregister(name)
