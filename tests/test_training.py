"""Training: every objective runs, resume is bit-exact, bad inputs give clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from sgan_cli.cli import app
from sgan_cli.config import load_config
from sgan_cli.contracts import read_file, write_file
from sgan_cli.errors import SganError
from sgan_cli.training import run_training

FAST = ["train.log_every=5", "train.grid_every=10", "train.save_every=10", "model.g_width=32", "model.d_width=16", "model.z_dim=8", "train.batch_size=16"]


@pytest.fixture(scope="module")
def digits_dict(tmp_path_factory):
    """A small whole-image digits dictionary (32 atoms), learned once for the module."""
    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary import learn_from_config

    path = tmp_path_factory.mktemp("dict") / "dictionary.safetensors"
    job = learn_from_config(load_data(DataConfig(name="digits")), DictConfig(atoms=32, passes=2))
    save_dictionary(path, job, {})
    return path


def _cfg(*extra: str, steps: int = 6):
    return load_config(None, [*FAST, f"train.steps={steps}", *extra])


@pytest.mark.parametrize("objective", ["gan", "wgan", "wgan-gp", "hinge"])
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_each_objective_runs_dense(tmp_path, objective, arch):
    res = run_training(_cfg(f"gan.objective={objective}", f"model.arch={arch}", "gan.critic_steps=2"), tmp_path / "run")
    assert res.steps == 6 and not res.sparse
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == [5, 6]
    g = read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator")
    assert g.config["gan"]["objective"] == objective


def test_sparse_generator_records_support_and_lineage(tmp_path, digits_dict):
    res = run_training(_cfg(f"train.dict={digits_dict}", "model.arch=mlp"), tmp_path / "run")
    assert res.sparse and 0.0 <= res.last_log["support"] <= 1.0
    g = read_file(tmp_path / "run" / "generator.safetensors", "sgan.generator")
    assert g.lineage["dictionary"].startswith("sha256:")
    assert (tmp_path / "run" / "grids" / "step-000006.png").exists()


def _weights(path):
    return read_file(path, "sgan.checkpoint").tensors


def test_resume_is_bit_exact(tmp_path, digits_dict):
    extra = (f"train.dict={digits_dict}", "model.arch=mlp", "gan.objective=wgan-gp", "gan.critic_steps=2")
    run_training(_cfg(*extra, steps=12), tmp_path / "straight")
    run_training(_cfg(*extra, steps=6), tmp_path / "split")
    run_training(_cfg(*extra, steps=12), tmp_path / "split", resume=True)
    a, b = _weights(tmp_path / "straight" / "checkpoint.safetensors"), _weights(tmp_path / "split" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_existing_run_needs_resume_or_force(tmp_path):
    run_training(_cfg(steps=2), tmp_path / "run")
    with pytest.raises(SganError, match="already holds a run.*--resume"):
        run_training(_cfg(steps=2), tmp_path / "run")
    run_training(_cfg(steps=2), tmp_path / "run", force=True)


def test_dictionary_and_data_of_different_sizes(tmp_path):
    atoms = torch.nn.functional.normalize(torch.randn(10, 784), dim=1)
    path = tmp_path / "mnist_dict.safetensors"
    write_file(path, "sgan.dictionary", {"atoms": atoms}, meta={"channels": "1", "image_size": "28", "patch": "null", "stride": "1"})
    with pytest.raises(SganError, match="28×28, but the data is 8×8"):
        run_training(_cfg(f"train.dict={path}"), tmp_path / "run")


def test_cli_errors(runner, tmp_path):
    res = runner.invoke(app, ["train", "--dict", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "does not exist" in res.stderr
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("train:\n  stepz: 3\n")
    res = runner.invoke(app, ["train", "--recipe", str(recipe), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "train.stepz" in res.stderr and str(recipe) in " ".join(res.stderr.split())
    res = runner.invoke(app, ["train", "--gan", "lsgan", "--out", str(tmp_path / "r"), "--steps", "1"])
    assert res.exit_code == 2 and "unknown objective 'lsgan'" in res.stderr


def test_cli_dry_run_prints_resolved_config(runner, tmp_path):
    res = runner.invoke(app, ["train", "--gan", "hinge", "--steps", "7", "--dry-run", "--json"])
    assert res.exit_code == 0
    cfg = json.loads(res.stdout)
    assert cfg["gan"]["objective"] == "hinge" and cfg["train"]["steps"] == 7


def test_nan_loss_stops_with_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    import sgan_cli.training as tr

    run_training(_cfg(steps=10), tmp_path / "run")  # a good checkpoint at step 10
    real_loss = tr.critic_loss
    calls = {"n": 0}

    def poisoned(objective, real, fake):
        calls["n"] += 1
        loss = real_loss(objective, real, fake)
        return loss * float("nan") if calls["n"] > 20 else loss

    monkeypatch.setattr(tr, "critic_loss", poisoned)
    with pytest.raises(SganError, match="NaN or inf"):
        run_training(_cfg(steps=30), tmp_path / "run", resume=True)
    ckpt = read_file(tmp_path / "run" / "checkpoint.safetensors", "sgan.checkpoint")
    assert ckpt.meta["step"] == "10"
    assert all(torch.isfinite(t).all() for t in ckpt.tensors.values() if t.is_floating_point())


def test_ctrl_c_writes_checkpoint(tmp_path, monkeypatch):
    import sgan_cli.training as tr

    real_loss = tr.generator_loss
    calls = {"n": 0}

    def interrupt(objective, scores):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_loss(objective, scores)

    monkeypatch.setattr(tr, "generator_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_training(_cfg(steps=8), tmp_path / "run")
    ckpt = read_file(tmp_path / "run" / "checkpoint.safetensors", "sgan.checkpoint")
    assert ckpt.meta["step"] == "3"


def test_model_errors(tmp_path):
    with pytest.raises(SganError, match="unknown architecture 'resnet50'"):
        run_training(_cfg("model.arch=resnet50"), tmp_path / "a")
    with pytest.raises(SganError, match="BatchNorm in a WGAN-GP critic"):
        run_training(_cfg("gan.objective=wgan-gp", "model.critic_norm=batch"), tmp_path / "b")
    atoms = torch.nn.functional.normalize(torch.randn(6, 9), dim=1)
    patches = tmp_path / "patch_dict.safetensors"
    write_file(patches, "sgan.dictionary", {"atoms": atoms}, meta={"channels": "1", "image_size": "8", "patch": "3", "stride": "1"})
    with pytest.raises(SganError, match="patch dictionary needs a convolutional generator"):
        run_training(_cfg(f"train.dict={patches}", "model.arch=mlp"), tmp_path / "c")
    res = run_training(_cfg(f"train.dict={patches}", "model.arch=dcgan", steps=2), tmp_path / "d")
    assert res.sparse


def test_resume_without_a_run(tmp_path):
    with pytest.raises(SganError, match="checkpoint file .* does not exist"):
        run_training(_cfg(steps=2), tmp_path / "nothing", resume=True)
