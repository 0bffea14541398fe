"""Layer table of a model: each block's output shape and parameter count, via jax.eval_shape."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fwi_jax.models import build_model
from fwi_jax.models.layers import ConvBlock, DeconvBlock


def layer_table(name, dims, input_shape, output_size, batch: int = 1) -> tuple[list[tuple[str, tuple, int]], int]:
    """([(block path, output shape, trainable params)], total trainable params); nothing is computed."""
    return module_table(build_model(name, dims, output_size), (batch,) + tuple(input_shape))


def module_table(model, input_shape: tuple[int, ...]) -> tuple[list[tuple[str, tuple, int]], int]:
    """`layer_table` of any module made of ConvBlock / DeconvBlock, for an input of ``input_shape``."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)

    def run(v, x):
        return model.apply(
            v,
            x,
            train=False,
            capture_intermediates=lambda m, _: isinstance(m, ConvBlock | DeconvBlock),
            mutable=["intermediates"],
        )

    _, state = jax.eval_shape(run, variables, x)
    rows = []

    def walk(tree, params, path):  # dicts keep call order; tree_flatten would sort the names
        for key, sub in tree.items():
            if key == "__call__":
                count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
                rows.append(("/".join(path), tuple(sub[0].shape), count))
            else:
                walk(sub, params[key], path + [key])

    tree = state["intermediates"]
    order = sorted(tree, key=lambda k: ("encoder", "decoder").index(k) if k in ("encoder", "decoder") else 2)
    walk({k: tree[k] for k in order}, variables["params"], [])
    total = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    return rows, total


def format_table(rows, total: int) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'block':<{width}}  {'output (B, H, W, C)':<22} {'params':>12}", "-" * (width + 37)]
    lines += [f"{n:<{width}}  {str(s):<22} {p:>12,}" for n, s, p in rows]
    lines += ["-" * (width + 37), f"{'total trainable':<{width}}  {'':<22} {total:>12,}"]
    return "\n".join(lines)
