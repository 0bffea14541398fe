"""Convolution forms chosen by measurement (fwi_jax.models.conv_tuning, tune): the tuner times every
layer and caches a form per machine; the cache decides `conv_impl="auto"` on a CPU; a corrupt, stale
or odd cache is ignored with a note, never an error."""

import json

import flax.linen as nn
import pytest
from helpers import smoke_config

from fwi_jax.config import quickstart_config
from fwi_jax.models import build_model, conv_tuning, cpu_convs, tune
from fwi_jax.models.__main__ import main as models_main
from fwi_jax.training import loop, steps

TIME_AXIS = dict(features=8, kernel=(3, 1), strides=(1, 1), padding=((1, 1), (0, 0)), in_shape=(2, 250, 70, 8))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A cache folder of this test's own: the session's cache must not change other tests' forms."""
    monkeypatch.setenv("FWI_JAX_CACHE", str(tmp_path))
    return tmp_path / conv_tuning.CACHE_NAME


def built(impl="auto"):
    return cpu_convs.conv(**TIME_AXIS, train=True, impl=impl)


def key():
    return conv_tuning.spec("conv", TIME_AXIS["in_shape"], 8, (3, 1), (1, 1), ((1, 1), (0, 0)), "float32", True).key


def conv_tuning_layers():
    return tune.model_layers(build_model("inversionnet", "tiny", (70, 70)), (1000, 70, 5), 2, train=False)


def test_the_tuner_times_every_layer_and_its_choices_are_used(cache):
    rows = tune.tune(quickstart_config("smoke"), batch=2, train=False, reps=1, progress=False)  # forward: lean
    entries = json.loads(cache.read_text())["machines"][conv_tuning.machine_key()]
    assert len(rows) == len(entries) == 25  # InversionNet's 25 convolutions, each measured in its candidate forms
    for row, layer in zip(rows, conv_tuning_layers(), strict=True):
        forms = conv_tuning.candidates(layer)
        assert [f for f in conv_tuning.FORMS if f"{f}_ms" in row] == list(forms)
        assert row["form"] in forms and entries[row["layer"]]["form"] == row["form"]
    # Stride-1 convolutions also try one full im2col product, and training XLA's forward with the
    # matrix-product gradients; transposed convolutions and convblock8 have two forms.
    assert {len(conv_tuning.candidates(layer)) for layer in conv_tuning_layers()} == {2, 3}
    trained = tune.model_layers(build_model("inversionnet", "tiny", (70, 70)), (1000, 70, 5), 2, train=True)
    assert {conv_tuning.candidates(layer) for layer in trained} == {
        ("xla", "matmul"),
        ("xla", "matmul", "hybrid"),
        ("xla", "matmul", "im2col", "hybrid"),
    }
    # Tracing the model again looks every layer up and finds the measured form.
    layers = conv_tuning_layers()
    assert [conv_tuning.tuned_form(layer) for layer in layers] == [row["form"] for row in rows]
    assert tune.tune(quickstart_config("smoke"), batch=2, train=False, progress=False, only_missing=True) == []


def test_a_form_replaces_the_rules_only_when_faster_round_by_round():
    # The machine runs at half speed from round 3 on: per-round ratios cancel that. "hybrid" has the lowest
    # median time (12 ms) but is 1.2x the rule's form in 4 of 5 rounds; "xla" is 0.9x in every round.
    times = {"matmul": [10.0, 10.0, 20.0, 20.0, 20.0], "xla": [9.0, 9.0, 18.0, 18.0, 18.0],
             "hybrid": [12.0, 12.0, 24.0, 24.0, 12.0]}  # fmt: skip
    assert tune.choose(times, rule="matmul") == "xla"
    assert tune.choose({"matmul": [10.0, 10.0], "xla": [9.8, 9.8]}, rule="matmul") == "matmul"  # within the margin
    assert tune.choose({"matmul": [10.0, 10.0], "xla": [9.8, 9.8]}, rule="xla") == "xla"
    layer = conv_tuning.spec("conv", TIME_AXIS["in_shape"], 8, (3, 1), (1, 1), ((1, 1), (0, 0)), "float32", True)
    assert cpu_convs.rule_form(layer) == "matmul" and isinstance(built("auto"), cpu_convs.EinsumConv)


def test_a_cached_form_overrides_the_shape_rule_for_auto_on_cpu_only(cache):
    assert isinstance(built(), cpu_convs.EinsumConv)  # the rule: time-axis convs as matrix products
    conv_tuning.save({key(): {"form": "xla", "ms": {"xla": 1.0, "matmul": 2.0}}})
    assert isinstance(built(), nn.Conv)
    assert isinstance(built("einsum"), cpu_convs.EinsumConv)  # an explicit impl is never overridden
    conv_tuning.save({key(): {"form": "matmul", "ms": {"xla": 2.0, "matmul": 1.0}}})  # rewritten: read again
    assert isinstance(built(), cpu_convs.EinsumConv) and built().stride1 == "shifted"
    conv_tuning.save({key(): {"form": "im2col", "ms": {"xla": 2.0, "matmul": 1.5, "im2col": 1.0}}})
    assert isinstance(built(), cpu_convs.EinsumConv) and built().stride1 == "im2col"
    conv_tuning.save({key(): {"form": "hybrid", "ms": {}}})  # XLA's forward, the matrix-product gradients
    assert isinstance(built(), cpu_convs.EinsumConv) and built().forward == "xla"


def test_a_corrupt_stale_or_odd_cache_is_ignored_with_a_note(cache):
    cache.write_text('{"machines": {"')  # torn
    with pytest.warns(UserWarning, match="unreadable.*the shape rules apply.*tune"):
        assert isinstance(built(), cpu_convs.EinsumConv)
    cache.write_text(json.dumps({"machines": {"another CPU | avx2 | jax 0.1": {key(): {"form": "xla"}}}}))
    assert isinstance(built(), cpu_convs.EinsumConv)  # another machine's (or jax version's) entry: not ours
    older_forms = conv_tuning.machine_key().replace(f"forms {conv_tuning.FORMS_REVISION}", "forms 1")
    cache.write_text(json.dumps({"machines": {older_forms: {key(): {"form": "xla"}}}}))
    assert isinstance(built(), cpu_convs.EinsumConv)  # measured on earlier code of the forms: not used
    cache.write_text(json.dumps({"machines": {conv_tuning.machine_key(): {key(): {"form": "winograd"}}}}))
    with pytest.warns(UserWarning, match="names no known form"):
        assert isinstance(built(), cpu_convs.EinsumConv)
    conv_tuning.save({key(): {"form": "xla", "ms": {}}})  # saving over an odd cache keeps what is readable
    assert isinstance(built(), nn.Conv)


def test_the_tune_command_reports_a_bad_config_in_one_line(cache, capsys):
    with pytest.raises(SystemExit) as e:
        models_main(["tune", "--config", "configs/nosuch.py"])
    assert e.value.code == 2 and "error: the config configs/nosuch.py failed to load" in capsys.readouterr().err
    assert not cache.exists()


def test_tune_convs_measures_the_layers_a_training_run_traces_before_it_compiles(cache, cache_dir, tmp_path,
                                                                                  monkeypatch, capsys):  # fmt: skip
    events = []

    def measure(layer, reps):  # the tuner's timings are tested above; fixed ones (XLA's fastest) keep this lean
        events.append("measure")
        return {f: [1.0 + i] * reps for i, f in enumerate(conv_tuning.candidates(layer))}

    def make_steps(*args, **kwargs):
        events.append("steps")
        return steps.make_steps(*args, **kwargs)

    monkeypatch.setattr(tune, "measure", measure)
    monkeypatch.setattr(loop, "make_steps", make_steps)
    with conv_tuning.recording() as traced:
        summary = loop.train_and_evaluate(smoke_config(cache_dir, **{"model.tune_convs": True}), tmp_path / "run")
    assert events == ["measure"] * 25 + ["steps"]  # every layer measured before the steps are built
    out = capsys.readouterr().out
    assert "model.tune_convs: measuring 25 convolutions" in out and "[25/25] conv" in out  # progress as it goes
    assert "model.tune_convs: measured 25 convolutions" in out
    assert summary["train_step_compilations"] == 1
    # The layers the run traced are the ones measured (same shapes): all found in the cache.
    assert traced and {conv_tuning.tuned_form(layer) for layer in traced if layer.train} == {"xla"}
