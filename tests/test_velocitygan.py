"""VelocityGAN: the critic's layer table and PyTorch parity, the gradient penalty, training on 1 and
8 devices, exact resume, evaluation and the weight port of a VelocityGAN workdir."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_equal, fixed_batch, params_of, smoke_config

from fwi_jax import evaluate, parallel, torch_port, torchenv
from fwi_jax.config import velocitygan_config
from fwi_jax.data.datasets import get_dataset
from fwi_jax.models import build_model
from fwi_jax.models.__main__ import main as models_main
from fwi_jax.models.velocitygan import Critic
from fwi_jax.training import finetune
from fwi_jax.training.loop import train_and_evaluate
from fwi_jax.training.objectives import gradient_penalty
from fwi_jax.training.steps import make_steps

SPEC = get_dataset("flatvel-a")


def smoke(cache_dir, **overrides):
    c = velocitygan_config("smoke")
    c.data.cache_dir, c.progress, c.num_plot_samples = str(cache_dir), False, 0
    for key, value in overrides.items():
        c[key] = value
    return c


def test_critic_layer_table_and_the_models_cli(capsys):
    x = jax.ShapeDtypeStruct((2, 70, 70, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: Critic().init(jax.random.key(0), x), x)
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"])) == 1_180_003
    assert jax.eval_shape(lambda v, x: Critic().apply(v, x), variables, x).shape == (2, 1)
    models_main(["--model", "velocitygan"])
    out = capsys.readouterr().out
    assert "generator (InversionNet): 24,409,123 parameters" in out and "critic: 1,180,003 parameters" in out
    with pytest.raises(ValueError, match=r"velocity maps \(B, H, W, 1\)"):
        Critic().init(jax.random.key(0), jnp.zeros((2, 70, 70)))


def test_gradient_penalty_equals_a_direct_computation_on_toy_critics():
    rng = jax.random.key(3)
    real = jax.random.normal(jax.random.key(1), (4, 6, 5, 1))
    fake = jax.random.normal(jax.random.key(2), (4, 6, 5, 1))
    w = jax.random.normal(jax.random.key(4), (6, 5, 1))
    linear = lambda x: (jnp.sum(x * w, axis=(1, 2, 3))[:, None], None)  # grad = w for every sample
    gp, _ = gradient_penalty(linear, real, fake, rng)
    np.testing.assert_allclose(gp, (jnp.linalg.norm(w) - 1) ** 2, rtol=1e-5)
    # Quadratic critic: grad = 2 x_hat at the interpolates, drawn with the same alpha.
    alpha = jax.random.uniform(rng, (4, 1, 1, 1))
    x_hat = alpha * real + (1 - alpha) * fake
    direct = jnp.mean((jnp.sqrt(jnp.sum((2 * x_hat) ** 2, axis=(1, 2, 3))) - 1) ** 2)
    gp, _ = gradient_penalty(lambda x: (jnp.sum(x**2, axis=(1, 2, 3)), None), real, fake, rng)
    np.testing.assert_allclose(gp, direct, rtol=1e-5)


@pytest.mark.torch
@pytest.mark.skipif(torchenv.torch_python() is None, reason="needs torch in-process or FWI_JAX_TORCH_PYTHON")
def test_critic_matches_a_pytorch_critic_on_ported_weights(tmp_path):
    proc = torchenv.run_script("torch_inversionnet.py", "critic", tmp_path, "--batch", 4)
    assert proc.returncode == 0, proc.stderr
    critic = Critic()
    with np.load(tmp_path / "critic_io.npz") as z:
        io = {k: z[k] for k in z.files}
    x = jnp.asarray(np.transpose(io["x"], (0, 2, 3, 1)))
    shapes = jax.eval_shape(lambda x: critic.init(jax.random.key(0), x), x)
    variables = torch_port.state_dict_to_variables(
        torch_port.load_pth(tmp_path / "critic.pth"), shapes, torch_port.critic_key_map()
    )
    np.testing.assert_allclose(critic.apply(variables, x, train=False), io["eval_out"], rtol=1e-4, atol=1e-5)
    train_out, _ = critic.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(train_out, io["train_out"], rtol=1e-4, atol=1e-4)

    # The reference's generator + critic into a VelocityGAN workdir, and the critic back out unchanged.
    generator = build_model("inversionnet", "tiny", (70, 70))
    g_vars = jax.eval_shape(
        lambda x: generator.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, 1000, 70, 5), jnp.float32)
    )
    g_sd = torch_port.variables_to_state_dict(jax.tree.map(lambda a: np.full(a.shape, 0.5, a.dtype), g_vars))
    critic_sd = torch_port.load_pth(tmp_path / "critic.pth")
    torch_port.import_state_dict(g_sd, "flatvel-a", tmp_path / "w", dims="tiny", critic_state_dict=critic_sd)
    back = torch_port.export_state_dict(tmp_path / "w", critic=True)
    assert sorted(back) == sorted(critic_sd)
    for key, value in critic_sd.items():
        if not key.endswith("num_batches_tracked"):  # written as the checkpoint's step
            np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_steps_on_1_and_8_devices_agree_and_training_lowers_the_generator_l1(cache_dir):
    config = smoke(cache_dir)
    config.optim.lr = 3e-3
    batch = fixed_batch(8)
    first = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = parallel.make_mesh(devices)
        steps = make_steps(config, SPEC, mesh, steps_per_epoch=10)
        state, m = steps.train(steps.init(), parallel.global_batch(batch, mesh))
        first.append(jax.device_get((state.objective_state["params"], m)))
    (critic1, m1), (critic8, m8) = first
    for key in ("l1", "l2", "critic_loss", "gp", "wasserstein"):
        np.testing.assert_allclose(m8[key], m1[key], rtol=1e-3, atol=1e-5, err_msg=key)
    # One AdamW step moves a weight by ~lr * sign(grad): same signs, same weights (near-zero gradients
    # may round to either sign).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2 * config.gan.lr + 1e-6), critic1, critic8)

    losses = [float(m8["l1"])]
    for _ in range(29):
        state, m = steps.train(state, parallel.global_batch(batch, mesh))
        losses.append(float(m["l1"]))
    assert int(state.step) == 30
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses  # the generator learns the batch


def test_a_velocitygan_run_resumes_exactly_evaluates_and_exports(cache_dir, tmp_path, trained_run):
    full = train_and_evaluate(smoke(cache_dir), tmp_path / "full")
    train_and_evaluate(smoke(cache_dir, num_train_steps=3), tmp_path / "resumed")
    resumed = train_and_evaluate(smoke(cache_dir), tmp_path / "resumed")
    assert full["step"] == resumed["step"] == 4 and full["train"]["network_updated"] == 1.0
    assert_trees_equal(params_of(full), params_of(resumed))
    assert_trees_equal(jax.device_get(full["state"].objective_state), jax.device_get(resumed["state"].objective_state))
    report = evaluate.evaluate(tmp_path / "full", "latest", progress=False)
    assert report["model"] == "velocitygan" and report["published"][0]["source"].endswith("(velocitygan, l1 loss)")
    assert report["metrics"]["ssim"] == pytest.approx(full["val"]["ssim"], rel=1e-4)
    critic = torch_port.export_state_dict(tmp_path / "full", "latest", critic=True)
    assert len(critic) == 9 * 7 and critic["convblock5.layers.0.weight"].shape == (1, 16, 5, 5)
    with pytest.raises(ValueError, match="not trained with loss.objective=velocitygan: it holds no critic"):
        torch_port.export_state_dict(trained_run[0], "latest", critic=True)  # an InversionNet run

    # Fine-tuning from a VelocityGAN workdir: its generator, and its critic when the new run is VelocityGAN too.
    gan = full["state"]
    for config, critic in ((smoke(cache_dir), True), (smoke_config(cache_dir), False)):
        config.init_from = f"{tmp_path / 'full'}@latest"  # the state compared below (its best may be older)
        steps = make_steps(config, SPEC, parallel.make_mesh())
        state = jax.device_get(finetune.initial_state(steps, finetune.load(config.init_from, steps)))
        assert_trees_equal(state.params, params_of(full))
        assert_trees_equal(state.batch_stats, jax.device_get(gan.batch_stats))
        assert int(state.step) == 0 and ("params" in state.objective_state) == critic
        if critic:
            assert_trees_equal(state.objective_state["params"], jax.device_get(gan.objective_state["params"]))
            fresh = steps.objective.critic_tx.init(state.objective_state["params"])
            assert_trees_equal(state.objective_state["opt_state"], jax.device_get(fresh))
    # From an InversionNet workdir: the generator, a fresh critic (the new run's own initialization).
    config = smoke(cache_dir, init_from=f"{trained_run[0]}@latest")
    steps = make_steps(config, SPEC, parallel.make_mesh())
    state = jax.device_get(finetune.initial_state(steps, finetune.load(config.init_from, steps)))
    assert_trees_equal(state.params, jax.device_get(trained_run[1]["state"].params))
    assert_trees_equal(state.objective_state, jax.device_get(steps.init().objective_state))
