"""The run's metrics on disk: JSONL (always) and TensorBoard events (tensorboardX, no TensorFlow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax

from fwi_jax.fileio import repair_jsonl_tail


class MetricWriter:
    """JSONL (always) and TensorBoard events (tensorboardX, no TensorFlow) on process 0."""

    def __init__(self, workdir: Path, tensorboard: bool):
        self.enabled = jax.process_index() == 0
        self._tb = None
        if not self.enabled:
            return
        note = repair_jsonl_tail(workdir / "metrics.jsonl")  # a crash may have torn the last line
        if note:
            print(f"note: {note}", file=sys.stderr)
        self._jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter  # optional: metrics.jsonl holds everything
            except ImportError:
                print(
                    "warning: tensorboardX is not installed, so no TensorBoard events are written (metrics.jsonl "
                    "is); pip install tensorboardX, or set --config.tensorboard=False",
                    file=sys.stderr,
                )
            else:
                self._tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        try:
            self._jsonl.write(json.dumps({"step": step, "split": split, **values}) + "\n")
            self._jsonl.flush()
            if self._tb is not None:
                for k, v in values.items():
                    if isinstance(v, int | float):  # text (a fine-tuning source) goes to the JSONL only
                        self._tb.add_scalar(f"{split}/{k}", v, step)
        except OSError as e:
            raise OSError(
                e.errno,
                f"could not write the metrics of step {step} to {self._jsonl.name} ({e.strerror}); free "
                "space or fix permissions, then rerun the same command to resume from the last checkpoint",
            ) from None

    def close(self) -> None:
        """Close the files; a failing flush (a full disk) is reported, never raised: closing runs while
        another error (the one that names the problem) may be on its way out."""
        if not self.enabled:
            return
        for name, f in (("metrics.jsonl", self._jsonl), ("TensorBoard events", self._tb)):
            try:
                if f is not None:
                    f.close()
            except OSError as e:
                print(f"warning: could not flush the {name} ({e.strerror})", file=sys.stderr)
