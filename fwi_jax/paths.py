"""Where fwi_jax keeps what it can remake (generated datasets, the XLA compilation cache).

The root is ``$FWI_JAX_CACHE`` when set, else ``$XDG_CACHE_HOME/fwi_jax``, else ``~/.cache/fwi_jax``;
a test session points FWI_JAX_CACHE at a temporary folder so nothing lands in the user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FWI_JAX_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path("~/.cache").expanduser()) / "fwi_jax"


def dataset_cache() -> Path:
    """Generated datasets (``data.cache_dir=""``)."""
    return cache_root() / "datasets"


def compilation_cache(setting: str) -> Path | None:
    """The persistent XLA cache of ``config.compilation_cache``: "default" (under the cache root),
    a folder, or "" (none)."""
    if not setting:
        return None
    return cache_root() / "xla" if setting == "default" else Path(setting).expanduser()
