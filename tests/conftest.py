"""Test setup: 8 host CPU devices so sharded code runs without accelerators; every cache in a
temporary folder (never the user's home); shared fixtures. Helpers live in helpers.py."""

import os
import shutil
import tempfile

import pytest

# Must precede the first JAX import of the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# fwi_jax's cache root (generated datasets, the trainer's XLA cache), matplotlib's and IPython's folders: for this
# process and every command a test starts.
_CACHE = tempfile.mkdtemp(prefix="fwi_jax_test_cache_")
os.environ["FWI_JAX_CACHE"] = _CACHE
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "matplotlib")
os.environ["IPYTHONDIR"] = os.path.join(_CACHE, "ipython")  # the notebook test's kernel


def pytest_configure(config):
    import jax

    # One persistent compilation cache for the session (the one `python -m fwi_jax.train` finds under
    # FWI_JAX_CACHE): repeated train runs compile once.
    jax.config.update("jax_compilation_cache_dir", os.path.join(_CACHE, "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One generated-dataset cache for the session (the smoke dataset is generated once)."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture(scope="session")
def trained_run(cache_dir, tmp_path_factory):
    """A finished smoke training run: (workdir, summary), shared by the evaluate / predict / viz tests."""
    from helpers import smoke_config

    from fwi_jax.training.loop import train_and_evaluate

    workdir = tmp_path_factory.mktemp("run")
    return workdir, train_and_evaluate(smoke_config(cache_dir), workdir)
