"""Training: loss goes down, sharding parity, resume equivalence, determinism, signals, errors, objectives."""

import dataclasses
import errno
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import SPEC, assert_trees_equal, fixed_batch, params_of, registered_objective, smoke_config

from fwi_jax import parallel
from fwi_jax.checkpointing import Checkpointer, CheckpointWriteError
from fwi_jax.config import quickstart_config
from fwi_jax.data.open import open_sources
from fwi_jax.training import loop, objectives
from fwi_jax.training.guards import check_state
from fwi_jax.training.loop import train_and_evaluate
from fwi_jax.training.metric_writer import MetricWriter
from fwi_jax.training.steps import learning_rate_schedule, loss_and_grads, make_steps, restore_or_init
from fwi_jax.training.workdir_lock import WorkdirLock

REPO = Path(__file__).resolve().parents[1]


def test_train_step_lowers_loss_and_overfits_a_tiny_batch(cache_dir):
    config = smoke_config(cache_dir, **{"optim.lr": 3e-3})
    mesh = parallel.make_mesh()
    steps = make_steps(config, SPEC, mesh, steps_per_epoch=10)
    state = steps.init()
    batch = parallel.global_batch(fixed_batch(8), mesh)
    losses = []
    for _ in range(60):
        state, m = steps.train(state, batch)
        losses.append(float(m["loss"]))
    assert losses[5] < losses[0]
    assert losses[-1] < 0.3 * losses[0]  # memorizes 8 samples
    assert int(state.step) == 60


def test_learning_rate_schedules():
    step = quickstart_config()
    step.num_epochs = 16
    step.optim.update(lr=1e-3, decay="step", milestones=(12,), gamma=0.1, warmup_epochs=1, warmup_factor=0.1)
    lr = learning_rate_schedule(step, steps_per_epoch=10)
    np.testing.assert_allclose(
        [lr(s) for s in (0, 5, 10, 119, 120, 159)], [1e-4, 5.5e-4, 1e-3, 1e-3, 1e-4, 1e-4], rtol=1e-5
    )
    cosine = quickstart_config()
    cosine.num_epochs = 16
    cosine.optim.update(lr=1e-3, decay="cosine", milestones=(), warmup_epochs=2, warmup_factor=0.0)
    lr = learning_rate_schedule(cosine, steps_per_epoch=10)  # warmup 20 steps, then 140 down to 0
    np.testing.assert_allclose([lr(s) for s in (0, 10, 20, 90, 160)], [0, 5e-4, 1e-3, 5e-4, 0], atol=1e-9)
    cosine.optim.milestones = (12,)
    with pytest.raises(ValueError, match="milestones"):
        learning_rate_schedule(cosine, 10)
    cosine.optim.decay = "linear"
    with pytest.raises(ValueError, match="'step' or 'cosine'"):
        learning_rate_schedule(cosine, 10)


@pytest.mark.floors
def test_one_device_and_eight_devices_give_the_same_step(cache_dir):
    """Same loss, gradients and BatchNorm statistics (global-batch BN) on 1 and 8 devices."""
    assert jax.device_count() == 8
    config = smoke_config(cache_dir)
    batch = fixed_batch(8, seed=1)
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        steps = make_steps(config, SPEC, mesh, steps_per_epoch=10)
        state = steps.init()
        fn = functools.partial(loss_and_grads, objective=steps.objective)
        repl, bsh = parallel.replicated(mesh), parallel.batch_sharded(mesh)
        out = jax.jit(fn, in_shardings=(repl, bsh))(state, parallel.global_batch(batch, mesh))
        results.append(jax.device_get((state.params, out)))
    (params1, ((loss1, (_, bs1)), g1)), (params8, ((loss8, (_, bs8)), g8)) = results
    assert_trees_equal(params1, params8)  # identical initialization
    assert abs(float(loss1) - float(loss8)) <= 1e-5 * abs(float(loss1))
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(g1))
    flat1 = jax.tree_util.tree_flatten_with_path(g1)[0]
    for (path, a), b in zip(flat1, jax.tree.leaves(g8), strict=True):
        name = jax.tree_util.keystr(path)
        if name.endswith("['bias']") and "Conv" in name:
            # Every conv feeds a BatchNorm, which cancels its bias: the gradient is 0 up to rounding.
            assert max(np.abs(a).max(), np.abs(b).max()) < 1e-3 * scale, name
        else:
            # float32 sums over 8 shards vs 1 round differently (each conv's output is bitwise the same;
            # BatchNorm statistics and weight gradients are not), BatchNorm over the 1 x 1 bottleneck of 8
            # samples amplifies that on the way back, and a LeakyReLU input within rounding of 0 can take
            # the other slope. Worst tensor, relative L2, batches of seeds 1 / 2 / 3: 2.8e-5 / 3.4e-3 / 3.0e-5
            # with im2col convs, 6.7e-3 / 1.7e-2 / 5.4e-5 with the shifted-product convs; statistics taken
            # per shard instead of globally differ by O(1).
            assert np.linalg.norm(b - a) <= 5e-2 * np.linalg.norm(a) + 1e-6 * scale, name
    bn_scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(bs1))
    for a, b in zip(jax.tree.leaves(bs1), jax.tree.leaves(bs8), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * bn_scale)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_full_run_writes_metrics_checkpoints_and_picture(cache_dir, tmp_path):
    summary = train_and_evaluate(smoke_config(cache_dir), tmp_path / "run")
    run = tmp_path / "run"
    assert summary["step"] == summary["total_steps"] == 4 and summary["interrupted"] is None
    assert summary["train_step_compilations"] == 1  # 4 steps, evaluation between them: one executable
    rows = read_jsonl(run / "metrics.jsonl")
    assert {r["split"] for r in rows} == {"train", "val"}
    val = [r for r in rows if r["split"] == "val"][-1]
    for key in ("mae_norm", "rmse_norm", "mae_ms", "rmse_ms", "ssim"):
        assert np.isfinite(val[key])
    assert val["mae_ms"] == pytest.approx(1500 * val["mae_norm"], rel=1e-6)
    assert val["samples"] == 8  # every validation sample counted once
    assert (run / "predictions.png").stat().st_size > 10_000
    assert not (run / "run.lock").exists()  # released
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = Checkpointer(run)
    assert ckpt.latest_step() == 4 and ckpt.best_step() is not None
    ckpt.close()


def test_the_best_export_is_the_best_evaluated_state_written_with_the_next_checkpoint(cache_dir, tmp_path, monkeypatch):
    calls = []

    def spy(name, method):
        def recorded(*args, **kwargs):
            calls.append(name if name == "eval" else (name, args[1]))  # (name, step) for the saves
            return method(*args, **kwargs)

        return recorded

    monkeypatch.setattr(Checkpointer, "save_best", spy("best", Checkpointer.save_best))
    monkeypatch.setattr(Checkpointer, "save", spy("save", Checkpointer.save))
    monkeypatch.setattr(loop, "evaluate", spy("eval", loop.evaluate))
    config = smoke_config(cache_dir, eval_every_steps=1, checkpoint_every_steps=3, num_plot_samples=0)
    train_and_evaluate(config, tmp_path / "run")
    val = {r["step"]: r["loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["split"] == "val"}
    assert sorted(val) == [1, 2, 3, 4]
    first = min((1, 2, 3), key=val.get)
    best = 4 if val[4] < val[first] else first
    # No export between checkpoints (each costs an Orbax save); each one the best evaluated so far.
    assert calls == ["eval"] * 3 + [("best", first), ("save", 3), "eval"] + [("best", 4)] * (best == 4) + [("save", 4)]
    ckpt = Checkpointer(tmp_path / "run")
    state, _ = restore_or_init(ckpt, make_steps(config, SPEC, parallel.make_mesh()), best=True)
    assert int(state.step) == ckpt.best_step() == best  # the state of that step, not a later one
    ckpt.close()


def test_interrupt_and_resume_equals_uninterrupted_and_runs_are_deterministic(cache_dir, tmp_path, capsys):
    full = train_and_evaluate(smoke_config(cache_dir), tmp_path / "full")
    again = train_and_evaluate(smoke_config(cache_dir), tmp_path / "again")
    assert_trees_equal(params_of(full), params_of(again))
    losses = [
        [r["loss"] for r in read_jsonl(tmp_path / d / "metrics.jsonl") if r["split"] == "train"]
        for d in ("full", "again")
    ]
    assert losses[0] == losses[1]

    train_and_evaluate(smoke_config(cache_dir, num_train_steps=3), tmp_path / "resumed")
    # A crash mid-write tore the log's last line: the resumed run cuts it off (kept aside) and appends
    # whole lines after it.
    log = tmp_path / "resumed" / "metrics.jsonl"
    with open(log, "rb+") as f:
        f.truncate(log.stat().st_size - 7)
    resumed = train_and_evaluate(smoke_config(cache_dir), tmp_path / "resumed")
    assert "its last line was torn" in capsys.readouterr().err
    assert (tmp_path / "resumed" / "metrics.jsonl.torn").is_file()
    assert read_jsonl(log)[-1]["step"] == 4  # every line parses
    assert resumed["step"] == 4
    assert_trees_equal(params_of(full), params_of(resumed))
    state_a, state_b = jax.device_get(full["state"]), jax.device_get(resumed["state"])
    assert_trees_equal(state_a.opt_state, state_b.opt_state)
    assert_trees_equal(state_a.batch_stats, state_b.batch_stats)

    # The best export can be ahead of the latest checkpoint (a full disk refused step 2's save after its
    # best export was written; seen in CI): the rerun starts over, recomputes it and replaces it.
    best = sorted(p.name for p in (tmp_path / "full" / "best").iterdir() if p.name.isdigit())
    shutil.rmtree(tmp_path / "full" / "checkpoints")
    rerun = train_and_evaluate(smoke_config(cache_dir), tmp_path / "full")
    assert rerun["step"] == 4
    assert_trees_equal(params_of(full), params_of(rerun))
    assert sorted(p.name for p in (tmp_path / "full" / "best").iterdir() if p.name.isdigit()) == best


@dataclasses.dataclass(frozen=True)
class CountingL2(objectives.Objective):
    """A toy objective: plain L2, with an update counter as its own state."""

    def init_state(self, rng):
        return {"updates": jnp.zeros((), jnp.int32)}

    def update_state(self, objective_state, params, batch_stats, batch, rng):
        n = objective_state["updates"] + 1
        return {"updates": n}, batch_stats, {"updates": n.astype(jnp.float32)}

    def loss(self, params, batch_stats, objective_state, batch, rng):
        pred, batch_stats = self.predict_train(params, batch_stats, batch["seismic"])
        l2 = jnp.mean((pred - batch["velocity"]) ** 2)
        return l2, ({"l2": l2}, batch_stats)

    def validation_loss(self, val_metrics):
        return val_metrics["mse_norm"]


def test_a_toy_objective_swaps_in_by_config_and_checkpoints_its_own_state(cache_dir, tmp_path):
    with registered_objective("counting_l2", lambda config, model, spec: CountingL2(model)):
        run = tmp_path / "run"
        train_and_evaluate(smoke_config(cache_dir, **{"loss.objective": "counting_l2", "num_train_steps": 3}), run)
        resumed = train_and_evaluate(smoke_config(cache_dir, **{"loss.objective": "counting_l2"}), run)
        assert resumed["step"] == 4 and int(resumed["state"].objective_state["updates"]) == 4  # 3 restored + 1
        rows = read_jsonl(run / "metrics.jsonl")
        assert [r["updates"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
        assert all(r["loss"] == r["mse_norm"] for r in rows if r["split"] == "val")
        with pytest.raises(
            ValueError, match=r"cannot resume .*loss.objective: checkpoint 'counting_l2' vs now 'supervised'"
        ):
            train_and_evaluate(smoke_config(cache_dir), run)
        with pytest.raises(
            ValueError,
            match=r"unknown loss.objective 'nope'; choose one of \['counting_l2', 'supervised', 'velocitygan'\]",
        ):
            train_and_evaluate(smoke_config(cache_dir, **{"loss.objective": "nope"}), tmp_path / "other")
    with pytest.raises(ValueError, match="objective 'supervised' is built in"):
        objectives.register("supervised", CountingL2)
    assert "counting_l2" not in objectives.OBJECTIVES


@pytest.mark.parametrize("objective", ["supervised", "velocitygan"])  # an empty and a full objective state
def test_a_checkpoint_from_before_the_objective_state_rename_restores(cache_dir, tmp_path, objective):
    """Checkpoints written before `TrainState.extra` became `objective_state` keep resuming."""
    steps = make_steps(smoke_config(cache_dir, **{"loss.objective": objective}), SPEC, parallel.make_mesh())
    state = steps.init()
    old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    old["extra"] = old.pop("objective_state")
    ckpt = Checkpointer(tmp_path, async_save=False)
    ckpt.save(5, old, {"next_step": 5}, {}, force=True)
    restored, next_step = restore_or_init(ckpt, steps, init=False)
    ckpt.close()
    assert next_step == 5
    assert_trees_equal(jax.device_get(restored), jax.device_get(state))


@dataclasses.dataclass(frozen=True)
class PoisonedStatistics(objectives.Supervised):
    """The supervised loss, with the BatchNorm running statistics set to `value` at update `at`: the
    training loss stays finite (training mode uses batch statistics), as with a far too high lr."""

    at: int = 3
    value: float = float("nan")

    def init_state(self, rng):
        return {"updates": jnp.zeros((), jnp.int32)}

    def update_state(self, objective_state, params, batch_stats, batch, rng):
        n = objective_state["updates"] + 1
        batch_stats = jax.tree.map(lambda x: jnp.where(n == self.at, self.value, x), batch_stats)
        return {"updates": n}, batch_stats, {}


@pytest.mark.parametrize(
    "value, at, message, saved",
    [
        (
            float("nan"),
            3,
            r"the model state \(BatchNorm statistics.*\) became non-finite at step 3 \(steps 3..3\) while the "
            r"training loss is finite; last good checkpoint: step 2 \(nothing non-finite was saved\)",
            [2],
        ),
        (-1.0, 2, r"validation metrics \(.*mae_norm.*\) became non-finite at step 2; no checkpoint was saved", []),
    ],
)
def test_non_finite_state_or_validation_stops_the_run_and_is_never_saved(
    cache_dir, tmp_path, monkeypatch, value, at, message, saved
):
    poisoned = lambda config, model, spec: PoisonedStatistics(model, at=at, value=value)  # noqa: E731
    with registered_objective("poisoned", poisoned), pytest.raises(FloatingPointError, match=message):
        train_and_evaluate(smoke_config(cache_dir, **{"loss.objective": "poisoned"}), tmp_path / "run")
    ckpt = Checkpointer(tmp_path / "run")
    assert ckpt.all_steps() == saved and (ckpt.best_step() == 2) == bool(saved)
    ckpt.close()


def test_the_whole_state_check_sees_a_non_finite_optimizer_state(cache_dir):
    steps = make_steps(smoke_config(cache_dir), SPEC, parallel.make_mesh())
    state = steps.init()
    assert bool(steps.finite(state))
    mu = state.opt_state[0].mu
    bad = state.replace(
        opt_state=(state.opt_state[0]._replace(mu=jax.tree.map(lambda x: x * jnp.nan, mu)), *state.opt_state[1:])
    )
    assert not bool(steps.finite(bad))
    with pytest.raises(
        FloatingPointError,
        match=r"\(parameters or optimizer state\) became non-finite by step 7; "
        r"last good checkpoint: step 6",
    ):
        check_state(False, 7, 6)


def test_one_run_per_workdir_and_stale_locks_are_taken_over(cache_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    lock = run / WorkdirLock.NAME
    here = socket.gethostname()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock.write_text(json.dumps({"host": here, "pid": alive.pid, "started": "today", "command": "train"}))
        busy = rf"{run} is in use by another training run \(pid {alive.pid} on {here}, started today\): wait for it"
        with pytest.raises(RuntimeError, match=busy):
            train_and_evaluate(smoke_config(cache_dir), run)
        assert json.loads(lock.read_text())["pid"] == alive.pid and not (run / "checkpoints").exists()
    finally:
        alive.kill()
        alive.wait()
    with WorkdirLock(run):  # that process is gone now: its lock is stale
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "taking over the lock of a run that is gone (pid" in capsys.readouterr().err and not lock.exists()
    lock.write_text(json.dumps({"host": "other-node", "pid": 1, "started": "today", "command": "train"}))
    with pytest.raises(RuntimeError, match="rerun with --take-over-lock"), WorkdirLock(run):
        pass
    with WorkdirLock(run, take_over=True):
        assert json.loads(lock.read_text())["host"] == here


@pytest.mark.floors
def test_checkpoint_restores_on_a_different_device_count(cache_dir, tmp_path):
    summary = train_and_evaluate(smoke_config(cache_dir), tmp_path / "run")
    steps = make_steps(smoke_config(cache_dir), SPEC, parallel.make_mesh(jax.devices()[:1]))
    ckpt = Checkpointer(tmp_path / "run")
    state, next_step = restore_or_init(ckpt, steps, init=False)
    saved_config = ckpt.read_config()
    ckpt.close()
    assert next_step == 4 and saved_config["model"]["dims"] == "tiny"
    assert state.params["decoder"]["deconv6"]["Conv_0"]["kernel"].sharding.mesh.devices.size == 1
    assert_trees_equal(jax.device_get(state.params), params_of(summary))


def test_resume_with_incompatible_config_is_a_clear_error(cache_dir, tmp_path):
    train_and_evaluate(smoke_config(cache_dir, num_train_steps=1), tmp_path / "run")
    with pytest.raises(ValueError, match=r"cannot resume .*model.*new --workdir"):
        train_and_evaluate(smoke_config(cache_dir, **{"model.dims": "small"}), tmp_path / "run")


def test_batch_not_divisible_by_device_count(cache_dir, tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=6 is not divisible by the 8 devices; use a multiple of 8"):
        train_and_evaluate(smoke_config(cache_dir, batch_size=6), tmp_path)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        train_and_evaluate(smoke_config(cache_dir, batch_size=1), tmp_path)


def test_missing_data_directory(cache_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.root .*nope is not a directory"):
        train_and_evaluate(
            smoke_config(cache_dir, **{"data.source": "openfwi", "data.root": str(tmp_path / "nope")}),
            tmp_path,
        )
    with pytest.raises(ValueError, match=r"data.root is empty: pass --config.data.root="):
        train_and_evaluate(smoke_config(cache_dir, **{"data.source": "openfwi"}), tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"split file .*train.txt does not exist"):
        train_and_evaluate(
            smoke_config(cache_dir, **{"data.source": "openfwi", "data.root": str(tmp_path / "empty")}),
            tmp_path,
        )


def test_nan_loss_stops_training_naming_the_step(cache_dir, tmp_path, monkeypatch):
    from fwi_jax import metrics

    real = metrics.loss_fn
    monkeypatch.setattr(metrics, "loss_fn", lambda *a: (jnp.nan * real(*a)[0], real(*a)[1]))
    with pytest.raises(FloatingPointError, match=r"the training loss \(nan\) became non-finite at step 1 "):
        train_and_evaluate(smoke_config(cache_dir), tmp_path)


def test_a_data_file_truncated_mid_run_is_named_and_the_rerun_resumes(cache_dir, tmp_path, monkeypatch, capsys):
    """Truncated while a host-placement run reads it (after step 2's checkpoint): one error naming
    the file and the intact checkpoint; with the file restored the same run resumes there and finishes."""
    generated = Path(open_sources(smoke_config(cache_dir))[0].files[0][0]).parent.parent
    shutil.copytree(generated, tmp_path / "data")
    seis = tmp_path / "data" / Path(open_sources(smoke_config(cache_dir))[0].files[0][0]).relative_to(generated)
    good = seis.read_bytes()
    config = smoke_config(  # 16 steps: up to ~6 batches are read ahead, so later ones meet the truncated file
        cache_dir,
        num_train_steps=16,
        checkpoint_every_steps=2,
        eval_every_steps=8,
        **{"data.source": "openfwi", "data.root": str(tmp_path / "data")},
    )
    save = loop.Saver.save

    def save_then_truncate(self, step, state, force=False):
        save(self, step, state, force)
        if step == 2:
            os.truncate(seis, 4096)

    monkeypatch.setattr(loop.Saver, "save", save_then_truncate)
    expected = (
        rf"{seis} changed while the run read it \(truncated to 4096 bytes; it had {len(good)} bytes when opened\)\. "
        r"The checkpoints are intact \(last: step (\d+)\); restore the file \(or regenerate the dataset\), then rerun"
    )
    with pytest.raises(OSError, match=expected) as e:  # batches read ahead before the cut still train and save
        train_and_evaluate(config, tmp_path / "run")
    intact = int(re.search(expected, str(e.value)).group(1))
    assert 2 <= intact < 16
    monkeypatch.undo()
    seis.write_bytes(good)
    capsys.readouterr()
    assert train_and_evaluate(config, tmp_path / "run")["step"] == 16
    assert f"at step {intact}\n" in capsys.readouterr().out  # resumed from the checkpoint the error named


def test_nan_in_the_training_data_is_found_on_the_devices_and_named(cache_dir, tmp_path):
    """The host reads raw bytes only; the step flags NaN / inf and the run names the sample."""
    config = smoke_config(cache_dir, num_train_steps=3, checkpoint_every_steps=100)
    generated = Path(open_sources(config)[0].files[0][0]).parent.parent
    shutil.copytree(generated, tmp_path / "data")
    seis_file = open_sources(config)[0].files[0][0].relative_to(generated)
    seis = np.load(tmp_path / "data" / seis_file)
    seis[3, 2, 100, 7] = np.nan
    np.save(tmp_path / "data" / seis_file, seis)
    nan_data = {"data.source": "openfwi", "data.root": str(tmp_path / "data"), "log_every_steps": 3}
    with pytest.raises(ValueError, match=rf"sample 3 of {seis_file.name} / .* holds NaN or inf; fix or drop that file"):
        train_and_evaluate(smoke_config(cache_dir, num_train_steps=3, **nan_data), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def cli(args, cache_dir, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "fwi_jax.train",
        "--config",
        str(REPO / "configs/quickstart.py:smoke"),
        f"--config.data.cache_dir={cache_dir}",
        *args,
    ]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_config_typo_is_an_error(cache_dir, tmp_path):
    proc = cli(["--workdir", str(tmp_path), "--config.optim.lrr=1e-3"], cache_dir)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "--config.optim.lrr" in err and 'Did you mean "lr"' in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "body, arg, expected",
    [
        (None, "configs/quickstart.py:nosuch", "failed to load: ValueError: unknown quickstart variant 'nosuch'; use"),
        ("import nosuchmodule\n", "{f}", "failed to load: ModuleNotFoundError: No module named 'nosuchmodule'"),
        ("def get_config(arg):\n    raise RuntimeError('boom')\n", "{f}:x", "failed to load: RuntimeError: boom"),
        (None, "configs/nosuch.py", "the config file configs/nosuch.py does not exist (configs/ holds "),
    ],
)
def test_a_config_that_fails_to_load_is_one_line_naming_it(tmp_path, body, arg, expected):
    """An unknown variant, a config file importing what is missing, a get_config that raises, a file that
    is not there: one line naming the argument and the cause (the config library wraps them in tracebacks)."""
    path = tmp_path / "cfg.py"
    if body:
        path.write_text(body)
    arg = arg.format(f=path)
    env = dict(os.environ, PYTHONPATH=str(REPO), FWI_JAX_HUGEPAGES="0")
    cmd = [sys.executable, "-m", "fwi_jax.train", "--config", arg, "--workdir", str(tmp_path / "w")]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
    assert arg.split(":")[0] in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_sigterm_mid_run_leaves_a_restorable_checkpoint(cache_dir, tmp_path):
    train_and_evaluate(smoke_config(cache_dir, num_train_steps=1), tmp_path / "warm")  # data cached
    run = tmp_path / "run"
    proc = cli(
        [
            "--workdir",
            str(run),
            "--config.num_train_steps=10000",
            "--config.checkpoint_every_steps=100000",
            "--config.progress=False",
        ],
        cache_dir,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.5)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "SIGTERM at step" in out and "re-run the same command to resume" in out
    ckpt = Checkpointer(run)
    step = ckpt.latest_step()
    assert step is not None and step >= 1
    ckpt.close()
    resumed = train_and_evaluate(smoke_config(cache_dir, num_train_steps=step + 1), run)
    assert resumed["step"] == step + 1


def test_a_full_disk_stops_with_a_clear_error_and_the_rerun_resumes(cache_dir, tmp_path):
    # Synchronous saves: which of them fit is then fixed (asynchronous ones land when the load lets them).
    config = smoke_config(cache_dir, num_epochs=4, num_plot_samples=0, async_checkpoints=False, tensorboard=False)
    fs = tmp_path / "fs"
    fs.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(fs)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        # Measured on the same tmpfs (its page-rounded usage, not file sizes): two steps = one checkpoint,
        # its best export and the run's small files.
        two = smoke_config(cache_dir, num_train_steps=2, num_plot_samples=0, async_checkpoints=False, tensorboard=False)
        sized = train_and_evaluate(two, fs / "sized")
        used = shutil.disk_usage(fs).used
        need = sum(x.nbytes for x in jax.tree.leaves(sized["state"]))  # what the free-space check asks for
        shutil.rmtree(fs / "sized")
        # Room for step 2's checkpoint and best export with 1.2x `need` + half a checkpoint to spare after
        # the first, so step 2 always fits and the next save always finds too little.
        room = used + 1.2 * need - 0.25 * used
        subprocess.run(["mount", "-o", f"remount,size={int(room) // 4096 * 4}k", str(fs)], check=True)
        with pytest.raises(CheckpointWriteError) as e:
            train_and_evaluate(config, fs / "run")
        message = str(e.value)
        assert re.search(r"could not write the checkpoint of step \d+ .*(MiB free|No space left on device)", message)
        # Usually step 2's saves fit and a later one fails; a write's transient files can make even step 2's
        # fail (seen once in CI): then nothing is intact and the rerun below starts over, which is also right.
        intact = r"already there are intact \(steps (none|2(, \d+)*)\).*rerun the same command"
        assert re.search(intact, message), message
        subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)  # space freed
        resumed = train_and_evaluate(config, fs / "run")
        assert resumed["step"] == 8 and int(resumed["state"].step) == 8
        ckpt = Checkpointer(fs / "run")
        assert ckpt.latest_step() == 8 and ckpt.best_step() is not None
        ckpt.close()
    finally:
        subprocess.run(["umount", "-l", str(fs)], capture_output=True)  # lazily: Orbax threads may hold files


def test_an_unwritable_metrics_file_is_a_clear_error(tmp_path):
    writer = MetricWriter(tmp_path, tensorboard=False)

    class Full:
        name = str(tmp_path / "metrics.jsonl")

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer._jsonl = Full()
    with pytest.raises(OSError, match=r"could not write the metrics of step 7 to .*metrics.jsonl \(No space left"):
        writer.write(7, "train", {"loss": 1.0})


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["host", "device"])
def test_sigkill_at_random_moments_then_rerun_equals_an_uninterrupted_run(cache_dir, tmp_path, placement):
    """Killed (SIGKILL: no handler runs) twice at random moments, often inside an asynchronous checkpoint
    save, the run resumed by rerunning the command ends bitwise equal to an uninterrupted one."""
    steps = ["--config.num_train_steps=24", "--config.checkpoint_every_steps=2", "--config.progress=False"]
    steps.append(f"--config.data.placement={placement}")
    config = smoke_config(cache_dir, num_train_steps=24, checkpoint_every_steps=2, **{"data.placement": placement})
    full = train_and_evaluate(config, tmp_path / "full")
    run, rng = tmp_path / "run", np.random.default_rng(0)
    for _ in range(2):  # each kill and restart costs a process start and a compile (~25 s in CI)
        before = len(read_jsonl(run / "metrics.jsonl")) if (run / "metrics.jsonl").exists() else 0
        proc = cli(["--workdir", str(run), *steps], cache_dir)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").exists() and len(read_jsonl(run / "metrics.jsonl")) > before:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.kill()
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after it finished
    proc = cli(["--workdir", str(run), *steps], cache_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "done at step 24" in out
    steps_run = Checkpointer(run)
    resumed_state, _ = restore_or_init(steps_run, make_steps(smoke_config(cache_dir), SPEC, parallel.make_mesh()))
    steps_run.close()
    assert_trees_equal(jax.device_get(resumed_state.params), params_of(full))
    assert_trees_equal(jax.device_get(resumed_state.opt_state), jax.device_get(full["state"].opt_state))
