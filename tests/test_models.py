"""InversionNet: the reference layer table, block numerics, derived geometry, einsum conv forms."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fwi_jax.models import PRESETS, InversionNet, build_model, decoder_layout, encoder_output_size
from fwi_jax.models.__main__ import main as models_main
from fwi_jax.models.cpu_convs import EinsumConv, EinsumConvTranspose
from fwi_jax.models.layers import BATCHNORM_NAME, CONV_NAME, DECONV_NAME, ConvBlock, DeconvBlock
from fwi_jax.models.summary import layer_table

FULL = jax.ShapeDtypeStruct((2, 1000, 70, 5), jnp.float32)


def param_count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.floors
def test_full_size_parameter_count_and_shapes():
    model = InversionNet()
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), FULL)
    assert param_count(variables["params"]) == 24_409_123
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, FULL)
    assert out.shape == (2, 70, 70, 1) and out.dtype == jnp.float32


def test_layer_table_matches_reference():
    rows, total = layer_table("inversionnet", "openfwi", (1000, 70, 5), (70, 70))
    shapes = {name.split("/")[-1]: shape[1:] for name, shape, _ in rows}
    expected = {  # OpenFWI's table, (H, W, C)
        "convblock1": (500, 70, 32),
        "convblock2_1": (250, 70, 64),
        "convblock3_1": (125, 70, 64),
        "convblock4_1": (63, 70, 128),
        "convblock5_1": (32, 35, 128),
        "convblock6_1": (16, 18, 256),
        "convblock7_2": (8, 9, 256),
        "convblock8": (1, 1, 512),
        "deconv1_1": (5, 5, 512),
        "deconv2_1": (10, 10, 256),
        "deconv5_2": (80, 80, 32),
        "deconv6": (70, 70, 1),
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    assert [r[0].split("/")[-1] for r in rows][:2] == ["convblock1", "convblock2_1"]
    assert dict((r[0].split("/")[-1], r[2]) for r in rows)["convblock8"] == 256 * 8 * 9 * 512 + 512 + 2 * 512
    assert total == 24_409_123


def test_models_cli_prints_table(capsys):
    models_main(["--dims", "openfwi"])
    out = capsys.readouterr().out
    assert "24,409,123" in out and "encoder/convblock8" in out and "(1, 1, 1, 512)" in out
    with pytest.raises(SystemExit):
        models_main(["--dims", "1,2,3"])
    assert "5 positive ints" in capsys.readouterr().err


def test_other_geometry_needs_no_code_change():
    assert encoder_output_size(1000, 70) == (8, 9)
    assert decoder_layout((70, 70)) == ((5, 5), ((5, 5), (5, 5)))
    model = build_model("inversionnet", "tiny", (50, 100))
    x = jax.ShapeDtypeStruct((2, 600, 128, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), variables, x).shape == (2, 50, 100, 1)


@pytest.mark.floors
def test_tiny_preset_runs_at_full_openfwi_shapes():
    model = build_model("inversionnet", "tiny", (70, 70))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 1000, 70, 5)), jnp.float32)
    variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
    y, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert y.shape == (2, 70, 70, 1) and y.dtype == jnp.float32
    assert float(jnp.abs(y).max()) <= 1.0  # tanh head
    assert PRESETS["openfwi"] == (32, 64, 128, 256, 512)


def test_block_numerics_batchnorm_train_vs_eval_and_leaky_slope():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6, 5, 3)), jnp.float32)
    block = ConvBlock(2, conv_impl="xla")
    v = block.init(jax.random.key(0), x, train=False)
    conv = nn.Conv(2, (3, 3), padding=((1, 1), (1, 1))).apply({"params": v["params"]["Conv_0"]}, x)
    # train: normalize with the batch's biased statistics, eps 1e-5, then LeakyReLU(0.2)
    mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
    z = (conv - mean) / jnp.sqrt(var + 1e-5)
    expected = jnp.where(z > 0, z, 0.2 * z)
    y, updates = block.apply(v, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y, expected, atol=1e-5)
    # running stats: PyTorch momentum 0.1 == 0.9 * old + 0.1 * batch
    np.testing.assert_allclose(updates["batch_stats"]["BatchNorm_0"]["mean"], 0.1 * mean, atol=1e-6)
    # eval: running stats (init mean 0, var 1)
    z_eval = conv / jnp.sqrt(1.0 + 1e-5)
    np.testing.assert_allclose(block.apply(v, x, train=False), jnp.where(z_eval > 0, z_eval, 0.2 * z_eval), atol=1e-5)


def test_decoder_crop_is_centered():
    _, crop = decoder_layout((70, 70))
    assert crop == ((5, 5), (5, 5))
    _, crop = decoder_layout((66, 75))  # 80 - 66 = 14 -> 7 / 7; 80 - 75 = 5 -> 2 / 3
    assert crop == ((7, 7), (2, 3))


@pytest.mark.parametrize(
    "kernel, strides, padding, shape",
    [
        ((7, 1), (2, 1), ((3, 3), (0, 0)), (2, 21, 6, 5)),
        ((3, 1), (1, 1), ((1, 1), (0, 0)), (2, 9, 4, 3)),  # shifted products
        ((5, 1), (1, 1), ((3, 0), (0, 0)), (2, 9, 4, 3)),
        ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 9, 7, 4)),
        ((3, 3), (1, 1), ((1, 1), (1, 1)), (2, 9, 7, 4)),
        ((3, 2), (1, 1), ((2, 0), (1, 0)), (2, 6, 5, 4)),
        ((8, 9), (1, 1), ((0, 0), (0, 0)), (2, 8, 9, 3)),
    ],
)
def test_einsum_conv_equals_xla_conv_values_and_gradients(kernel, strides, padding, shape):
    x = jnp.asarray(np.random.default_rng(2).normal(size=shape), jnp.float32)
    ref = nn.Conv(6, kernel, strides, padding=padding)
    v = ref.init(jax.random.key(1), x)
    g_ref = jax.grad(lambda v, x: jnp.sum(ref.apply(v, x) ** 2), argnums=(0, 1))(v, x)
    # The forms the tuner chooses between: shifted products or im2col at stride 1, XLA's forward.
    for stride1, forward in (("shifted", "matmul"), ("im2col", "matmul"), ("shifted", "xla")):
        mine = EinsumConv(6, kernel, padding, strides=strides, stride1=stride1, forward=forward)
        np.testing.assert_allclose(mine.apply(v, x), ref.apply(v, x), atol=2e-5)
        g_mine = jax.grad(lambda v, x, mine=mine: jnp.sum(mine.apply(v, x) ** 2), argnums=(0, 1))(v, x)
        for a, b in zip(jax.tree.leaves(g_mine), jax.tree.leaves(g_ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kernel, pad, shape, products",
    [
        (4, 1, (2, 5, 5, 3), 4),  # one im2col per phase
        (5, 0, (2, 1, 1, 3), 1),  # one input pixel: dense
        (4, 1, (2, 1, 1, 3), 1),
        (4, 1, (2, 3, 4, 3), 4),
        (4, 1, (2, 10, 13, 3), 1),  # phases share one im2col
        (4, 0, (2, 11, 10, 3), 1),
        (3, 1, (2, 10, 10, 3), 4),  # phases read 1 and 2 rows: not shareable
    ],
)
def test_subpixel_transposed_conv_equals_xla(kernel, pad, shape, products):
    x = jnp.asarray(np.random.default_rng(3).normal(size=shape), jnp.float32)
    p = ((kernel - 1 - pad,) * 2,) * 2
    ref = nn.ConvTranspose(6, (kernel, kernel), (2, 2), padding=p)
    mine = EinsumConvTranspose(6, (kernel, kernel), p)
    v = ref.init(jax.random.key(1), x)
    assert str(jax.make_jaxpr(mine.apply)(v, x)).count("dot_general") == products
    np.testing.assert_allclose(mine.apply(v, x), ref.apply(v, x), atol=2e-5)
    g_ref = jax.grad(lambda v, x: jnp.sum(ref.apply(v, x) ** 2), argnums=(0, 1))(v, x)
    g_mine = jax.grad(lambda v, x: jnp.sum(mine.apply(v, x) ** 2), argnums=(0, 1))(v, x)
    for a, b in zip(jax.tree.leaves(g_mine), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.floors
def test_whole_network_same_with_either_conv_impl():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 1000, 70, 5)), jnp.float32)
    a = build_model("inversionnet", "tiny", (70, 70), conv_impl="xla")
    b = build_model("inversionnet", "tiny", (70, 70), conv_impl="einsum")
    v = jax.jit(lambda x: a.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
    assert jax.tree.structure(v) == jax.tree.structure(jax.eval_shape(lambda x: b.init(jax.random.key(0), x), x))
    ya, _ = jax.jit(lambda v, x: a.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    yb, _ = jax.jit(lambda v, x: b.apply(v, x, train=True, mutable=["batch_stats"]))(v, x)
    np.testing.assert_allclose(ya, yb, atol=5e-4)  # 25 layers of float32 reassociation


@pytest.mark.slow
def test_cpu_forms_differentiate_in_bfloat16_like_float32():
    """The matrix-product forms' custom gradients in bfloat16 compute (XLA:CPU has no bf16 x bf16 -> f32
    plain dot: a weight gradient that compiled to one failed at run time)."""
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 1000, 70, 5)), jnp.float32)
    grads = {}
    for dtype in ("float32", "bfloat16"):
        m = build_model("inversionnet", "tiny", (70, 70), compute_dtype=dtype, conv_impl="einsum")
        v = jax.jit(lambda x, m=m: m.init(jax.random.key(0), x, train=False))(x)

        def loss(p, v=v, m=m):
            y, _ = m.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])
            return jnp.mean(y.astype(jnp.float32) ** 2)

        grads[dtype] = jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.jit(jax.grad(loss))(v["params"]))])
    g32, g16 = grads["float32"], grads["bfloat16"]
    assert g16.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g16)))
    assert float(jnp.vdot(g32, g16) / (jnp.linalg.norm(g32) * jnp.linalg.norm(g16))) > 0.85


def test_block_submodule_names_are_the_checkpoint_names_in_every_conv_form():
    """Checkpoints and the weight port's key map rely on Conv_0 / ConvTranspose_0 / BatchNorm_0."""
    x = jax.ShapeDtypeStruct((2, 1000, 70, 5), jnp.float32)
    trees = {}
    for impl in ("xla", "einsum"):
        model = build_model("inversionnet", "tiny", (70, 70), conv_impl=impl)
        for train in (False, True):
            v = jax.eval_shape(lambda x, m=model, t=train: m.init(jax.random.key(0), x, train=t), x)
            trees[impl, train] = jax.tree.structure(v)
            for part in ("encoder", "decoder"):
                for block, sub in v["params"][part].items():
                    conv = DECONV_NAME if block.startswith("deconv") and block.endswith("_1") else CONV_NAME
                    assert set(sub) == {conv, BATCHNORM_NAME}, (impl, block, set(sub))
    assert len(set(trees.values())) == 1  # one tree whichever form runs
    assert (CONV_NAME, DECONV_NAME, BATCHNORM_NAME) == ("Conv_0", "ConvTranspose_0", "BatchNorm_0")


def test_deconv_block_output_sizes():
    x = jnp.zeros((2, 1, 1, 8))
    y, _ = DeconvBlock(4, (5, 5), (2, 2), (0, 0)).init_with_output(jax.random.key(0), x, train=False)
    assert y.shape == (2, 5, 5, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="unet", dims="tiny"), "unknown model"),
        (dict(name="inversionnet", dims="huge"), "unknown width preset"),
        (dict(name="inversionnet", dims="8,16,x,64,128"), "5 comma-separated ints"),
        (dict(name="inversionnet", dims="8,16,32,64"), "5 positive ints"),
        (dict(name="inversionnet", dims="tiny", compute_dtype="float16"), "compute_dtype"),
        (dict(name="inversionnet", dims="tiny", conv_impl="cudnn"), "conv_impl"),
    ],
)
def test_bad_model_config_is_a_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(output_size=(70, 70), **kwargs)


def test_dims_spelled_as_a_string_of_ints_in_a_config():
    assert build_model("inversionnet", "4,8,8,16,16", (70, 70)).dims == PRESETS["tiny"]


def test_bad_input_rank_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects \(B, time, receivers, shots\)"):
        InversionNet(dims=PRESETS["tiny"]).init(jax.random.key(0), jnp.zeros((1000, 70, 5)))
