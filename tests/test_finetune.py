"""Fine-tuning (--config.init_from, optim.freeze): a new run starts from a workdir's or a .pth's weights
with a fresh optimizer, frozen parts stay bit-identical, a resumed run never rereads the source."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import SPEC, assert_trees_equal, smoke_config

from fwi_jax import evaluate, inference, parallel, torchenv
from fwi_jax.config import finetune_config
from fwi_jax.torch_port.checkpoints import export_state_dict
from fwi_jax.training import finetune, freeze
from fwi_jax.training.loop import train_and_evaluate
from fwi_jax.training.steps import make_steps

REPO = Path(__file__).resolve().parents[1]


def start_from(cache_dir, source, **overrides):
    config = smoke_config(cache_dir, init_from=source, **overrides)
    steps = make_steps(config, SPEC, parallel.make_mesh())
    pretrained = finetune.load(source, steps)
    return steps, pretrained, finetune.initial_state(steps, pretrained)


def test_init_from_a_workdir_takes_its_weights_with_a_fresh_optimizer(cache_dir, trained_run):
    workdir, _ = trained_run
    for which, step in (("@2", 2), ("", None)):  # a step, and the default (best)
        steps, pretrained, state = start_from(cache_dir, f"{workdir}{which}")
        source = inference.load(workdir, str(step) if step else "best")
        assert_trees_equal(jax.device_get(state.params), jax.device_get(source.state.params))
        assert_trees_equal(jax.device_get(state.batch_stats), jax.device_get(source.state.batch_stats))
        assert int(state.step) == 0
        assert_trees_equal(jax.device_get(state.opt_state), jax.device_get(steps.tx.init(state.params)))
        assert pretrained.label == f"{workdir}@{step or 'best'} (step {source.step})"
        assert pretrained.normalization == SPEC.normalization()


def test_a_source_that_does_not_fit_is_one_error_listing_every_layer(cache_dir, trained_run):
    workdir, _ = trained_run
    with pytest.raises(ValueError, match=r"does not fit this run's model \((\d+) layer\(s\)") as e:
        start_from(cache_dir, str(workdir), **{"model.dims": "small"})
    lines = str(e.value).splitlines()[1:]
    assert len(lines) == int(re.search(r"\((\d+) layer", str(e.value)).group(1)) > 20, str(e.value)
    kernel = [line for line in lines if line.startswith("  params/encoder/convblock1/") and "kernel" in line]
    assert kernel and re.fullmatch(r"  \S+kernel: source \(7, 1, 5, \d+\), expected \(7, 1, 5, \d+\)", kernel[0]), lines
    assert any(line.startswith("  batch_stats/decoder/") for line in lines)
    with pytest.raises(FileNotFoundError, match=r"init_from=.*nowhere: .*nowhere is neither a workdir nor a .pth"):
        start_from(cache_dir, str(workdir.parent / "nowhere"))
    with pytest.raises(ValueError, match="must be 'best', 'latest' or a step number, got 'soon'"):
        start_from(cache_dir, f"{workdir}@soon")


def test_freeze_names_real_modules_and_counts_them(cache_dir):
    steps = make_steps(smoke_config(cache_dir), SPEC, parallel.make_mesh())
    params = steps.abstract_state().params
    trainable, frozen = freeze.count(params, freeze.check(params, "encoder"))
    assert trainable > 0 and frozen > 0 and (trainable, frozen) == freeze.count(params, ("decoder",))[::-1]
    both = freeze.count(params, freeze.check(params, "encoder/convblock1, decoder"))[1]
    assert both == trainable + freeze.count(params, ("encoder/convblock1",))[1]  # trainable above: the decoder
    with pytest.raises(ValueError, match=r"optim.freeze='encoder/nosuch': encoder/nosuch names no part of the model"):
        make_steps(smoke_config(cache_dir, **{"optim.freeze": "encoder/nosuch"}), SPEC, parallel.make_mesh())


def finetune_cli(workdir, source, cache_dir):
    """`python -m fwi_jax.train --config configs/finetune.py:smoke` from ``source``, encoder frozen, 12 steps."""
    cmd = [sys.executable, "-m", "fwi_jax.train", "--config", str(REPO / "configs/finetune.py:smoke")]
    cmd += [f"--workdir={workdir}", f"--config.init_from={source}", f"--config.data.cache_dir={cache_dir}"]
    cmd += [f"--config.{k}={v}" for k, v in FROZEN.items()]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


FROZEN = {"optim.freeze": "encoder", "num_train_steps": 12, "progress": False, "num_plot_samples": 0}


@pytest.mark.slow
def test_a_fine_tuning_run_killed_and_rerun_without_its_source_ends_like_an_uninterrupted_one(
    cache_dir, trained_run, tmp_path
):
    source = tmp_path / "source"
    shutil.copytree(trained_run[0], source)
    before = inference.load(source, "best").state
    config = finetune_config("smoke")
    config.data.cache_dir, config.init_from = str(cache_dir), str(source)
    config.update_from_flattened_dict(FROZEN)
    full = train_and_evaluate(config, tmp_path / "full")  # the reference, uninterrupted
    assert full["step"] == 12

    run = tmp_path / "finetuned"
    proc = finetune_cli(run, source, cache_dir)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "2").is_dir():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not after it finished
    assert f"initialized from {source}@best" in out and "parameters (optim.freeze=encoder)" in out
    shutil.rmtree(source)  # a resumed fine-tuning run reads its own checkpoints only
    proc = finetune_cli(run, source, cache_dir)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "resumed from" in out and "done at step 12" in out

    tuned = inference.load(run, "latest")  # the workdir serves predict / evaluate / export like any other
    assert tuned.step == 12 and tuned.config.init_from == str(source)
    for part in ("params", "batch_stats"):
        new, old = jax.device_get(getattr(tuned.state, part)), jax.device_get(getattr(before, part))
        assert_trees_equal(new, jax.device_get(getattr(full["state"], part)))  # bitwise the uninterrupted run
        assert_trees_equal(new["encoder"], old["encoder"])  # no update, no decay, statistics fixed
        moved = [
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(new["decoder"]), jax.tree.leaves(old["decoder"]), strict=True)
        ]
        assert all(moved), f"{part}: {moved.count(False)} decoder leaves did not move"
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert record["split"] == "init_from" and record["frozen_params"] > 0 and record["trainable_params"] > 0
    assert tuned.predict_normalized(np.zeros((8, 1000, 70, 5), np.float32)).shape == (8, 70, 70)
    assert len(export_state_dict(run, "latest")) > 0
    report = evaluate.evaluate(run, "latest", progress=False)
    assert report["dataset"] == "curvevel-a"
    assert report["metrics"]["ssim"] == pytest.approx(full["val"]["ssim"], rel=1e-4)


@pytest.mark.torch
@pytest.mark.skipif(torchenv.torch_python() is None, reason="needs torch in-process or FWI_JAX_TORCH_PYTHON")
def test_init_from_a_pth_written_by_the_port(cache_dir, trained_run, tmp_path):
    from fwi_jax.torch_port.pth import save_pth

    workdir, _ = trained_run
    save_pth(export_state_dict(workdir, "best"), tmp_path / "model.pth")
    _, pretrained, state = start_from(cache_dir, str(tmp_path / "model.pth"))
    assert_trees_equal(jax.device_get(state.params), jax.device_get(inference.load(workdir, "best").state.params))
    assert pretrained.normalization is None and int(state.step) == 0
    with pytest.raises(ValueError, match=r"init_from=.*model.pth: \d+ problem\(s\) converting the state_dict"):
        start_from(cache_dir, str(tmp_path / "model.pth"), **{"model.dims": "small"})
