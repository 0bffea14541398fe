"""Test setup: 8 host CPU devices so sharded code runs without accelerators; shared fixtures."""

import os

import pytest

# Must precede the first JAX import of the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
    import tempfile

    import jax

    # One persistent compilation cache for the session: repeated train runs compile once.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="fwi_jax_xla_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One generated-dataset cache for the session (the smoke dataset is generated once)."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def trained_run(cache_dir, tmp_path_factory):
    """A finished smoke training run: (workdir, summary), shared by the evaluate / predict / viz tests."""
    from test_train import smoke_config

    from fwi_jax.training.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    return workdir, train_and_evaluate(smoke_config(cache_dir), workdir)
