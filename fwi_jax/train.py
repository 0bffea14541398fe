"""Train InversionNet.

    python -m fwi_jax.train --config configs/quickstart.py --workdir runs/quickstart
    python -m fwi_jax.train --config configs/flatvel_a.py --workdir runs/fva --config.data.root=/data/flatvel-a

Re-running the same command resumes from the latest checkpoint in --workdir. Any config field
can be overridden with --config.a.b=value; unknown fields are errors. Multi-word flags take
dashes or underscores (--coordinator-address or --coordinator_address), as in every fwi_jax command.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from fwi_jax import distributed, paths, supervisor

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and pictures.", required=True)
config_flags.DEFINE_config_file("config", "configs/quickstart.py", "Config file (path[:arg]).", lock_config=True)
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed", "off", ["off", "auto", "explicit"], "Multi-process runtime: auto on TPU pods / SLURM."
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (--distributed=explicit).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes (--distributed=explicit).")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's id (--distributed=explicit).")
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    "heartbeat_timeout",
    distributed.HEARTBEAT_TIMEOUT_S,
    "Seconds without a peer's heartbeat before a multi-process run stops (JAX: 100).",
)
_SHUTDOWN_TIMEOUT = flags.DEFINE_integer(
    "shutdown_timeout",
    distributed.SHUTDOWN_TIMEOUT_S,
    "Seconds a finished process waits for its peers at exit (JAX: 300).",
)
_TAKE_OVER_LOCK = flags.DEFINE_bool(
    "take_over_lock", False, "Take over the workdir's lock left by a run on another host that is gone."
)
for _name in (
    "coordinator_address",
    "num_processes",
    "process_id",
    "heartbeat_timeout",
    "shutdown_timeout",
    "take_over_lock",
):  # fwi_jax.cli's flag style
    flags.DEFINE_alias(_name.replace("_", "-"), _name)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    # JAX-importing modules load here, not at the top: the huge-pages re-exec in __main__ comes first, so
    # JAX is imported once, by the restarted process (tests/test_repo.py allows only such entry-point imports).
    runtime = (_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
        distributed.check(*runtime)
        if _DISTRIBUTED.value != "off" and not supervisor.supervised():  # a lost peer as one line
            raise SystemExit(
                supervisor.run(_PROCESS_ID.value, _NUM_PROCESSES.value, _HEARTBEAT_TIMEOUT.value, _WORKDIR.value)
            )
        distributed.initialize(*runtime, _HEARTBEAT_TIMEOUT.value, _SHUTDOWN_TIMEOUT.value)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    from fwi_jax.metrics import describe
    from fwi_jax.training.loop import train_and_evaluate

    try:
        config = flags.FLAGS.config
        config.keys()  # the file loads lazily: a missing or broken one fails here
    except OSError as e:
        raise _load_failure(sys.argv, str(e)) from None
    use_compilation_cache(config.compilation_cache)
    try:
        summary = train_and_evaluate(config, _WORKDIR.value, take_over_lock=_TAKE_OVER_LOCK.value)
    except (ValueError, OSError, FloatingPointError, RuntimeError) as e:  # exit code 1, one line
        raise SystemExit(f"error: {e}") from None
    if summary["val"] and jax_process_index() == 0:
        print(f"done at step {summary['step']}: val {describe(summary['val'])}")


def use_compilation_cache(setting: str) -> None:
    """Later runs skip XLA compilation (tens of seconds on CPU). A global JAX setting, so the entry point
    makes it, never the library."""
    directory = paths.compilation_cache(setting)
    if directory is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", str(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def jax_process_index() -> int:
    import jax

    return jax.process_index()


def _config_arg(argv: list[str]) -> str:
    config = next((a.split("=", 1)[-1] for a in argv if a.startswith("--config=")), None)
    return config or next((b for a, b in zip(argv, argv[1:], strict=False) if a == "--config"), "--config")


def _load_failure(argv: list[str], error: str) -> SystemExit:
    """One line naming the config argument and what went wrong (the config library wraps an error
    that get_config raises, or an import that fails, in a traceback: its last line says what)."""
    last = ([line.strip() for line in error.strip().splitlines() if line.strip()] or ["unknown error"])[-1]
    path = _config_arg(argv).split(":")[0]
    if "No such file or directory" in last and not Path(path).is_file():
        here = sorted(p.name for p in Path("configs").glob("*.py")) if Path("configs").is_dir() else []
        listed = f" (configs/ holds {', '.join(here)})" if here else ""
        return SystemExit(f"error: the config file {path} does not exist{listed}")
    return SystemExit(f"error: the config {_config_arg(argv)} failed to load: {last}")


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing, with config mistakes (a typo'd field, a bad value, a variant that does not exist, a
    config file that fails to import) as one-line errors."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        if "Error whilst parsing config file" in str(e) or "Failed loading config file" in str(e):
            raise _load_failure(argv, str(e)) from None
        raise _field_error(argv, e) from None
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise _field_error(argv, e) from None
    except SyntaxError as e:  # the config file itself
        raise SystemExit(f"error: {e.filename}:{e.lineno}: syntax error in the config file: {e.msg}") from None
    except Exception as e:  # get_config raised, or the file imports what is not there
        raise _load_failure(argv, f"{type(e).__name__}: {e}") from None


def _field_error(argv: list[str], e: Exception) -> SystemExit:
    """A typo'd field or a bad value: the flag named, and where the fields are listed."""
    msg = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    key = re.match(r"'?(\w+)'", msg)
    culprit = [a.split("=")[0] for a in argv if key and a.startswith("--config.") and f".{key.group(1)}" in a]
    where = f"{culprit[0]}: " if culprit else ""
    return SystemExit(f"error: {where}{msg}\n(fields are listed in the config file; see --helpfull)")


if __name__ == "__main__":
    from fwi_jax.cpu_runtime import use_transparent_hugepages

    use_transparent_hugepages()
    app.run(main, flags_parser=parse_flags)
