"""Evaluation during training (sgan_cli.evaluation) against ``sgan score`` on the same images."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sgan_cli.cli import app
from sgan_cli.config import DataConfig
from sgan_cli.contracts import write_file
from sgan_cli.data import load_data
from sgan_cli.evaluation import make_evaluator


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    from typer.testing import CliRunner

    path = tmp_path_factory.mktemp("clf") / "clf.safetensors"
    res = CliRunner().invoke(app, ["classifier", "digits", "--epochs", "2", "--out", str(path)])
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def train_images():
    return load_data(DataConfig(name="digits", split="train")).images


class Replay(nn.Module):
    """A 'generator' that returns fixed images in [−1, 1], whatever z is."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("x", images.float() / 127.5 - 1.0)
        self.calls = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lo = self.calls
        self.calls += len(z)
        return self.x[lo : lo + len(z)]


def test_evaluator_scores_as_sgan_score_does(clf, train_images, tmp_path, runner):
    """Same images, same reference, same classifier: the evaluator's IS, FID, precision/recall
    and modes are `sgan score`'s (the reference implementation of every metric here)."""
    test = load_data(DataConfig(name="digits", split="test")).images
    ev = make_evaluator(f"classifier:{clf}", train_images, len(test), torch.device("cpu"))
    mine = ev.score(test)
    write_file(tmp_path / "s.safetensors", "sgan.samples", {"images": test, "z": torch.zeros(len(test), 2)})
    res = runner.invoke(
        app,
        ["score", str(tmp_path / "s.safetensors"), "-m", "inception", "-m", "fid", "-m", "pr", "-m", "modes"]
        + ["--ref", "digits", "--features", f"classifier:{clf}", "--json", "--no-ceiling"],
    )
    assert res.exit_code == 0, res.output
    ref = json.loads(res.stdout)["metrics"]
    for key in ("inception", "fid", "precision", "recall", "modes", "modes_kl"):
        assert mine[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-9), key
    assert 0 < mine["fid"] < 50 and mine["modes"] == 10


def test_evaluation_leaves_training_untouched(clf, train_images):
    """No draw from the global RNG (training stays bit-identical with evaluation on), the
    generator's mode restored, and the fixed latents: two evaluations of one net agree."""
    ev = make_evaluator(f"classifier:{clf}", train_images, 300, torch.device("cpu"))
    g = Replay(train_images[:300])
    g.train()
    before = torch.get_rng_state()
    first = ev(g, z_dim=7)
    assert torch.equal(before, torch.get_rng_state())
    assert g.training and g.calls == 300
    g.calls = 0
    second = ev(g, z_dim=7)
    assert {k: v for k, v in first.items() if k != "eval_s"} == {k: v for k, v in second.items() if k != "eval_s"}
    # the training images themselves: a near-perfect score
    assert first["fid"] < 5 and first["precision"] > 0.9 and first["modes"] == 10
    assert first["eval_s"] > 0 and ev.setup_s > 0


def _train(runner, out, steps, clf, *extra):
    args = [
        "train",
        "--data",
        "digits",
        "--arch",
        "mlp",
        "--steps",
        str(steps),
        "--batch-size",
        "32",
        "--out",
        str(out),
    ]
    args += ["--set", "train.log_every=2", "--set", "train.eval_samples=200", *extra]
    if clf is not None:
        args += ["--set", "train.eval_every=2", "--set", f"train.eval_features=classifier:{clf}"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_evaluates_keeps_the_best_and_resumes_with_its_history(clf, tmp_path, runner):
    """train.eval_every end to end: score lines at every eval step, best.safetensors = the lowest
    FID so far (a generator file sgan sample takes), the same training with and without
    evaluation, and a resumed run keeps the history and scores as an uninterrupted one."""
    from safetensors import safe_open

    whole = _train(runner, tmp_path / "whole", 6, clf)
    evals = [e for e in whole if "fid" in e]
    assert [e["step"] for e in evals] == [2, 4, 6]
    assert "eval_setup_s" in evals[0] and all(e["eval_s"] > 0 and 0 <= e["recall"] <= 1 for e in evals)
    best = min(evals, key=lambda e: e["fid"])
    with safe_open(str(tmp_path / "whole" / "best.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["kind"] == "sgan.generator" and int(meta["step"]) == best["step"]
    assert float(meta["eval_fid"]) == best["fid"]
    res = runner.invoke(app, ["sample", str(tmp_path / "whole" / "best.safetensors"), "-n", "8", "--out", "s"])
    assert res.exit_code == 0, res.output

    plain = _train(runner, tmp_path / "plain", 6, None)
    strip = ("wall_s", "images_per_s", "eval_s", "eval_setup_s")

    def losses(entries):
        return [{k: v for k, v in e.items() if k not in strip} for e in entries if "fid" not in e]

    assert losses(plain) == losses(whole)
    with safe_open(str(tmp_path / "plain" / "checkpoint.safetensors"), "pt") as a:
        with safe_open(str(tmp_path / "whole" / "checkpoint.safetensors"), "pt") as b:
            assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())

    _train(runner, tmp_path / "split", 4, clf)
    res = runner.invoke(app, ["train", "--resume", "--steps", "6", "--out", str(tmp_path / "split")])
    assert res.exit_code == 0, res.output
    resumed = [json.loads(line) for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in e.items() if k not in strip} for e in resumed if "fid" in e] == [
        {k: v for k, v in e.items() if k not in strip} for e in evals
    ]
    assert losses(resumed) == losses(whole)


def test_evaluation_without_features_is_one_clear_error(runner, tmp_path):
    res = runner.invoke(
        app, ["train", "--data", "digits", "--steps", "2", "--out", str(tmp_path / "r"), "--set", "train.eval_every=1"]
    )
    assert res.exit_code != 0 and "train.eval_features" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()
