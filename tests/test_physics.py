"""Acoustic solver: analytic solution, symmetry, boundaries, gradients, CFL, OpenFWI amplitudes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fwi_jax.data import velocity
from fwi_jax.physics import Geometry, forward, openfwi_geometry, ricker, ricker_length
from fwi_jax.physics.solver import fast_group


def rel_l2(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_ricker_matches_openfwi_convention():
    assert ricker_length(15.0, 1e-3) == 147
    w = ricker(15.0, 1e-3, nt=1000)
    assert w.shape == (1000,) and w.dtype == np.float32
    assert int(np.argmax(w)) == 73 and w[73] == pytest.approx(1.0)
    assert np.all(w[147:] == 0)
    np.testing.assert_allclose(w[:73], w[146:73:-1], atol=1e-7)  # symmetric about the peak


def analytic_trace(v: float, r: float, g: Geometry) -> np.ndarray:
    """2D Green's function convolved with the Ricker, for the scheme's source scaling.

    The scheme solves p_tt = v^2 lap(p) + v^2 dx^2 s(t) delta(x); with G = H(vt - r) /
    (2 pi v sqrt(v^2 t^2 - r^2)) and t = (r / v) cosh(u) this is dx^2 / (2 pi) int s(t - r/v cosh u) du.
    Sample j holds the field after step j, i.e. at t = (j + 1) dt.
    """
    t0 = (ricker_length(g.freq, g.dt) - 1) // 2 * g.dt
    t = (np.arange(g.nt) + 1) * g.dt
    u = np.linspace(0.0, 8.0, 20001)
    arg = (np.pi * g.freq * (t[:, None] - r / v * np.cosh(u)[None] - t0)) ** 2
    return g.dx**2 / (2 * np.pi) * np.trapezoid((1 - 2 * arg) * np.exp(-arg), u, axis=1)


@pytest.mark.parametrize(
    "vel, col, tol",
    [
        (3000.0, 11, 0.01),  # 4th-order dispersion is small at 6.7 cells per 15 Hz wavelength
        (3000.0, 51, 0.02),
        (1500.0, 11, 0.04),  # 3.3 cells per wavelength: the released data carry this error too
    ],
)
def test_homogeneous_medium_matches_analytic_green_function(vel, col, tol):
    g = openfwi_geometry(src_x=(1,), nt=400)
    data = np.asarray(forward(np.full((70, 70), vel, np.float32), g, mode="exact"))
    trace = data[0, :, col - 1]  # receiver columns start at 1
    r = (col - 1) * g.dx
    ref = analytic_trace(vel, r, g)
    window = int((r / vel + 0.073 + 0.1) / g.dt)  # direct wave only, before any boundary echo
    assert abs(int(np.argmax(trace)) - int(np.argmax(ref))) <= 1
    assert rel_l2(trace[:window], ref[:window]) < tol


@pytest.mark.floors
def test_openfwi_amplitudes_and_shape():
    """Homogeneous 1500 / 4500 m/s give the amplitude ranges quoted for the released data."""
    v = np.stack([np.full((70, 70), 1500.0, np.float32), np.full((70, 70), 4500.0, np.float32)])
    d = np.asarray(forward(v))
    assert d.shape == (2, 5, 1000, 70) and d.dtype == np.float32
    assert d[0].min() == pytest.approx(-20.7, abs=0.1) and d[0].max() == pytest.approx(39.2, abs=0.1)
    assert d[1].min() == pytest.approx(-27.2, abs=0.1) and d[1].max() == pytest.approx(53.3, abs=0.1)


def test_flatvel_a_data_span_within_10_percent_of_reference():
    """The dataset span is set by the slowest and fastest near-surface models of the family."""
    models = velocity.generate("flatvel-a", 300, seed=0)
    top = models[:, :2].mean(axis=(1, 2))
    picked = models[np.concatenate([np.argsort(top)[:2], np.argsort(top)[-2:]])]
    d = np.asarray(forward(picked))
    lo, hi = -26.95, 52.77  # OpenFWI dataset_config data_min / data_max for FlatVel-A
    assert abs(d.min() - lo) <= 0.1 * abs(lo)
    assert abs(d.max() - hi) <= 0.1 * abs(hi)


def test_mirror_symmetry():
    """With the shifted layout grid and acquisition mirror onto themselves (x -> 69 - x).

    Sources 0, 17, 52, 69 map onto each other; the middle one (34 -> 35) has no mirror twin.
    """
    g = openfwi_geometry("shifted", nt=300)
    v = velocity.generate("curvefault-b", 1, seed=3)[0]
    d = np.asarray(forward(v, g))
    dm = np.asarray(forward(v[:, ::-1].copy(), g))
    np.testing.assert_allclose(dm[[4, 3, 1, 0], :, ::-1], d[[0, 1, 3, 4]], atol=1e-4 * np.abs(d).max())
    # FlatVel data with the released layout: shot 0 == flipped shot 4 up to the 1-cell asymmetry.
    flat = np.asarray(forward(velocity.generate("flatvel-b", 1, seed=1)[0], openfwi_geometry(nt=300)))
    assert rel_l2(flat[4, :, ::-1], flat[0]) < 1e-3


@pytest.mark.slow
def test_boundary_reflections_against_a_much_larger_grid():
    """Compare with a 300-cell gentle sponge whose outer edge echoes arrive after nt."""
    g = openfwi_geometry(src_x=(1, 35), nt=500)
    big = openfwi_geometry(src_x=(1, 35), nt=500, nbc=300)
    v = np.stack(
        [
            np.full((70, 70), 4500.0, np.float32),  # worst case for the vmin-scaled sponge
            velocity.generate("curvevel-b", 1, seed=0)[0],
        ]
    )
    ref = np.asarray(forward(v, big, boundary="zero"))
    exact = np.asarray(forward(v, g, mode="exact"))
    fast = np.asarray(forward(v, g, mode="fast"))
    # Exact mode keeps the reference's sponge: ~3.5% at 4500 m/s (as the released data).
    assert rel_l2(exact[0], ref[0]) < 0.05
    assert rel_l2(exact[1], ref[1]) < 0.01
    # The 20-cell CPML of fast mode absorbs far better than the 120-cell sponge.
    assert rel_l2(fast, ref) < 0.002


def test_fast_mode_stays_close_to_exact_mode():
    """Stated tolerance: 1% relative L2 on slow-top models (measured ~0.1%)."""
    v = velocity.generate("flatvel-a", 2, seed=5)
    g = openfwi_geometry(nt=600)
    assert rel_l2(forward(v, g, mode="fast"), forward(v, g, mode="exact")) < 0.01


def test_zero_ring_option_changes_little_on_slow_models():
    v = np.full((70, 70), 1500.0, np.float32)
    g = openfwi_geometry(nt=400)
    assert rel_l2(forward(v, g, boundary="zero"), forward(v, g)) < 1e-3


def tiny_geometry(nt=120):
    return Geometry(nz=12, nx=12, nt=nt, src_x=(2, 9), src_z=1, rec_x=tuple(range(12)), rec_z=1, nbc=8, freq=25.0)


@pytest.mark.floors
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_gradient_matches_finite_differences(mode):
    g = tiny_geometry()
    rng = np.random.default_rng(0)
    v0 = np.full((12, 12), 2000.0, np.float32)
    v0[6:] = 2600.0
    v0 += rng.uniform(0, 100, v0.shape).astype(np.float32)
    v0[0, 0] = 1900.0  # the minimum, which sets exact mode's damping, stays out of the perturbation
    direction = rng.normal(size=v0.shape).astype(np.float32)
    direction[0, 0] = 0.0
    weights = jnp.asarray(rng.normal(size=(2, g.nt, 12)).astype(np.float32))

    def loss(v):
        return jnp.sum(forward(v, g, mode=mode) * weights)

    grad = jax.grad(loss)(jnp.asarray(v0))
    assert grad.shape == v0.shape and bool(jnp.all(jnp.isfinite(grad)))
    eps = 2.0
    fd = (loss(v0 + eps * direction) - loss(v0 - eps * direction)) / (2 * eps)
    ad = float(jnp.vdot(grad, direction))
    assert ad == pytest.approx(float(fd), rel=2e-2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_hand_written_adjoint_equals_jax_reverse_mode_on_openfwi_shapes(mode):
    """The default gradient (the hand-written adjoint) against JAX's own transposes, 70 x 70 x 1000 steps,
    5 shots, several models, float32: velocity and wavelet cotangents."""
    models = np.concatenate([velocity.generate("flatvel-a", 1, seed=3), velocity.generate("curvefault-b", 1, seed=4)])
    models = models[: 1 if mode == "exact" else 2]  # exact mode's autodiff side is the slow one
    rng = np.random.default_rng(5)
    residual = jnp.asarray(rng.normal(size=(len(models), 5, 1000, 70)).astype(np.float32))
    w = jnp.asarray(ricker(15.0, 1e-3, 1000))

    def grads(gradient):
        def loss(v, wavelet):
            return jnp.vdot(forward(v, mode=mode, wavelet=wavelet, gradient=gradient), residual)

        return jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(models), w)

    (dv, dw), (dv_ref, dw_ref) = grads("adjoint"), grads("autodiff")
    assert rel_l2(dv, dv_ref) < 1e-4 and rel_l2(dw, dw_ref) < 1e-4


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_adjoint_passes_the_dot_product_test(mode):
    """<J dv, r> = <dv, J^T r>: J from forward mode (gradient="autodiff"), J^T from the adjoint."""
    g = tiny_geometry(nt=120)
    rng = np.random.default_rng(6)
    v = jnp.asarray(rng.uniform(1800.0, 2800.0, (3, 12, 12)).astype(np.float32))
    dv = jnp.asarray(rng.normal(size=v.shape).astype(np.float32))
    r = jnp.asarray(rng.normal(size=(3, 2, g.nt, 12)).astype(np.float32))
    _, jdv = jax.jvp(lambda x: forward(x, g, mode=mode, gradient="autodiff"), (v,), (dv,))
    _, vjp = jax.vjp(lambda x: forward(x, g, mode=mode), v)
    (jtr,) = vjp(r)
    lhs, rhs = float(jnp.vdot(jdv, r)), float(jnp.vdot(dv, jtr))
    assert lhs == pytest.approx(rhs, rel=1e-5)
    with pytest.raises(TypeError, match="forward-mode|jvp"):  # forward mode needs the autodiff path
        jax.jvp(lambda x: forward(x, g, mode=mode), (v,), (dv,))


def test_fast_mode_layouts_agree_in_data_and_gradient():
    """Tasks of 8 shots (shots innermost), of 4 shots of two models and of 1 shot (shots outermost)."""
    g = tiny_geometry()
    assert [fast_group(8, n) for n in (1, 2, 8)] == [8, 4, 1]  # 4 models x 2 shots
    rng = np.random.default_rng(1)
    v = jnp.asarray(rng.uniform(1800.0, 2800.0, (4, 12, 12)).astype(np.float32))
    weights = jnp.asarray(rng.normal(size=(4, 2, g.nt, 12)).astype(np.float32))

    def loss(vel, devices):
        return jnp.sum(forward(vel, g, mode="fast", num_devices=devices) * weights)

    ref, ref_grad = jax.value_and_grad(loss)(v, 8)
    for devices in (1, 2):
        val, grad = jax.value_and_grad(loss)(v, devices)
        assert float(val) == pytest.approx(float(ref), rel=1e-5)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-4 * float(jnp.abs(ref_grad).max()))


def test_gradient_memory_is_bounded_by_rematerialization():
    """Reverse mode at full OpenFWI size keeps ~2 sqrt(nt) wavefields, not nt (~1.9 GB)."""
    v = jax.ShapeDtypeStruct((1, 70, 70), jnp.float32)
    w = jnp.asarray(ricker(15.0, 1e-3, 1000))

    def loss(vel):
        return jnp.sum(forward(vel, wavelet=w, num_devices=1) ** 2)

    mem = jax.jit(jax.grad(loss)).lower(v).compile().memory_analysis()
    assert mem is not None
    assert mem.temp_size_in_bytes < 400e6


def test_cfl_violation_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unstable time step.*dt <="):
        forward(np.full((70, 70), 7000.0, np.float32))
    with pytest.raises(ValueError, match="unstable"):
        forward(np.full((70, 70), 3000.0, np.float32), openfwi_geometry(dt=3e-3))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((1, 70, 60), 2000.0, np.float32), r"shape \(B, 70, 70\)"),
        (np.full((70, 70), np.nan, np.float32), "NaN"),
        (np.zeros((70, 70), np.float32), "positive"),
    ],
)
def test_bad_velocity_input_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        forward(bad)


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(ValueError, match="outside the padded grid"):
        Geometry(src_x=(500,))
    with pytest.raises(ValueError, match="layout"):
        openfwi_geometry("left")


def test_forward_is_deterministic_and_device_count_independent():
    v = velocity.generate("flatfault-a", 3, seed=2)
    g = openfwi_geometry(nt=200)
    a = np.asarray(forward(v, g))
    b = np.asarray(forward(v, g))
    c = np.asarray(forward(v, g, num_devices=1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-5 * np.abs(a).max())
