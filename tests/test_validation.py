"""One validation layer (issue 12, kinds 1–3 and 11): every number a user gives is finite and
in range before any work; values read back from files are type- and range-checked; requests
that cannot fit in memory are refused before allocating; odd devices are one clear error.
Each case runs the CLI end to end: exit code 2, the message, no traceback, no output left."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import typing

import pytest
from helpers import error_text, invoke

from sgan_cli.config import SganConfig
from sgan_cli.ranges import RANGES, option_range

HUGE_SEED = "18446744073709551616"  # 2**64: used to overflow in torch.manual_seed


def _no_outputs(tmp_path):
    """Nothing but what the test itself put there."""
    return sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("keep"))


# --- kind 2: numbers that are not finite or not sane ------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["learn-dict", "digits", "--alpha", "nan"], "--alpha must be a finite number greater than 0, got nan"),
        (["learn-dict", "digits", "--alpha", "inf"], "--alpha must be a finite number greater than 0, got inf"),
        (["learn-dict", "digits", "--set", "dict.passes=0"], "dict.passes must be in (0, 1000000], got 0.0"),
        (["learn-dict", "digits", "--set", "dict.batch_size=-7"], "dict.batch_size must be at least 1, got -7"),
        (["learn-dict", "digits", "--seed", HUGE_SEED], f"--seed must be in [0, 4294967295], got {HUGE_SEED}"),
        (["learn-dict", "digits", "--atoms", "1000000000"], "--atoms must be in [1, 1048576], got 1000000000"),
        (["learn-dict", "digits", "--image-size", "100000"], "--image-size must be in [1, 16384], got 100000"),
        (
            ["encode", "digits", "--dict", "d.safetensors", "--method", "lasso", "--alpha", "nan"],
            "--alpha must be a finite number greater than 0, got nan",
        ),
        (["classifier", "digits", "--lr", "inf"], "--lr must be a finite number in (0, 10], got inf"),
        (["score", "digits", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["score", "digits", "--seed", HUGE_SEED], "--seed must be in [0, 4294967295]"),
        (
            ["score", "digits", "-m", "fid", "--ref", "digits", "--fail-above", "fid=nan"],
            "--fail-above 'fid=nan': the bound must be a finite number",
        ),
        (["train", "--seed", HUGE_SEED], "--seed must be in [0, 4294967295]"),
        (["train", "--feature-matching", "nan"], "--feature-matching must be a finite number at least 0, got nan"),
        (["train", "--set", "model.threshold=nan"], "model.threshold must be a finite number at least 0, got nan"),
        (["train", "--set", "gan.lr_g=-1"], "gan.lr_g must be in (0, 10], got -1.0"),
        (["train", "--set", "gan.lr_g=1e400"], "gan.lr_g must be a finite number in (0, 10], got inf"),
        (["train", "--set", "gan.beta1=2"], "gan.beta1 must be in [0, 1), got 2.0"),
        (["train", "--set", "model.z_dim=1e20"], "model.z_dim must be int, got '1e20'"),
        (
            ["train", "--set", "model.z_dim=100000000000000000000"],
            "model.z_dim must be in [1, 65536], got 100000000000000000000",
        ),
        (["train", "--limit", "100000000000000000000000"], "--limit is too large"),
    ],
)
def test_numbers_are_checked_before_any_work(runner, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    msg = error_text(invoke(runner, [*args, "--out", str(tmp_path / "out")] if args[0] != "score" else args))
    assert message in msg
    assert _no_outputs(tmp_path) == []


def test_dry_run_checks_recipe_values_like_the_real_run(runner, tmp_path):
    recipe = tmp_path / "keep.yaml"
    recipe.write_text("train:\n  steps: -5\n")
    msg = error_text(invoke(runner, ["train", "--recipe", str(recipe), "--dry-run"]))
    assert "train.steps must be at least 1, got -5" in msg and f"recipe {recipe}" in msg


def test_every_numeric_config_field_has_a_range():
    """A new int/float field without a range would escape the rule: name it here."""
    missing = []
    for section in dataclasses.fields(SganConfig):
        for f in dataclasses.fields(section.default_factory()):  # type: ignore[misc]
            hint = typing.get_type_hints(section.default_factory)[f.name]  # type: ignore[misc]
            if {int, float} & set(typing.get_args(hint) or (hint,)) and f"{section.name}.{f.name}" not in RANGES:
                missing.append(f"{section.name}.{f.name}")
    assert missing == []
    sections = {f.name for f in dataclasses.fields(SganConfig)}
    for key in RANGES:  # and every default is inside its own range
        section, _, name = key.partition(".")
        if section in sections:
            value = getattr(getattr(SganConfig(), section), name)
            assert value is None or RANGES[key].contains(value), key


def test_every_numeric_option_has_a_range():
    from sgan_cli.commands import classifier, encode, learn_dict, sample, score, train

    missing = []
    for fn in (learn_dict.learn_dict, train.train, sample.sample, encode.encode, score.score, classifier.classifier):
        hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
        for name, hint in hints.items():
            base = typing.get_args(hint)[0] if typing.get_args(hint) else hint
            kinds = set(typing.get_args(base) or (base,))
            if {int, float} & kinds and option_range(fn.__name__, name) is None:
                missing.append(f"{fn.__name__} {name}")
    assert missing == []


# --- kind 11: odd devices -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["learn-dict", "digits"], ["train", "--steps", "1"]])
@pytest.mark.parametrize(
    ("device", "message"),
    [("meta", "unknown device 'meta'"), ("mps", "the Apple GPU (mps) was requested but this machine has none")],
)
def test_odd_devices_are_refused_before_any_output(runner, tmp_path, command, device, message):
    msg = error_text(invoke(runner, [*command, "--device", device, "--out", str(tmp_path / "out")]))
    assert message in msg
    assert _no_outputs(tmp_path) == []


# --- kind 3: sizes that cannot fit ----------------------------------------------------------------


def test_training_sizes_that_cannot_fit_are_refused(runner, tmp_path):
    msg = error_text(invoke(runner, ["train", "--batch-size", "1000000000000", "--out", str(tmp_path / "run")]))
    assert "a batch of 1000000000000 1×8×8 training images would need about" in msg
    assert "Where: train.batch_size / --batch-size" in msg
    msg = error_text(invoke(runner, ["train", "--set", "model.g_width=65536", "--out", str(tmp_path / "run")]))
    assert "parameters (with gradients and optimiser state)" in msg and "more than the" in msg
    assert _no_outputs(tmp_path) == []


def test_resize_that_cannot_fit_is_refused(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("SGAN_MAX_MEMORY", str(2**30))
    msg = error_text(
        invoke(runner, ["learn-dict", "digits", "--image-size", "4096", "--out", str(tmp_path / "d.safetensors")])
    )
    assert "1438 images of 1×4096×4096 would need about" in msg and "more than the 1.0 GiB available" in msg
    assert _no_outputs(tmp_path) == []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step dense MLP run on digits (seconds): generator, critic and checkpoint files."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("run") / "run"
    args = [
        "train",
        "--arch",
        "mlp",
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--set",
        "model.g_width=16",
        "--set",
        "model.d_width=16",
        "--set",
        "model.z_dim=4",
        "--out",
        str(out),
    ]
    res = invoke(CliRunner(), args)
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-n", "100000000000"], "100000000000 samples of 1×8×8 would need about"),
        (["-n", "1000", "--interpolate", "1000000000"], "1000000000000 samples of 1×8×8 would need about"),
        (["--batch-size", "1000000000000", "-n", "100000000000"], "would need about"),
    ],
)
def test_sample_sizes_that_cannot_fit_are_refused(runner, tiny_run, tmp_path, args, message):
    msg = error_text(invoke(runner, ["sample", str(tiny_run), "--out", str(tmp_path / "s"), *args]))
    assert message in msg
    assert _no_outputs(tmp_path) == []


# --- kind 1: values read from files are validated -----------------------------------------------


def _rewrite(src, dst, **changes):
    """Copy an sgan file with metadata fields replaced (``config`` given as an object)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in changes.items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _config(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["config"])


def test_generator_metadata_is_type_and_range_checked(runner, tiny_run, tmp_path):
    gen = tiny_run / "generator.safetensors"
    cases = [
        ({"config": [1, 2]}, "has corrupt metadata (config must be a JSON object"),
        (
            {"config": {**_config(gen), "model": {**_config(gen)["model"], "z_dim": "sixty-four"}}},
            "model.z_dim must be int, got 'sixty-four'",
        ),
        (
            {"config": {**_config(gen), "model": {**_config(gen)["model"], "z_dim": -4}}},
            "model.z_dim must be in [1, 65536], got -4",
        ),
        (
            {"config": {**_config(gen), "model": {**_config(gen)["model"], "g_width": 32}}},
            "do not fit the architecture its config describes",
        ),
        ({"step": "two"}, "metadata field 'step' must be a whole number, got 'two'"),
        ({"image_size": "0"}, "metadata field 'image_size' must be in [1, 16384], got 0"),
    ]
    for changes, message in cases:
        bad = _rewrite(gen, tmp_path / "keep-generator.safetensors", **changes)
        msg = error_text(invoke(runner, ["sample", str(bad), "--out", str(tmp_path / "s"), "-n", "4"]))
        assert message in msg and str(bad) in msg, (changes, msg)
    assert _no_outputs(tmp_path) == []


def test_dictionary_metadata_is_type_and_range_checked(runner, tmp_path):
    import torch

    from sgan_cli.contracts import write_file

    atoms = torch.nn.functional.normalize(torch.randn(10, 64), dim=1)
    meta = {
        "channels": "1",
        "image_size": "8",
        "patch": "null",
        "stride": "1",
        "alpha": "0.1",
        "achieved_sparsity": "0.1",
    }
    for changes, message in (
        ({"alpha": "tiny"}, "metadata field 'alpha' must be a number, got 'tiny'"),
        ({"stride": "one"}, "metadata field 'stride' must be a whole number"),
        ({"channels": "-1"}, "metadata field 'channels' must be in [1, 4], got -1"),
        ({"patch": "[3]"}, "metadata field 'patch' must be a whole number"),
        (
            {"stride": "+-5"},
            "metadata field 'stride' must be a whole number",
        ),  # passed the old digit test, then int() raised
        ({"stride": "²"}, "metadata field 'stride' must be a whole number"),
    ):
        path = tmp_path / "keep-d.safetensors"
        write_file(path, "sgan.dictionary", {"atoms": atoms}, meta={**meta, **changes}, force=True)
        msg = error_text(
            invoke(runner, ["encode", "digits", "--dict", str(path), "--out", str(tmp_path / "l.safetensors")])
        )
        assert message in msg, (changes, msg)
    assert _no_outputs(tmp_path) == []


def test_resume_checks_the_checkpoint_against_its_config(runner, tiny_run, tmp_path):
    run = tmp_path / "keep-run"
    shutil.copytree(tiny_run, run)
    ckpt = run / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    cfg = _config(ckpt)
    for changes, message in (
        (
            {"config": {**cfg, "train": {**cfg["train"], "batch_size": "eight"}}},
            "train.batch_size must be int, got 'eight'",
        ),
        (
            {"config": {**cfg, "gan": {**cfg["gan"], "lr_g": "nan"}}},
            "gan.lr_g must be a finite number in (0, 10], got nan",
        ),
        ({"step": "-3"}, "metadata field 'step' must be at least 0, got -3"),
    ):
        ckpt.write_bytes(good)
        _rewrite(ckpt, ckpt, **changes)
        msg = error_text(invoke(runner, ["train", "--out", str(run), "--resume", "--steps", "4"]))
        assert message in msg and str(ckpt) in msg, (changes, msg)
    # a critic file copied over the checkpoint (same kind) is refused before load_state_dict
    shutil.copy(run / "critic.safetensors", ckpt)
    msg = error_text(invoke(runner, ["train", "--out", str(run), "--resume", "--steps", "4"]))
    assert "is not a training checkpoint of this run: it lacks the tensor 'generator." in msg


@pytest.mark.parametrize("value", ["inf", "-5", "nan", "lots"])
def test_a_memory_limit_that_is_not_a_positive_number_is_refused(runner, tmp_path, monkeypatch, value):
    monkeypatch.setenv("SGAN_MAX_MEMORY", value)
    msg = error_text(invoke(runner, ["learn-dict", "digits", "--out", str(tmp_path / "d.safetensors")]))
    assert f"SGAN_MAX_MEMORY={value!r} is not a finite, positive number of bytes" in msg
    assert _no_outputs(tmp_path) == []


def test_critic_arch_auto_is_refused_by_dry_run(runner):
    msg = error_text(invoke(runner, ["train", "--set", "model.critic_arch=auto", "--dry-run"]))
    assert (
        "unknown critic architecture 'auto'" in msg and "leave model.critic_arch unset (null) to follow --arch" in msg
    )


# --- library errors name arguments and keys; the CLI names the option -----------------------------


def test_library_errors_name_the_key_and_the_cli_adds_the_option(runner, tmp_path):
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.data import load_data
    from sgan_cli.devices import resolve_device
    from sgan_cli.dictionary_job import learn_from_config
    from sgan_cli.errors import SganError

    with pytest.raises(SganError) as err:
        learn_from_config(load_data(DataConfig(name="digits", limit=20)), DictConfig(patch=12))
    assert err.value.where == "dict.patch" and "--" not in err.value.message
    with pytest.raises(SganError) as err:
        resolve_device("tpu")
    assert err.value.where == "device" and "--" not in err.value.message
    out = str(tmp_path / "d.safetensors")
    msg = error_text(invoke(runner, ["learn-dict", "digits", "--patch", "12", "--out", out]))
    assert "dict.patch 12 is larger than the 8×8 images" in msg and "Where: dict.patch / --patch." in msg
    msg = error_text(invoke(runner, ["learn-dict", "digits", "--device", "tpu", "--out", out]))
    assert "unknown device 'tpu'" in msg and "Where: --device." in msg
