"""Test setup: 8 host CPU devices so sharded code runs without accelerators."""

import os

# Must precede the first JAX import of the test session.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def pytest_configure(config):
    import tempfile

    import jax

    # One persistent compilation cache for the session: repeated train runs compile once.
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="fwi_jax_xla_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
