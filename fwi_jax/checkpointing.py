"""Orbax checkpoints of a run: a state pytree, the data position and the config (JSON), async,
keep-N, and the best export. Orbax only: what a state is and how a run resumes from one live with
the steps (`fwi_jax.training.steps.restore_or_init`)."""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, no permission, read-only filesystem)."""


# Orbax reports failed asynchronous writes as other exceptions carrying the OS error in the text.
_WRITE_ERRORS = ("No space left", "Permission denied", "Read-only file system", "os_error_code", "RESOURCE_EXHAUSTED")


class Checkpointer:
    """Latest-N checkpoints under ``<workdir>/checkpoints`` and the best under ``<workdir>/best``."""

    def __init__(self, workdir: str | Path, keep: int = 3, async_save: bool = True):
        root = Path(workdir).expanduser().absolute()  # Orbax needs absolute paths
        self.directory = root / "checkpoints"

        # Handlers named up front: a fresh manager can then read an item's metadata before any restore.
        def items():
            return {
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(),
            }

        self._latest = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True),
            item_handlers=items(),
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
            item_handlers=items(),
        )

    def all_steps(self) -> list[int]:
        """Steps of the latest-N checkpoints that exist, oldest first."""
        return sorted(self._latest.all_steps())

    def latest_step(self) -> int | None:
        return self._latest.latest_step()

    def best_step(self) -> int | None:
        return self._best.best_step()

    def _args(self, state, data: dict, config: dict):
        return ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data), config=ocp.args.JsonSave(config)
        )

    def save(self, step: int, state, data: dict, config: dict, force: bool = False) -> bool:
        with self._writing(self._latest, step, state):
            return self._latest.save(step, args=self._args(state, data, config), force=force)

    def resume_best(self, upto: int) -> float:
        """Removes the best exports past step ``upto`` and returns the validation loss of the best one left
        (inf: none). Exports past ``upto`` come from a run that stopped before its checkpoint of that step
        was written; the run resuming at ``upto`` recomputes them (and would otherwise find its step taken)."""
        for step in self._best.all_steps():
            if step > upto:
                self._best.delete(step)
        best = self._best.best_step()
        metrics = self._best.metrics(best) if best is not None else None
        return float(metrics["val_loss"]) if metrics else math.inf

    def save_best(self, step: int, state, data: dict, config: dict, val_loss: float) -> None:
        with self._writing(self._best, step, state):
            if step in self._best.all_steps():  # left by an earlier try at this same step
                self._best.delete(step)
            self._best.save(
                step, args=self._args(state, data, config), metrics={"val_loss": float(val_loss)}, force=True
            )

    @contextlib.contextmanager
    def _writing(self, mngr: ocp.CheckpointManager, step: int | None, state=None) -> Iterator[None]:
        """Check free space before a save (a full disk would otherwise show only at the next one, the
        saves being asynchronous) and turn any write error into one message that says what is safe."""
        directory = Path(mngr.directory)
        if state is not None:
            need = sum(x.nbytes for x in jax.tree.leaves(state))
            free = shutil.disk_usage(directory).free
            if free < 1.2 * need:
                room = f"{free / 2**20:.1f} MiB free, the checkpoint needs ~{need / 2**20:.1f} MiB + 20% while writing"
                raise CheckpointWriteError(self._failure(directory, step, room))
        try:
            yield
        except Exception as e:
            text = str(e)
            if isinstance(e, OSError) or any(m in text for m in _WRITE_ERRORS):
                reason = text.split(": ")[-1] if "os_error_code" in text else text
                raise CheckpointWriteError(self._failure(directory, step, reason)) from None
            raise

    def _failure(self, directory: Path, step: int | None, reason: str) -> str:
        intact = ", ".join(map(str, self.all_steps())) or "none"
        what = f"the checkpoint of step {step}" if step is not None else "a checkpoint"
        return (
            f"could not write {what} to {directory} ({reason}); the checkpoints already there are intact "
            f"(steps {intact}). Free space or fix permissions, then rerun the same command to resume."
        )

    def wait(self) -> None:
        for mngr in (self._latest, self._best):
            with self._writing(mngr, None):
                mngr.wait_until_finished()

    def _pick(self, step: int | None, best: bool) -> tuple[ocp.CheckpointManager, int]:
        """The manager and the step to read (default: its latest / best)."""
        mngr = self._best if best else self._latest
        step = step if step is not None else (mngr.best_step() if best else mngr.latest_step())
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
        if step not in mngr.all_steps():
            have = ", ".join(map(str, sorted(mngr.all_steps()))) or "none"
            raise FileNotFoundError(f"no checkpoint of step {step} in {mngr.directory}; steps there: {have}")
        return mngr, step

    def read_config(self, step: int | None = None, best: bool = False) -> dict:
        mngr, step = self._pick(step, best)
        with self._reading(mngr, step):
            return mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    @contextlib.contextmanager
    def _reading(self, mngr: ocp.CheckpointManager, step: int) -> Iterator[None]:
        """Any failure to read a checkpoint (truncated, corrupt, foreign files) as one message."""
        try:
            yield
        except Exception as e:
            reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            raise ValueError(
                f"the checkpoint of step {step} in {mngr.directory} is unreadable ({reason}); remove the folder "
                f"{Path(mngr.directory) / str(step)} to fall back to an earlier checkpoint, or use another --workdir"
            ) from None

    def state_keys(self, step: int | None = None, best: bool = False) -> set[str]:
        """Top-level keys of the state saved at ``step`` (default: latest / best), read from Orbax's metadata."""
        mngr, step = self._pick(step, best)
        with self._reading(mngr, step):
            return set(mngr.item_metadata(step)["state"].tree)

    def restore(self, abstract_state, step: int | None = None, best: bool = False) -> tuple[Any, dict, dict]:
        """(state, data position, config) of `step` (default: latest / best), placed like `abstract_state`."""
        mngr, step = self._pick(step, best)
        with self._reading(mngr, step):
            out = mngr.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    config=ocp.args.JsonRestore(),
                ),
            )
        return out["state"], out["data"], out["config"]

    def close(self) -> None:
        for mngr in (self._latest, self._best):
            with self._writing(mngr, None):
                mngr.close()
