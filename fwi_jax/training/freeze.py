"""Frozen parts of the network (``optim.freeze``): no update, no weight decay, fixed BatchNorm statistics.

``none``, ``encoder``, ``decoder`` or comma-separated module path prefixes of the parameter tree
(``encoder/convblock1,encoder/convblock2_1``). The optimizer routes frozen parameters to
`optax.set_to_zero` (optax.multi_transform), so AdamW's decay never touches them, and the train step
puts their running statistics back after each update.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax


def prefixes(setting: str) -> tuple[str, ...]:
    """The module path prefixes ``setting`` names ("none" and "" name nothing)."""
    if setting in ("", "none"):
        return ()
    return tuple(p.strip().strip("/") for p in setting.split(",") if p.strip())


def path_name(keys) -> str:
    """A pytree leaf's key path as ``encoder/convblock1/Conv_0/kernel``."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in keys)


def frozen_mask(tree: Any, frozen: tuple[str, ...]) -> Any:
    """A tree of bools like ``tree``: True where a leaf's path starts with a frozen prefix."""
    return jax.tree_util.tree_map_with_path(lambda keys, _: any(_under(path_name(keys), p) for p in frozen), tree)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def check(params: Mapping, setting: str) -> tuple[str, ...]:
    """The prefixes of ``setting``, each matching at least one parameter, else one error listing the modules."""
    frozen = prefixes(setting)
    paths = [path_name(keys) for keys, _ in jax.tree_util.tree_leaves_with_path(params)]
    unknown = [p for p in frozen if not any(_under(path, p) for path in paths)]
    if unknown:
        modules = sorted({"/".join(path.split("/")[:2]) for path in paths})
        raise ValueError(
            f"optim.freeze={setting!r}: {', '.join(unknown)} names no part of the model; use none, encoder, "
            f"decoder or module paths such as {', '.join(modules[:4])} (all: {', '.join(modules)})"
        )
    return frozen


def count(params: Mapping, frozen: tuple[str, ...]) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    mask = frozen_mask(params, frozen)
    sizes = zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True)
    totals = [0, 0]
    for leaf, is_frozen in sizes:
        totals[bool(is_frozen)] += int(leaf.size)
    return totals[0], totals[1]


def masked_optimizer(tx: optax.GradientTransformation, frozen: tuple[str, ...]) -> optax.GradientTransformation:
    """``tx`` for the trainable parameters, zero updates (and no optimizer state) for the frozen ones."""
    if not frozen:
        return tx

    def labels(params):
        return jax.tree.map(lambda f: "frozen" if f else "train", frozen_mask(params, frozen))

    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def keep_frozen_statistics(new: Any, old: Any, frozen: tuple[str, ...]) -> Any:
    """BatchNorm statistics: ``old`` under the frozen prefixes, ``new`` elsewhere."""
    if not frozen:
        return new
    return jax.tree.map(lambda f, n, o: o if f else n, frozen_mask(new, frozen), new, old)
