"""Import reference (PyTorch) InversionNet weights as a fwi_jax checkpoint, and export them back.

    python -m fwi_jax.torch_port import MODEL.pth --dataset flatvel-a --workdir runs/imported
    python -m fwi_jax.torch_port export --workdir runs/imported --out MODEL.pth [--checkpoint best]

The imported checkpoint works with `python -m fwi_jax.evaluate` and `python -m fwi_jax.predict`.
Reading and writing .pth needs PyTorch: in this process when `import torch` works, otherwise a
Python interpreter that has torch, named by FWI_JAX_TORCH_PYTHON (e.g. a Python 3.11 venv with
`pip install torch==2.13.0`), which converts .pth <-> .npz in a subprocess.

Key map (reference name -> fwi_jax path), for every block B of the layer table:
    B.layers.0.weight        Conv2d (O, I, kh, kw)          -> B/Conv_0/kernel (kh, kw, I, O)
                             ConvTranspose2d (I, O, kh, kw) -> B/ConvTranspose_0/kernel, flipped (kh, kw, I, O)
    B.layers.0.bias          -> B/Conv_0/bias or B/ConvTranspose_0/bias
    B.layers.1.weight / bias -> B/BatchNorm_0/scale / bias (params)
    B.layers.1.running_mean / running_var -> B/BatchNorm_0/mean / var (batch_stats; PyTorch's unbiased
                             running variance, which fwi_jax's BatchNorm also keeps)
    B.layers.1.num_batches_tracked: dropped on import, written as the checkpoint step on export
Accepted wrappings: a plain state_dict, {"model": ...} (the reference's checkpoints) or
{"state_dict": ...}, and "module." prefixes (DistributedDataParallel).
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

ENCODER = (
    "convblock1",
    "convblock2_1",
    "convblock2_2",
    "convblock3_1",
    "convblock3_2",
    "convblock4_1",
    "convblock4_2",
    "convblock5_1",
    "convblock5_2",
    "convblock6_1",
    "convblock6_2",
    "convblock7_1",
    "convblock7_2",
    "convblock8",
)
DECODER = tuple(f"deconv{i}_{j}" for i in range(1, 6) for j in (1, 2)) + ("deconv6",)
TRANSPOSED = {f"deconv{i}_1" for i in range(1, 6)}
_SIDECAR_ENV = "FWI_JAX_TORCH_PYTHON"


def key_map() -> list[tuple[str, tuple[str, ...], str]]:
    """(reference key, fwi_jax (collection, *path), kind) for every converted tensor."""
    rows = []
    for part, blocks in (("encoder", ENCODER), ("decoder", DECODER)):
        for b in blocks:
            conv = "ConvTranspose_0" if b in TRANSPOSED else "Conv_0"
            kind = "deconv" if b in TRANSPOSED else "conv"
            rows += [
                (f"{b}.layers.0.weight", ("params", part, b, conv, "kernel"), kind),
                (f"{b}.layers.0.bias", ("params", part, b, conv, "bias"), "copy"),
                (f"{b}.layers.1.weight", ("params", part, b, "BatchNorm_0", "scale"), "copy"),
                (f"{b}.layers.1.bias", ("params", part, b, "BatchNorm_0", "bias"), "copy"),
                (f"{b}.layers.1.running_mean", ("batch_stats", part, b, "BatchNorm_0", "mean"), "copy"),
                (f"{b}.layers.1.running_var", ("batch_stats", part, b, "BatchNorm_0", "var"), "copy"),
            ]
    return rows


def torch_to_flax(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":  # (O, I, kh, kw) -> (kh, kw, I, O)
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "deconv":  # (I, O, kh, kw) -> spatially flipped (kh, kw, I, O)
        return np.ascontiguousarray(np.transpose(array, (2, 3, 0, 1))[::-1, ::-1])
    return array


def flax_to_torch(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":
        return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))
    if kind == "deconv":
        return np.ascontiguousarray(np.transpose(array[::-1, ::-1], (2, 3, 0, 1)))
    return array


def unwrap(state: dict) -> dict[str, np.ndarray]:
    """The state_dict inside the reference's wrappings, without DDP's "module." prefixes."""
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _get(tree: dict, path: tuple[str, ...]):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def state_dict_to_variables(state_dict: dict[str, np.ndarray], expected: dict) -> dict:
    """Convert to {"params", "batch_stats"} shaped like ``expected`` (shapes from eval_shape).

    Every problem (missing key, unexpected key, wrong shape, non-finite values) is collected and
    raised at once.
    """
    sd = unwrap(state_dict)
    problems, out, used = [], {}, set()
    for key, path, kind in key_map():
        try:
            want = _get(expected, path)
        except KeyError:
            problems.append(f"fwi_jax model has no {'/'.join(path)} (for {key})")
            continue
        if key not in sd:
            problems.append(f"missing {key} (expected {kind} tensor for {'/'.join(path)})")
            continue
        used.add(key)
        value = torch_to_flax(np.asarray(sd[key], np.float32), kind)
        if tuple(value.shape) != tuple(want.shape):
            src = tuple(np.asarray(sd[key]).shape)
            problems.append(f"{key}: shape {src} converts to {value.shape}, model needs {tuple(want.shape)}")
            continue
        if not np.all(np.isfinite(value)):
            problems.append(f"{key}: holds NaN or inf")
            continue
        _set(out, path, value)
    extra = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    problems += [f"unexpected key {k} (not part of InversionNet's layer table)" for k in extra]
    if problems:
        raise ValueError(f"{len(problems)} problem(s) converting the state_dict:\n  " + "\n  ".join(problems))
    return out


def variables_to_state_dict(variables: dict, step: int = 0) -> dict[str, np.ndarray]:
    sd = {}
    for key, path, kind in key_map():
        sd[key] = flax_to_torch(np.asarray(_get(variables, path), np.float32), kind)
        if key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = np.asarray(step, np.int64)
    return sd


# ---------------------------------------------------------------------------------------------
# .pth <-> .npz (PyTorch in-process or in the sidecar interpreter)

_SIDECAR = """
import sys, numpy as np, torch
mode, src, dst = sys.argv[1:4]
if mode == "load":
    obj = torch.load(src, map_location="cpu", weights_only=True)
    flat = {}
    def walk(prefix, o):
        if isinstance(o, dict):
            for k, v in o.items():
                walk(f"{prefix}{k}\\x1f", v)
        elif torch.is_tensor(o):
            flat[prefix[:-1]] = o.detach().cpu().numpy()
    walk("", obj)
    np.savez(dst, **flat)
else:
    with np.load(src) as z:
        sd = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    torch.save(sd, dst)
"""


def _torch():
    try:
        import torch

        return torch
    except ImportError:
        return None


def sidecar_python() -> str:
    exe = os.environ.get(_SIDECAR_ENV)
    if not exe:
        raise RuntimeError(
            "reading or writing .pth needs PyTorch: install torch here, or set "
            f"{_SIDECAR_ENV}=/path/to/python (an interpreter with torch, e.g. a Python 3.11 venv)"
        )
    return exe


def _run_sidecar(mode: str, src: Path, dst: Path) -> None:
    exe = sidecar_python()
    proc = subprocess.run([exe, "-c", _SIDECAR, mode, str(src), str(dst)], capture_output=True, text=True)
    if proc.returncode:
        raise ValueError(f"{exe} could not {mode} {src}: {proc.stderr.strip().splitlines()[-1:]}")


def load_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a .pth file as numpy, keys joined with '.' through nested dicts' wrappers."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    torch = _torch()
    if torch is not None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        flat = {}

        def walk(prefix, o):
            if isinstance(o, dict):
                for k, v in o.items():
                    walk(prefix + (str(k),), v)
            elif torch.is_tensor(o):
                flat["\x1f".join(prefix)] = o.detach().cpu().numpy()

        walk((), obj)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "sd.npz"
            _run_sidecar("load", path, npz)
            with np.load(npz) as z:
                flat = {k: z[k] for k in z.files}
    nested: dict = {}
    for k, v in flat.items():
        _set(nested, tuple(k.split("\x1f")), v)
    return nested


def save_pth(state_dict: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch = _torch()
    if torch is not None:
        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()}, tmp)
    else:
        with tempfile.TemporaryDirectory() as d:
            npz = Path(d) / "sd.npz"
            np.savez(npz, **state_dict)
            _run_sidecar("save", npz, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def import_state_dict(
    state_dict: dict, dataset: str, workdir: str | os.PathLike, dims: str = "openfwi", seed: int = 0
) -> Path:
    """Write a fwi_jax checkpoint (step 0, also exported as best) holding the reference weights."""
    from fwi_jax import parallel, trainer
    from fwi_jax.checkpointing import Checkpointer, config_to_json
    from fwi_jax.config import dataset_config

    workdir = Path(workdir).expanduser().absolute()
    if (workdir / "checkpoints").exists() or (workdir / "best").exists():
        raise FileExistsError(f"{workdir} already holds checkpoints; import into a new --workdir")
    config = dataset_config(dataset)
    config.model.dims = dims
    config.seed = seed
    spec = trainer.get_dataset(dataset)
    model = trainer.model_from_config(config, spec)
    tx = trainer.make_optimizer(config, 1)
    init = functools.partial(trainer.init_state, model, tx, seed, spec)
    shapes = jax.eval_shape(init)
    variables = state_dict_to_variables(state_dict, {"params": shapes.params, "batch_stats": shapes.batch_stats})
    mesh = parallel.make_mesh()
    repl = parallel.replicated(mesh)

    def build():
        s = init()
        params = jax.tree.map(lambda _, v: jax.numpy.asarray(v), s.params, variables["params"])
        return s.replace(params=params, batch_stats=variables["batch_stats"], opt_state=tx.init(params))

    state = jax.jit(build, out_shardings=repl)()
    config_json = {**config_to_json(config), "normalization": spec.normalization(), "imported_from": "pytorch"}
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        ckpt.save(0, state, {"next_step": 0}, config_json, force=True)
        ckpt.save_best(0, state, {"next_step": 0}, config_json, float("inf"))
        ckpt.wait()
    finally:
        ckpt.close()
    return workdir


def export_state_dict(workdir: str | os.PathLike, checkpoint: str = "best") -> dict[str, np.ndarray]:
    from fwi_jax import inference

    trained = inference.load(workdir, checkpoint)
    variables = jax.device_get({"params": trained.state.params, "batch_stats": trained.state.batch_stats})
    return variables_to_state_dict(variables, trained.step)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m fwi_jax.torch_port", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="reference .pth -> fwi_jax checkpoint in --workdir")
    imp.add_argument("pth")
    imp.add_argument("--dataset", required=True, help="OpenFWI dataset the weights were trained on (normalization)")
    imp.add_argument("--workdir", required=True)
    imp.add_argument("--dims", default="openfwi", help="width preset of the weights (default: the reference's)")
    exp = sub.add_parser("export", help="fwi_jax checkpoint -> .pth the reference loads")
    exp.add_argument("--workdir", required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument("--checkpoint", default="best")
    a = p.parse_args(argv)
    try:
        if a.cmd == "import":
            out = import_state_dict(load_pth(a.pth), a.dataset, a.workdir, a.dims)
            print(
                f"imported {a.pth} into {out}; evaluate with python -m fwi_jax.evaluate --workdir {out} "
                "--data-root DATASET_DIR, or predict with python -m fwi_jax.predict --workdir {out} ..."
            )
        else:
            sd = export_state_dict(a.workdir, a.checkpoint)
            save_pth(sd, a.out)
            print(f"wrote {a.out} ({len(sd)} tensors): model.load_state_dict(torch.load(path)) in the reference")
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        p.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    sys.exit(main())
