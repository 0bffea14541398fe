"""Measure each convolution of a config's model in its candidate forms on this CPU and cache the fastest.

    python -m fwi_jax.models tune --config configs/quickstart.py [--batch 16] [--infer] [--reps 5]

Every Conv / ConvTranspose that `cpu_convs` builds for the model at the batch given (default: the
config's) is timed as its block runs it: the convolution, the reference's BatchNorm and LeakyReLU,
forward and backward with respect to parameters and input (forward only with --infer), as XLA's
convolution, as the matrix-product form and, where they differ from those, as one full im2col
product (stride 1) and as XLA's forward with the matrix-product gradients (training)
(`conv_tuning.candidates`), alternating rounds. The fastest form by its per-round time ratios to the
shape rule's form, if at least 3% faster (else the rule's form stays), goes to the cache of
`conv_tuning` for this machine; training and inference with
``model.conv_impl="auto"`` on this CPU then use it. A few minutes for the full-size network at batch
16 on a 2-core CPU; rerun after upgrading jax (the cache is keyed by its version).
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fwi_jax.cli import ArgumentParser
from fwi_jax.data.datasets import get_dataset
from fwi_jax.models import build_model, conv_tuning
from fwi_jax.models.conv_tuning import LayerSpec, candidates
from fwi_jax.models.cpu_convs import EinsumConvTranspose, conv_form, rule_form
from fwi_jax.models.layers import TorchBatchNorm, activate


class _Block(nn.Module):
    """One convolution in a given form, then BatchNorm and LeakyReLU, as the network's blocks run."""

    layer: LayerSpec
    form: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        s, dtype = self.layer, jnp.dtype(self.layer.dtype)
        if s.kind == "conv":
            conv = conv_form(self.form, s.features, s.kernel, s.strides, s.padding, dtype=dtype)
        elif self.form == "matmul":
            conv = EinsumConvTranspose(s.features, s.kernel, s.padding, dtype=dtype)
        else:
            conv = nn.ConvTranspose(s.features, s.kernel, s.strides, padding=s.padding, dtype=dtype,
                                    param_dtype=jnp.float32)  # fmt: skip
        x = TorchBatchNorm(dtype=dtype)(conv(x), s.train)
        return activate(x, "leaky_relu")


def model_layers(model: nn.Module, input_shape: tuple[int, ...], batch: int, train: bool) -> list[LayerSpec]:
    """The distinct convolutions `cpu_convs` builds for ``model`` on (batch, *input_shape) inputs."""
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    with conv_tuning.recording() as layers:
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=train), x)
    return list(dict.fromkeys(layers))


def _timer(layer: LayerSpec, form: str) -> Callable[[], object]:
    block = _Block(layer, form)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=layer.in_shape).astype(np.float32))
    variables = block.init(jax.random.key(0), x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    if layer.train:
        out = jax.eval_shape(lambda: block.apply(variables, x, mutable=["batch_stats"])[0])
        ct = jnp.asarray(rng.normal(size=out.shape).astype(np.float32))

        def loss(p, x):
            y, _ = block.apply({"params": p, **state}, x, mutable=["batch_stats"])
            return jnp.vdot(y.astype(jnp.float32), ct)

        fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    else:
        fn = jax.jit(lambda p, x: block.apply({"params": p, **state}, x))
    jax.block_until_ready(fn(params, x))  # compile
    return lambda: jax.block_until_ready(fn(params, x))


def measure(layer: LayerSpec, reps: int = 5) -> dict[str, list[float]]:
    """Milliseconds of each form per round, the forms alternating within each round."""
    timers = {form: _timer(layer, form) for form in candidates(layer)}
    times: dict[str, list[float]] = {form: [] for form in timers}
    for _ in range(reps):
        for form, run in timers.items():
            t = time.perf_counter()
            run()
            times[form].append(1e3 * (time.perf_counter() - t))
    return times


MARGIN = 0.03  # a form replaces the shape rule's only when this much faster


def choose(times: dict[str, list[float]], rule: str) -> str:
    """The fastest form by the median of its per-round ratios to the rule's form (a VM's speed drifts
    between rounds; each round's ratio cancels it), kept only when it beats the rule by MARGIN:
    a tie on a noisy machine keeps the form an untuned machine runs."""
    ratio = {f: statistics.median(a / b for a, b in zip(ts, times[rule], strict=True)) for f, ts in times.items()}
    best = min(ratio, key=ratio.get)
    return best if ratio[best] < 1.0 - MARGIN else rule


def tune(config, batch: int = 0, train: bool = True, reps: int = 5, progress: bool = True,
         only_missing: bool = False) -> list[dict]:  # fmt: skip
    """Time every convolution of ``config``'s model on this machine (with ``only_missing``, those
    without a cached form), cache the fastest forms, return one row per layer measured (its key,
    milliseconds per form, the form chosen)."""
    m = config.model
    spec = get_dataset(config.data.dataset)
    model = build_model(m.name, m.dims, spec.velocity_shape[-2:], m.compute_dtype, "auto")
    nhwc = (spec.time_samples, spec.receivers, spec.shots)  # one seismic sample as the network reads it
    layers = model_layers(model, nhwc, batch or config.batch_size, train)
    if only_missing:
        layers = [layer for layer in layers if conv_tuning.tuned_form(layer) is None]
    if not layers:
        return []
    if progress and only_missing:  # a training run's model.tune_convs: say why it waits
        print(f"model.tune_convs: measuring {len(layers)} convolutions on this CPU (once per machine and jax "
              "version) ...", flush=True)  # fmt: skip
    rows, entries = [], {}
    for i, layer in enumerate(layers, 1):
        times = measure(layer, reps)
        form = choose(times, rule_form(layer))
        ms = {f: statistics.median(ts) for f, ts in times.items()}
        entries[layer.key] = {"form": form, "ms": ms}
        rows.append({"layer": layer.key, **{f"{f}_ms": v for f, v in ms.items()}, "form": form})
        if progress:
            print(f"[{i}/{len(layers)}] {layer.key}: " + ", ".join(f"{f} {v:.2f} ms" for f, v in ms.items())
                  + f" -> {form}", flush=True)  # fmt: skip
    conv_tuning.save(entries)
    return rows


def _chosen(rows: list[dict]) -> str:
    """How many layers took each form: "8 xla, 11 matmul, 1 im2col, 5 hybrid"."""
    return ", ".join(f"{sum(r['form'] == f for r in rows)} {f}" for f in conv_tuning.FORMS)


def tune_for_training(config) -> None:
    """``model.tune_convs``: before a training run compiles, measure the convolutions of its model that
    this CPU has no cached form for (the first run on a machine pays a minute or so; later runs
    find them all). Nothing to do off a CPU, for an explicit ``conv_impl`` or across processes
    (each process could choose differently, and their programs must match)."""
    if not config.model.tune_convs or jax.default_backend() != "cpu" or config.model.conv_impl != "auto":
        return
    if jax.process_count() > 1:
        print("model.tune_convs: skipped in a multi-process run (tune once with `python -m fwi_jax.models tune`)")
        return
    rows = tune(config, train=True, only_missing=True)
    if rows:
        print(f"model.tune_convs: measured {len(rows)} convolutions on this CPU ({_chosen(rows)}); cached in "
              f"{conv_tuning.cache_path()}", flush=True)  # fmt: skip


def load_config(path_arg: str):
    """A config file's ``get_config(arg)`` from ``PATH[:ARG]`` (as `--config` of `fwi_jax.train`)."""
    path, _, arg = path_arg.partition(":")
    spec = importlib.util.spec_from_file_location("fwi_jax_tuned_config", path)
    if spec is None or spec.loader is None or not Path(path).is_file():
        raise FileNotFoundError(f"--config {path}: no such config file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg or None)


def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(prog="python -m fwi_jax.models tune", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a config file, PATH[:ARG] (e.g. configs/quickstart.py)")
    p.add_argument("--batch", type=int, default=0, help="global batch to tune at (default: the config's)")
    p.add_argument("--infer", action="store_true", help="tune the forward pass only (inference)")
    p.add_argument("--reps", type=int, default=5, help="alternating rounds per layer")
    a = p.parse_args(argv)
    if jax.default_backend() != "cpu":
        p.exit(0, f"nothing to tune: JAX runs on {jax.default_backend()}, which always uses XLA's convolutions\n")
    try:
        config = load_config(a.config)
    except Exception as e:  # a missing file, a bad variant, a config that raises: one line
        p.exit(2, f"error: the config {a.config} failed to load: {type(e).__name__}: {e}\n")
    print(f"tuning {config.model.dims} InversionNet convolutions at batch {a.batch or config.batch_size} on "
          f"{conv_tuning.machine_key()}", flush=True)  # fmt: skip
    rows = tune(config, a.batch, train=not a.infer, reps=a.reps)
    print(f"{len(rows)} layers ({_chosen(rows)}); saved to {conv_tuning.cache_path()}")
