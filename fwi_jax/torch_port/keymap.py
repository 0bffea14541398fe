"""Reference (PyTorch) state_dict keys <-> fwi_jax variable paths, and the layout of each tensor.

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
The submodule names Conv_0 / ConvTranspose_0 / BatchNorm_0 are fixed by fwi_jax.models.layers.
"""

from __future__ import annotations

import numpy as np

from fwi_jax.models.layers import BATCHNORM_NAME, CONV_NAME, DECONV_NAME
from fwi_jax.models.velocitygan import CRITIC_BLOCKS

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


Row = tuple[str, tuple[str, ...], str]


def _block_rows(block: str, path: tuple[str, ...], transposed: bool) -> list[Row]:
    """The six tensors of one Conv/ConvTranspose -> BatchNorm block under fwi_jax path ``path``."""
    conv, kind = (DECONV_NAME, "deconv") if transposed else (CONV_NAME, "conv")
    return [
        (f"{block}.layers.0.weight", ("params", *path, conv, "kernel"), kind),
        (f"{block}.layers.0.bias", ("params", *path, conv, "bias"), "copy"),
        (f"{block}.layers.1.weight", ("params", *path, BATCHNORM_NAME, "scale"), "copy"),
        (f"{block}.layers.1.bias", ("params", *path, BATCHNORM_NAME, "bias"), "copy"),
        (f"{block}.layers.1.running_mean", ("batch_stats", *path, BATCHNORM_NAME, "mean"), "copy"),
        (f"{block}.layers.1.running_var", ("batch_stats", *path, BATCHNORM_NAME, "var"), "copy"),
    ]


def key_map() -> list[Row]:
    """(reference key, fwi_jax (collection, *path), kind) for every tensor of InversionNet."""
    return [
        row
        for part, blocks in (("encoder", ENCODER), ("decoder", DECODER))
        for b in blocks
        for row in _block_rows(b, (part, b), b in TRANSPOSED)
    ]


def critic_key_map() -> list[Row]:
    """The same for VelocityGAN's critic (its blocks sit at the top of the critic's variables)."""
    return [row for b in CRITIC_BLOCKS for row in _block_rows(b, (b,), False)]


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


def get_path(tree: dict, path: tuple[str, ...]):
    for p in path:
        tree = tree[p]
    return tree


def set_path(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def state_dict_to_variables(state_dict: dict[str, np.ndarray], expected: dict, rows: list[Row] | None = None) -> dict:
    """Convert to {"params", "batch_stats"} shaped like ``expected`` (shapes from eval_shape).

    Every problem (missing key, unexpected key, wrong shape, non-finite values) is collected and
    raised at once. ``rows``: the key map (default InversionNet's).
    """
    sd = unwrap(state_dict)
    problems, out, used = [], {}, set()
    for key, path, kind in rows or key_map():
        try:
            want = get_path(expected, path)
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
        set_path(out, path, value)
    extra = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    problems += [f"unexpected key {k} (not part of the model's layer table)" for k in extra]
    if problems:
        raise ValueError(f"{len(problems)} problem(s) converting the state_dict:\n  " + "\n  ".join(problems))
    return out


def variables_to_state_dict(variables: dict, step: int = 0, rows: list[Row] | None = None) -> dict[str, np.ndarray]:
    sd = {}
    for key, path, kind in rows or key_map():
        sd[key] = flax_to_torch(np.asarray(get_path(variables, path), np.float32), kind)
        if key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = np.asarray(step, np.int64)
    return sd
