# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # fwi_jax quickstart: generate OpenFWI-style data, train InversionNet, evaluate, look
#
# Runs on Colab (GPU or TPU runtime) or locally after `pip install -e .` in a clone.
# This notebook is kept in sync with `notebooks/quickstart.py` by jupytext
# (`jupytext --sync notebooks/quickstart.ipynb`); CI runs it on CPU in smoke mode
# (`FWI_JAX_NOTEBOOK_SMOKE=1`: a tiny dataset and model, a few minutes).

# %%
import os
import sys
from pathlib import Path

ON_COLAB = "google.colab" in sys.modules
SMOKE = os.environ.get("FWI_JAX_NOTEBOOK_SMOKE") == "1"
# Where fwi_jax is installed from on Colab: your fork or a release.
FWI_JAX_SOURCE = os.environ.get("FWI_JAX_SOURCE", "git+https://github.com/fwi-jax/fwi_jax")

# %% [markdown]
# ## 1. Install (Colab only)
#
# Colab ships its own jax built for the runtime's accelerator; installing fwi_jax must not replace
# it. A constraints file pins jax / jaxlib to the installed versions, so pip keeps them (or fails
# loudly instead of silently installing a CPU-only jax).

# %%
if ON_COLAB:
    import subprocess

    import jax

    platform = jax.devices()[0].platform
    assert platform in ("gpu", "tpu"), (
        f"this runtime has no accelerator (jax sees {platform}); choose Runtime > Change runtime type > GPU or TPU"
    )
    from importlib.metadata import version

    Path("/tmp/jax-constraints.txt").write_text(f"jax=={version('jax')}\njaxlib=={version('jaxlib')}\n")
    subprocess.run(["pip", "install", "-q", "-c", "/tmp/jax-constraints.txt", FWI_JAX_SOURCE], check=True)

# %%
import jax  # noqa: E402

import fwi_jax  # noqa: E402

print(f"fwi_jax {fwi_jax.__version__}, jax {jax.__version__}, {jax.default_backend()}: {jax.devices()}")

# %% [markdown]
# ## 2. Configure
#
# The quickstart config generates a FlatVel-A-like dataset with fwi_jax's fast solver (the
# OpenFWI-exact one: `config.data.mode = "exact"`; cached after the first run) and trains a small
# InversionNet on it. Smoke mode shrinks both.

# %%
from fwi_jax.config import quickstart_config  # noqa: E402

WORKDIR = Path(os.environ.get("FWI_JAX_NOTEBOOK_WORKDIR", "runs")).absolute() / "notebook_quickstart"
config = quickstart_config("smoke" if SMOKE else None)
if SMOKE:
    config.data.cache_dir = str(WORKDIR.parent / "datasets")
    config.progress = False
# Batches are sharded over the devices: keep the batch a multiple of the device count.
n_dev = jax.device_count()
config.batch_size = -(-config.batch_size // n_dev) * n_dev
print(config.data, f"batch_size: {config.batch_size}, epochs: {config.num_epochs}", sep="\n")

# %% [markdown]
# ## 3. Generate data and train
#
# Re-running this cell resumes from the last checkpoint in `WORKDIR`.

# %%
from fwi_jax.training.loop import train_and_evaluate  # noqa: E402

summary = train_and_evaluate(config, WORKDIR)
print(f"stopped at step {summary['step']}; last validation: {summary['val']}")

# %% [markdown]
# ## 4. Evaluate the best checkpoint
#
# MAE / MSE / RMSE in normalized units and in m/s, SSIM as OpenFWI defines it, a per-sample CSV,
# and pictures.

# %%
from fwi_jax import evaluate  # noqa: E402

report = evaluate.evaluate(WORKDIR, "best", progress=not SMOKE)
print(evaluate.format_report(report))

# %%
from IPython.display import Image, display  # noqa: E402

for name in ("predictions.png", "profiles.png", "gathers.png", "curves.png"):
    path = Path(report["out"]) / name
    if path.exists():
        print(name)
        display(Image(filename=str(path)))

# %% [markdown]
# ## 5. Predict velocity maps from raw seismic data
#
# Any `(N, 5, 1000, 70)` OpenFWI seismic file works; here, the generated validation file.

# %%
import numpy as np  # noqa: E402

from fwi_jax import predict  # noqa: E402
from fwi_jax.data.open import open_sources  # noqa: E402

_, val_source, _ = open_sources(config)
seismic_file, velocity_file = val_source.files[0]
result = predict.predict(WORKDIR, seismic_file, WORKDIR / "predicted_velocity.npy", progress=not SMOKE)
velocity = np.load(result["out"])
truth = np.load(velocity_file)
print(f"{velocity.shape} m/s predictions, MAE {np.abs(velocity - truth).mean():.1f} m/s against the ground truth")
