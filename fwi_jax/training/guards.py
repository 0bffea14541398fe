"""The run's guards against non-finite numbers: a NaN / inf in the inputs, the loss, the model state
or the validation metrics stops the run, in one wording, before anything non-finite is saved."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_ADVICE = "Lower optim.lr or check the data."


def _checkpoint_note(last_checkpoint: int | None) -> str:
    if last_checkpoint is None:
        return "no checkpoint was saved"
    return f"last good checkpoint: step {last_checkpoint} (nothing non-finite was saved)"


def non_finite(what: str, when: str, last_checkpoint: int | None) -> FloatingPointError:
    """The one error of every guard: ``{what} became non-finite {when}; {checkpoint note}. {advice}``."""
    return FloatingPointError(f"{what} became non-finite {when}; {_checkpoint_note(last_checkpoint)}. {_ADVICE}")


def check_window(
    window: list[dict[str, float]],
    first_step: int,
    last_checkpoint: int | None,
    name_bad_inputs: Callable[[range], str | None] | None = None,
) -> None:
    """The train metrics of steps first_step, first_step + 1, ...: raise naming the first step whose raw
    inputs (``inputs_finite``), training loss or model state (``finite``: BatchNorm statistics, the
    objective's state) hold NaN / inf. ``name_bad_inputs(steps)`` may name the sample behind bad inputs."""
    inputs_ok = np.array([w.get("inputs_finite", 1.0) for w in window])  # an objective may not report it
    if inputs_ok.min() < 1:
        bad = first_step + int(np.argmax(inputs_ok < 1))
        named = name_bad_inputs(range(bad - 1, bad)) if name_bad_inputs else None
        what = named or f"the training inputs of step {bad} hold NaN or inf; fix or drop the file that holds them"
        raise ValueError(f"{what}; {_checkpoint_note(last_checkpoint)}")
    losses, state_ok = (np.array([w[k] for w in window]) for k in ("loss", "finite"))
    bad_loss, bad_state = ~np.isfinite(losses), state_ok < 1
    steps = f"(steps {first_step}..{first_step + len(window) - 1})"
    if bad_loss.any() and (not bad_state.any() or np.argmax(bad_loss) <= np.argmax(bad_state)):
        i = int(np.argmax(bad_loss))
        raise non_finite(f"the training loss ({losses[i]})", f"at step {first_step + i} {steps}", last_checkpoint)
    if bad_state.any():
        at = f"at step {first_step + int(np.argmax(bad_state))} {steps} while the training loss is finite"
        raise non_finite("the model state (BatchNorm statistics or the objective's state)", at, last_checkpoint)


def check_state(finite: bool, step: int, last_checkpoint: int | None) -> None:
    """The whole state (parameters and optimizer state too), checked at each logged, evaluated or saved step."""
    if not finite:
        raise non_finite("the model state (parameters or optimizer state)", f"by step {step}", last_checkpoint)


def check_metrics(metrics: dict[str, float], step: int, what: str, last_checkpoint: int | None) -> None:
    bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
    if bad:
        raise non_finite(f"the {what} ({', '.join(bad)})", f"at step {step}", last_checkpoint)
