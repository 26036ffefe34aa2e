"""``torchrun``: 2 gloo ranks on digits against one process.

One torchrun launch (2 ranks, tests/ddp_worker.py) runs every distributed command; the
single-process counterparts run here. It checks that the data sharding and the gradient
averaging are right (2 ranks = 1 process to float tolerance), that a 2-rank resume is
bit-exact, that only rank 0 writes and prints, and that sample / score equal their
single-process outputs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import error_text, invoke

from sgan_cli.contracts import read_file

ROOT = Path(__file__).resolve().parents[1]
# whole-image sparse MLP generator (BatchNorm1d), WGAN-GP with the reconstructor, feature
# matching and EMA: every path of the loop that draws, shards or averages something
TRAIN = [
    "--data", "digits", "--gan", "wgan-gp", "--recon", "--arch", "mlp", "--batch-size", "16", "--ema", "0.9",
    "--feature-matching", "1.0", "--set", "train.log_every=1", "--set", "train.grid_every=2",
    "--set", "train.save_every=2",
    "--set", "model.g_width=32", "--set", "model.d_width=16", "--set", "model.e_width=16", "--set", "model.z_dim=8",
    "--set", "gan.critic_steps=2", "--set", "train.sync_bn=true", "--set", "recon.steps=1",
    "--set", "model.sparsity=controller",  # λ adapted from the global batch's support: the same on every rank
]  # fmt: skip
SCORE = ["-m", "inception", "-m", "fid", "-m", "kid", "-m", "pr", "-m", "modes", "-m", "sparsity", "--ref", "digits",
         "--kid-subsets", "10", "--kid-subset-size", "30", "--batch-size", "16", "--json"]  # fmt: skip


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """The 2-rank results: a folder with the runs, samples, and each rank's command outputs."""
    from typer.testing import CliRunner

    from sgan_cli.config import DataConfig, DictConfig
    from sgan_cli.contracts import save_dictionary
    from sgan_cli.data import load_data
    from sgan_cli.dictionary_job import learn_from_config

    work = tmp_path_factory.mktemp("ddp")
    dictionary = work / "dictionary.safetensors"
    save_dictionary(
        dictionary, learn_from_config(load_data(DataConfig(name="digits")), DictConfig(atoms=32, passes=2)), {}
    )
    clf = work / "clf.safetensors"
    assert invoke(CliRunner(), ["classifier", "digits", "--epochs", "1", "--out", str(clf)]).exit_code == 0
    train = [*TRAIN, "--dict", str(dictionary)]
    commands = [
        ["eq", ["train", *train, "--steps", "3", "--out", str(work / "eq")]],
        ["full", ["train", *train, "--steps", "4", "--out", str(work / "full")]],
        ["part", ["train", *train, "--steps", "2", "--out", str(work / "res")]],
        ["resume", ["train", "--resume", "--steps", "4", "--out", str(work / "res")]],
        # packing: each rank packs its shard (whole packs), one ε per pack from the global draw
        ["pack", ["train", *train, "--pack", "4", "--steps", "2", "--out", str(work / "pack")]],
        [
            "sample",
            [
                "sample",
                str(work / "full"),
                "-n",
                "40",
                "--batch-size",
                "16",
                "--seed",
                "3",
                "--out",
                str(work / "samples"),
            ],
        ],
        ["score", ["score", str(work / "samples" / "samples.safetensors"), *SCORE, "--features", f"classifier:{clf}"]],
        ["learn-dict", ["learn-dict", "digits", "--out", str(work / "d2.safetensors")]],
    ]
    plan = work / "plan.json"
    plan.write_text(json.dumps({"commands": commands, "out": str(work)}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(ROOT / "tests" / "ddp_worker.py"),
        str(plan),
    ]
    # its own process group, so a timeout ends the ranks too (killing torchrun alone orphans
    # them, blocked in a collective for good)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-4000:]
    ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"work": work, "dict": dictionary, "clf": clf, "ranks": ranks, "train": train}


def _tensors(path):
    return read_file(path, "sgan.checkpoint" if "generator" not in path.name else "sgan.generator").tensors


def test_every_rank_ran_and_only_rank_0_printed(ddp):
    r0, r1 = ddp["ranks"]
    for name in ("eq", "full", "part", "resume", "sample", "score"):
        assert r0[name]["exit_code"] == 0 and r1[name]["exit_code"] == 0, (name, r0[name]["stderr"], r1[name]["stderr"])
        assert r1[name]["stdout"] == "" and r1[name]["stderr"] == "", name  # no duplicate tables or progress
    assert "trained 3 steps" in r0["eq"]["stdout"]
    # learn-dict refuses to run as several ranks, with one message from rank 0
    assert r0["learn-dict"]["exit_code"] == 2 and r1["learn-dict"]["exit_code"] == 2
    assert "runs in one process, and this is one of 2 torchrun ranks" in " ".join(r0["learn-dict"]["stderr"].split())
    assert r1["learn-dict"]["stderr"] == ""
    assert not (ddp["work"] / "d2.safetensors").exists()


def test_two_ranks_write_one_set_of_files(ddp):
    from sgan_cli.curves import have_matplotlib

    run = ddp["work"] / "eq"
    names = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    assert names == sorted(
        [
            ".sgan.lock",
            "checkpoint.safetensors",
            "config.yaml",
            "critic.safetensors",
            "generator.safetensors",
            "metrics.jsonl",
            "reconstructor.safetensors",
            "grids",
            "grids/step-000002.png",
            "grids/step-000003.png",
            *(["curves.png"] if have_matplotlib() else []),  # drawn by rank 0 only
        ]
    )  # fmt: skip  (no staging folder or temp file left, one lock: rank 0's)
    steps = [json.loads(s)["step"] for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one writer: no line twice
    ckpt = read_file(run / "checkpoint.safetensors", "sgan.checkpoint")
    assert ckpt.meta["world_size"] == "2"
    states = ckpt.tensors["rng.rank_states"]
    assert states.shape[0] == 2 and torch.equal(states[0], states[1])  # one seeded stream, identical on every rank
    assert ckpt.config["train"]["batch_size"] == 16  # the global batch


def test_two_ranks_equal_one_process(ddp, tmp_path, runner):
    """Sharded draws + averaged gradients + global BatchNorm / feature-matching means:
    the same run as one process with the same global batch, to float tolerance.

    Not every entry can agree to rounding: a bias followed by BatchNorm has a zero gradient
    in exact arithmetic (and a few critic biases a near-zero one), and Adam divides such
    rounding noise by its own size, so these entries take noise steps of up to ~lr (1e-4)
    per update that differ between the runs (measured: 1 % of the entries, all of them such
    biases and the running means they shift). A sharding or averaging bug moves every entry.
    """
    res = invoke(runner, ["train", *ddp["train"], "--steps", "3", "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    close = total = 0
    for name in ("generator.safetensors", "critic.safetensors", "reconstructor.safetensors", "checkpoint.safetensors"):
        one, two = _tensors(tmp_path / "one" / name), _tensors(ddp["work"] / "eq" / name)
        assert one.keys() == two.keys()
        for k in one:
            if k == "rng.rank_states":  # [1, L] and [2, L]: one stream
                assert torch.equal(one[k][0], two[k][0]) and torch.equal(one[k][0], two[k][1])
            elif k.startswith("rng.") or not one[k].is_floating_point():
                assert torch.equal(one[k], two[k]), k  # the RNG stream and step counters: exactly
            if k.startswith("rng.") or not one[k].is_floating_point():
                continue
            diff = (two[k] - one[k]).abs()
            assert diff.max() <= 1e-3, (name, k, float(diff.max()))  # within Adam's ~lr per update
            close += int((diff <= 1e-6 + 1e-5 * one[k].abs()).sum())
            total += diff.numel()
    assert close >= 0.98 * total, (close, total)
    a = [json.loads(s) for s in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(s) for s in (ddp["work"] / "eq" / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(a, b, strict=True):  # logged losses are the global batch's (mean over ranks)
        for k in ("loss_d", "loss_g", "gp", "l1", "fm", "recon_e", "recon_g", "support", "lambda"):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), k


def test_packed_critic_under_two_ranks_equals_one_process(ddp, tmp_path, runner):
    """PacGAN packing under torchrun: rank r's packs are the global batch's packs of its rows,
    so the logged global losses equal one process's (the gradient penalty's per-pack ε too)."""
    res = invoke(runner, ["train", *ddp["train"], "--pack", "4", "--steps", "2", "--out", str(tmp_path / "one")])
    assert res.exit_code == 0, res.output
    a = [json.loads(s) for s in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(s) for s in (ddp["work"] / "pack" / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(a, b, strict=True):
        for k in ("loss_d", "loss_g", "gp", "fm", "recon_e", "recon_g"):
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), k
    res = invoke(runner, ["train", *ddp["train"], "--pack", "3", "--steps", "1", "--out", str(tmp_path / "bad")])
    assert "does not split into packs of 3" in error_text(res)


def test_resume_under_two_ranks_is_exact(ddp):
    full = read_file(ddp["work"] / "full" / "checkpoint.safetensors", "sgan.checkpoint").tensors
    resumed = read_file(ddp["work"] / "res" / "checkpoint.safetensors", "sgan.checkpoint").tensors
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_resume_with_another_world_size_is_refused(ddp, tmp_path, runner):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ddp["work"] / "full", run)
    before = {p.name: p.read_bytes() for p in run.glob("*.safetensors")}
    msg = error_text(invoke(runner, ["train", "--resume", "--steps", "6", "--out", str(run)]))
    assert "trained with 2 process(es) and this resume has 1" in msg and "torchrun --nproc-per-node 2" in msg
    assert {p.name: p.read_bytes() for p in run.glob("*.safetensors")} == before


def test_distributed_sample_equals_one_process(ddp, tmp_path, runner):
    res = invoke(
        runner,
        [
            "sample",
            str(ddp["work"] / "full"),
            "-n",
            "40",
            "--batch-size",
            "16",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    one = read_file(tmp_path / "s" / "samples.safetensors", "sgan.samples")
    two = read_file(ddp["work"] / "samples" / "samples.safetensors", "sgan.samples")
    for k in one.tensors:
        assert torch.equal(one.tensors[k], two.tensors[k]), k  # bit-identical images, z and codes
    assert one.meta["support_fraction"] == two.meta["support_fraction"]
    pngs = sorted(p.name for p in (tmp_path / "s").glob("*.png"))
    assert pngs == sorted(p.name for p in (ddp["work"] / "samples").glob("*.png")) and len(pngs) == 41
    for name in pngs:
        assert (tmp_path / "s" / name).read_bytes() == (ddp["work"] / "samples" / name).read_bytes(), name


def test_distributed_score_equals_one_process(ddp, runner):
    res = invoke(
        runner,
        [
            "score",
            str(ddp["work"] / "samples" / "samples.safetensors"),
            *SCORE,
            "--features",
            f"classifier:{ddp['clf']}",
        ],
    )
    assert res.exit_code == 0, res.output
    one, two = json.loads(res.stdout), json.loads(ddp["ranks"][0]["score"]["stdout"])
    assert {"inception", "fid", "kid", "precision", "modes", "sparsity"} <= one["metrics"].keys()
    for part in ("metrics", "ceiling"):  # the samples' scores and the real-data values
        assert one[part].keys() == two[part].keys()
        for k, v in one[part].items():
            assert math.isclose(two[part][k], v, rel_tol=1e-9, abs_tol=1e-12), (part, k, v, two[part][k])


# --- without launching ranks ---------------------------------------------------------------


def test_global_batch_must_split_evenly(monkeypatch):
    from sgan_cli import distributed
    from sgan_cli.errors import SganError

    monkeypatch.setattr(distributed, "_WORLD", distributed.World(0, 3, 0))
    with pytest.raises(SganError) as exc:
        distributed.check_divisible(16, "train.batch_size / --batch-size")
    assert (
        "the global batch 16 does not split evenly over 3 ranks" in exc.value.message and "e.g. 15" in exc.value.message
    )
    assert distributed.check_divisible(15, "x") == 5
    assert torch.equal(distributed.shard(torch.arange(15)), torch.arange(5))  # rank 0: rows 0…4


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}])
def test_impossible_torchrun_environment_is_one_message(monkeypatch, env):
    from sgan_cli import distributed
    from sgan_cli.errors import SganError

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SganError) as exc:
        distributed.from_env()
    assert "RANK" in exc.value.message or "WORLD_SIZE" in exc.value.message


@pytest.mark.parametrize(
    "command", [["encode", "digits", "--dict", "d.safetensors"], ["classifier", "digits"], ["learn-dict", "digits"]]
)
def test_one_process_commands_refuse_torchrun(runner, tmp_path, monkeypatch, command):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    msg = error_text(invoke(runner, command))
    assert f"sgan {command[0]} runs in one process, and this is one of 2 torchrun ranks" in msg
    assert list(tmp_path.iterdir()) == []


def test_global_batchnorm_is_batchnorm_in_one_process():
    from sgan_cli.distributed import sync_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    ref = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6))
    ref.load_state_dict(net.state_dict())
    net = sync_batchnorm(net, cuda=False)
    assert type(net[1]).__name__ == "GlobalBatchNorm" and net[1].weight is not None
    x = torch.randn(8, 4)
    assert torch.equal(net(x), ref(x)) and torch.equal(net[1].running_mean, ref[1].running_mean)
