"""Test setup: 8 host CPU devices so sharded code runs without accelerators."""

import os

# Must precede the first JAX import of the test session.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
