"""Orbax checkpoints: the train state, the data position and the config, async, keep-N, best export.

Resume order (what `restore` brings back, in this order): the config saved with the checkpoint
(checked for compatibility), then the state (params, batch_stats, opt_state, step, rng) onto the
current mesh's shardings (any device count), then the data position (the next step's batches
follow from it and the seed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Latest-N checkpoints under ``<workdir>/checkpoints`` and the best under ``<workdir>/best``."""

    def __init__(self, workdir: str | Path, keep: int = 3, async_save: bool = True):
        root = Path(workdir).expanduser().absolute()  # Orbax needs absolute paths
        self.directory = root / "checkpoints"
        items = ("state", "data", "config")
        self._latest = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True),
            item_names=items,
        )
        self._best = ocp.CheckpointManager(
            root / "best",
            options=ocp.CheckpointManagerOptions(
                max_to_keep=1,
                best_fn=lambda m: m["val_loss"],
                best_mode="min",
                create=True,
                enable_async_checkpointing=async_save,
            ),
            item_names=items,
        )

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.best_step()

    def _args(self, state, data: dict, config: dict):
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data), config=ocp.args.JsonSave(config)
        )

    def save(self, step: int, state, data: dict, config: dict, force: bool = False) -> bool:
        return self._latest.save(step, args=self._args(state, data, config), force=force)

    def save_best(self, step: int, state, data: dict, config: dict, val_loss: float) -> None:
        self._best.save(step, args=self._args(state, data, config), metrics={"val_loss": float(val_loss)}, force=True)

    def _pick(self, step: int | None, best: bool) -> tuple[ocp.CheckpointManager, int]:
        """The manager and the step to read (default: its latest / best)."""
        mngr = self._best if best else self._latest
        step = step if step is not None else (mngr.best_step() if best else mngr.latest_step())
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
        return mngr, step

    def read_config(self, step: int | None = None, best: bool = False) -> dict:
        mngr, step = self._pick(step, best)
        return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def restore(self, abstract_state, step: int | None = None, best: bool = False) -> tuple[Any, dict, dict]:
        """(state, data position, config) of `step` (default: latest / best), placed like `abstract_state`."""
        mngr, step = self._pick(step, best)
        out = mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return out["state"], out["data"], out["config"]

    def wait(self) -> None:
        self._latest.wait_until_finished()
        self._best.wait_until_finished()

    def close(self) -> None:
        self._latest.close()
        self._best.close()


def abstract_like(tree, sharding) -> Any:
    """ShapeDtypeStructs of `tree` carrying `sharding` (restore target on the current mesh)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def config_to_json(config) -> dict:
    return json.loads(config.to_json_best_effort())
