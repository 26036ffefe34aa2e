"""A new user's first hour (issue 15), end to end through the CLI: defaults that fit the data
and device, ``--resume RUN``, the same data options everywhere, flags that read as flags,
JSON errors, score with a statistics file, data-root layouts, pictures of training."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import error_text, invoke

from sgan_cli.auto import resolve_arch
from sgan_cli.commands._progress import Estimate, PlainProgress
from sgan_cli.config import DataConfig, SganConfig
from sgan_cli.data import load_data

SMALL = [
    "--set",
    "model.g_width=32",
    "--set",
    "model.d_width=16",
    "--set",
    "model.e_width=8",
    "--set",
    "model.z_dim=8",
    "--batch-size",
    "16",
    "--set",
    "gan.critic_steps=1",
]
COMMANDS = ["data", "learn-dict", "train", "sample", "encode", "score", "classifier", "plot"]


def _json(res) -> dict:
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def dicts(tmp_path_factory):
    """A whole-image (32 atoms) and a 3×3 patch (16 atoms) digits dictionary, through the CLI."""
    from typer.testing import CliRunner

    root = tmp_path_factory.mktemp("dicts")
    runner = CliRunner()
    for name, extra in (
        ("whole", ["--atoms", "32"]),
        ("patch", ["--patch", "3", "--atoms", "16", "--max-samples", "5000"]),
    ):
        res = invoke(
            runner,
            [
                "learn-dict",
                "digits",
                *extra,
                "--set",
                "dict.passes=2",
                "--out",
                str(root / f"{name}.safetensors"),
                "--json",
            ],
        )
        assert res.exit_code == 0, res.output
    return root / "whole.safetensors", root / "patch.safetensors"


# --- 1. defaults that fit the data and the device -------------------------------------------------


def test_arch_auto_rules():
    """auto: mlp for whole-image atoms; dcgan generator with an mlp critic for patches on CPU,
    dcgan critic on GPU; dense: mlp on CPU, dcgan on GPU; an explicit choice is kept."""
    cases = [
        ((None, True, "cpu"), ("mlp", None)),
        ((None, True, "cuda"), ("mlp", None)),
        ((3, True, "cpu"), ("dcgan", "mlp")),
        ((3, True, "cuda"), ("dcgan", "dcgan")),
        ((None, False, "cpu"), ("mlp", None)),
        ((None, False, "cuda"), ("dcgan", None)),
    ]
    for (patch, sparse, device), (arch, critic) in cases:
        cfg = SganConfig()
        assert cfg.model.arch == "auto"
        why = resolve_arch(cfg, patch, sparse, device)
        assert (cfg.model.arch, cfg.model.critic_arch) == (arch, critic) and why
    cfg = SganConfig()
    cfg.model.arch = "dcgan"
    assert resolve_arch(cfg, None, False, "cpu") is None and cfg.model.arch == "dcgan"
    # under BCE the measurement picked Goyal's nets for a dense generator on a CPU, and only there
    for (patch, sparse, device), arch in (((None, False, "cpu"), "goyal"), ((None, True, "cpu"), "mlp")):
        cfg = SganConfig()
        cfg.gan.objective = "gan"
        why = resolve_arch(cfg, patch, sparse, device)
        assert cfg.model.arch == arch and ("under gan" in why) == (arch == "goyal")


def test_dense_bce_run_on_cpu_trains_goyals_nets(runner, tmp_path):
    """`sgan train --gan gan --dict none` on a CPU: auto picks Goyal's nets, says so, and they
    train on 8×8 digits end to end."""
    out = tmp_path / "bce"
    res = invoke(
        runner, ["train", "--data", "digits", "--gan", "gan", "--dict", "none", "--steps", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "arch auto → goyal: dense generator under gan on cpu" in res.stderr
    assert "arch: goyal" in (out / "config.yaml").read_text() and (out / "generator.safetensors").exists()


def test_dry_run_and_summary_name_the_chosen_arch(runner, tmp_path, dicts):
    whole, patch = dicts
    res = invoke(runner, ["train", "--dict", str(whole), "--dry-run"])
    assert res.exit_code == 0 and re.search(r"^  arch: mlp$", res.stdout, re.M)
    assert "arch auto → mlp: whole-image dictionary" in res.stderr
    res = invoke(runner, ["train", "--dict", str(patch), "--dry-run", "--json"])
    assert (_json(res)["model"]["arch"], _json(res)["model"]["critic_arch"]) == ("dcgan", "mlp")
    res = invoke(runner, ["train", "--dict", str(patch), "--arch", "dcgan", "--dry-run", "--json"])
    assert (_json(res)["model"]["arch"], _json(res)["model"]["critic_arch"]) == ("dcgan", None)  # explicit: kept
    res = invoke(
        runner, ["train", "--dict", str(whole), *SMALL, "--steps", "12", "--out", str(tmp_path / "r"), "--json"]
    )
    s = _json(res)
    assert (s["arch"], s["steps"], s["steps_run"]) == ("mlp", 12, 12) and s["arch_auto"].startswith(
        "whole-image dictionary"
    )
    assert "arch: mlp" in (tmp_path / "r" / "config.yaml").read_text()
    # the first metrics line comes early (step 10), before the 50-step log interval
    steps = [json.loads(line)["step"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 12]


def test_early_estimate_and_plain_progress_lines():
    t = [0.0]
    lines: list[str] = []
    est = Estimate("train", min_done=3, min_seconds=2.0, clock=lambda: t[0])
    assert est.update(1, 101) is None  # the first update starts the clock
    t[0] = 1.0
    assert est.update(4, 101) is None  # 3 steps but only 1 s
    t[0] = 2.0
    line = est.update(5, 101)  # 4 steps in 2 s: 0.5 s each, 96 to go
    assert line == "train: about 48 s to go (5/101 done, 0.5 s each)"
    t[0] = 3.0
    assert est.update(7, 101) is None  # once
    t = [100.0]
    p = PlainProgress("train", lambda text, **kw: lines.append(text), every=10.0, clock=lambda: t[0])
    t[0] = 105.0
    p(1, 20, {"loss_d": 0.5})
    t[0] = 107.0
    p(2, 20, {})  # within 10 s of the last line: silent
    t[0] = 115.0
    p(11, 20, {"loss_d": float("nan"), "support": 0.25})
    t[0] = 116.0
    p(20, 20, {})
    p(20, 20, {})  # the last line once
    assert lines[0] == "train 1/20 (5%) 0:00:05 elapsed  loss_d=0.5"
    assert lines[1] == "train: about 9 s to go (11/20 done, 1 s each)"
    assert lines[2] == "train 11/20 (55%) 0:00:15 elapsed, 0:00:09 left  support=0.25"
    assert lines[3] == "train 20/20 (100%) 0:00:16 elapsed" and len(lines) == 4


def test_progress_is_plain_lines_in_logs_and_absent_before_an_error(runner, tmp_path):
    """CliRunner's stderr is not a terminal: plain lines, no Rich bar; an error raised before
    any work shows no progress at all (it was a stray `score ━━━ 0/?`)."""
    res = invoke(runner, ["train", *SMALL, "--steps", "3", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0
    assert "train 3/3 (100%)" in res.stderr and "━" not in res.stderr
    res = invoke(runner, ["score", str(tmp_path / "missing"), "--ref", "digits"])
    assert res.exit_code == 2 and "score" not in error_text(res).split("Error:")[0] and "━" not in res.stderr


# --- 2. --resume RUN ------------------------------------------------------------------------------


def test_resume_takes_the_run_folder(runner, tmp_path):
    run = tmp_path / "run"
    assert invoke(runner, ["train", *SMALL, "--steps", "4", "--out", str(run)]).exit_code == 0
    res = invoke(runner, ["train", "--resume", str(run), "--steps", "6"])
    assert res.exit_code == 0, res.output
    assert "trained 2 steps (steps 5–6, resumed from step 4): dense, mlp, fp32" in " ".join(res.stdout.split())
    res = invoke(runner, ["train", "--out", str(run), "--resume", "--steps", "8", "--json"])  # the old form
    assert (_json(res)["steps"], _json(res)["steps_run"], _json(res)["resumed_from"]) == (8, 2, 6)
    res = invoke(runner, ["train", "--steps", "9", "--out", str(run), "--resume"])  # bare, last
    assert res.exit_code == 0 and "resumed from step 8" in res.stdout
    msg = error_text(invoke(runner, ["train", "--resume", str(run), "--out", str(tmp_path / "other"), "--steps", "10"]))
    assert f"--resume {run} and --out {tmp_path / 'other'} name two different run folders" in msg
    msg = error_text(invoke(runner, ["train", "--resume", str(run), "--steps", "10", "--gan", "hinge"]))
    assert "--gan would be ignored" in msg


# --- 3. the same data options on every command that reads data ------------------------------------


def test_every_data_command_has_the_data_options(runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    for cmd, opts in (("learn-dict", "--data-root --split --limit --image-size"),
                      ("train", "--data-root --split --limit --image-size"),
                      ("encode", "--data-root --split --limit --image-size"),
                      ("score", "--data-root --split --limit --image-size"),
                      ("classifier", "--data-root --limit --image-size")):  # fmt: skip
        text = invoke(runner, [cmd, "--help"]).stdout
        for opt in opts.split():
            assert re.search(rf"{opt}\b", text), (cmd, opt)


def test_train_image_size_and_split_and_their_fixes(runner, tmp_path):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, size in enumerate((8, 8, 12, 12)):
        Image.fromarray(np.full((size, size), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    msg = error_text(
        invoke(runner, ["train", "--data", str(folder), *SMALL, "--steps", "1", "--out", str(tmp_path / "a")])
    )
    assert "Fix: pass --image-size N to resize them all to N×N" in msg
    res = invoke(
        runner,
        [
            "train",
            "--data",
            str(folder),
            "--image-size",
            "8",
            *SMALL,
            "--steps",
            "1",
            "--out",
            str(tmp_path / "a"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    res = invoke(
        runner,
        [
            "train",
            "--split",
            "test",
            "--image-size",
            "16",
            *SMALL,
            "--steps",
            "1",
            "--out",
            str(tmp_path / "b"),
            "--dry-run",
            "--json",
        ],
    )
    assert (_json(res)["data"]["split"], _json(res)["data"]["image_size"]) == ("test", 16)
    res = invoke(
        runner, ["train", "--split", "test", "--image-size", "16", *SMALL, "--steps", "1", "--out", str(tmp_path / "b")]
    )
    assert res.exit_code == 0 and "image_size: 16" in (tmp_path / "b" / "config.yaml").read_text()
    msg = error_text(invoke(runner, ["train", "--split", "validation", "--steps", "1", "--out", str(tmp_path / "c")]))
    assert "unknown split 'validation'" in msg and "Fix: use train or test" in msg


def test_dictionary_size_fix_is_a_real_option(runner, tmp_path, dicts):
    whole, _ = dicts  # an 8×8 dictionary on 16×16 images: the fix names --image-size, which train has
    msg = error_text(
        invoke(
            runner,
            ["train", "--dict", str(whole), "--image-size", "16", *SMALL, "--steps", "1", "--out", str(tmp_path / "a")],
        )
    )
    assert "--image-size 8" in msg
    assert (
        invoke(
            runner,
            ["train", "--dict", str(whole), "--image-size", "8", *SMALL, "--steps", "1", "--out", str(tmp_path / "a")],
        ).exit_code
        == 0
    )


# --- 4. flags read as flags -----------------------------------------------------------------------


def test_help_shows_flags_as_flags_one_default_style_and_usage_names(runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per option
    usage = {"data": "[OPTIONS] NAME", "learn-dict": "[OPTIONS] [DATA]", "train": "[OPTIONS]",
             "sample": "[OPTIONS] RUN_OR_GENERATOR", "encode": "[OPTIONS] INPUT", "score": "[OPTIONS] [SAMPLES]",
             "classifier": "[OPTIONS] DATA", "plot": "[OPTIONS] RUN..."}  # fmt: skip
    for cmd in COMMANDS:
        text = invoke(runner, [cmd, "--help"]).stdout
        assert "<bool>" not in text and "[default:" not in text, cmd
        assert usage[cmd] in text, (cmd, text[:300])
        assert "{" not in text.split("\n", 3)[1], cmd
    assert "--set dict.atoms=100" in invoke(runner, ["learn-dict", "--help"]).stdout
    assert "gan.lr_g" not in invoke(runner, ["learn-dict", "--help"]).stdout  # a key learn-dict does not read


def test_a_flag_given_a_value_is_an_error(runner):
    for args in (
        ["learn-dict", "--json", "true"],
        ["train", "--dry-run", "--force", "false"],
        ["score", "--ceiling", "yes"],
    ):
        res = invoke(runner, args)
        assert res.exit_code == 2, args
        assert f"{args[-2]} is a flag and takes no value" in " ".join(res.output.split())


# --- 5. --json errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,what",
    [
        (["learn-dict", "nothing-here", "--json"], "unknown data set 'nothing-here'"),
        (["train", "--gan", "wgan-xx", "--dry-run", "--json"], "unknown objective 'wgan-xx'"),
        (["sample", "no-such-run", "--json"], "no-such-run"),
        (["encode", "digits", "--json"], "encode needs exactly one of --reconstructor and --dict"),
        (["score", "--json"], "no SAMPLES to score"),
        (["classifier", "nothing-here", "--json"], "unknown data set 'nothing-here'"),
        (["plot", "no-such-run", "--json"], "no-such-run holds no metrics.jsonl"),
        (["data", "nothing-here", "--json"], "'nothing-here' is not one of them"),
    ],
)
def test_json_errors_are_one_object_on_stdout(runner, args, what, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default output paths (dictionary.safetensors, …) must not exist
    res = invoke(runner, args)
    assert res.exit_code == 2
    err = _json(res)  # the whole of stdout is one JSON object
    assert set(err) == {"error", "what", "where", "fix", "exit_code"} and err["exit_code"] == 2
    assert what in err["what"] and err["fix"] and err["error"].startswith(err["what"].rstrip("."))


def test_json_usage_errors_are_json_too(runner):
    for args in (["train", "--json", "--no-such-option"], ["learn-dict", "--json", "true"], ["sample", "--json"]):
        res = invoke(runner, args)
        err = _json(res)
        assert res.exit_code == err["exit_code"] == 2, args
        assert err["where"].endswith(args[0]) and err["fix"]
    err = _json(invoke(runner, ["learn-dict", "--json", "true"]))
    assert (
        err["what"].startswith("--json is a flag") and err["fix"] == "write --json alone to turn it on, or leave it out"
    )


# --- 6. score with a statistics file --------------------------------------------------------------


def test_score_with_stats_uses_their_extractor(runner, tmp_path):
    clf = tmp_path / "clf.safetensors"
    assert invoke(runner, ["classifier", "digits", "--epochs", "1", "--limit", "400", "--out", str(clf)]).exit_code == 0
    stats = tmp_path / "stats.safetensors"
    assert (
        invoke(
            runner,
            [
                "score",
                "--ref",
                "digits",
                "--ref-limit",
                "300",
                "--features",
                f"classifier:{clf}",
                "--save-stats",
                str(stats),
            ],
        ).exit_code
        == 0
    )
    res = invoke(runner, ["score", "digits", "--limit", "200", "-m", "fid", "--ref", str(stats), "--json"])
    assert res.exit_code == 0, res.output
    out = _json(res)
    assert (
        out["extractor"]["kind"] == "classifier"
        and out["extractor"]["source"] == str(clf)
        and out["metrics"]["fid"] >= 0
    )
    shutil.move(clf, tmp_path / "moved.safetensors")
    msg = error_text(invoke(runner, ["score", "digits", "-m", "fid", "--ref", str(stats)]))
    assert (
        f"the statistics in {stats} were made with the classifier {clf}" in msg and "which is not at that path" in msg
    )
    assert "Fix: pass --features classifier:FILE with that classifier file" in msg
    res = invoke(
        runner,
        [
            "score",
            "digits",
            "--limit",
            "200",
            "-m",
            "fid",
            "--ref",
            str(stats),
            "--features",
            f"classifier:{tmp_path / 'moved.safetensors'}",
        ],
    )
    assert res.exit_code == 0


# --- 7. data-root layouts -------------------------------------------------------------------------


def _tiny_mnist(raw: Path) -> None:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def idx(path, arr):
        path.write_bytes(
            np.array([0, 0, 8, arr.ndim], dtype=np.uint8).tobytes()
            + np.array(arr.shape, dtype=">i4").tobytes()
            + arr.astype(np.uint8).tobytes()
        )

    for split, n in (("train", 6), ("t10k", 4)):
        idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))


def test_data_root_may_name_the_raw_folder(runner, tmp_path, offline_root):
    root = tmp_path / "mnist-5k"
    _tiny_mnist(root / "MNIST" / "raw")
    for given in (root, root / "MNIST", root / "MNIST" / "raw"):
        data = load_data(DataConfig(name="mnist", root=str(given), split="test"))
        assert data.images.shape == (4, 1, 28, 28), given
    before = sorted(str(p) for p in root.rglob("*"))
    # the same files in a folder not laid out as torchvision wants: the message names the folder
    flat = tmp_path / "flat"
    shutil.copytree(root / "MNIST" / "raw", flat)
    msg = error_text(invoke(runner, ["learn-dict", "mnist", "--data-root", str(flat)]))
    assert f"{flat} holds the mnist files, but torchvision reads them from MNIST/raw/ inside the data root" in msg
    assert f"Fix: move them into {flat / 'MNIST' / 'raw'} and pass --data-root {flat}" in msg
    assert sorted(str(p) for p in root.rglob("*")) == before


def test_offline_download_creates_no_folders(runner, offline_root, tmp_path):
    msg = error_text(
        invoke(
            runner,
            [
                "train",
                "--data",
                "mnist",
                "--data-root",
                str(offline_root / "MNIST" / "raw"),
                "--steps",
                "1",
                "--out",
                str(tmp_path / "r"),
            ],
        )
    )
    assert (
        "could not be downloaded" in msg
        and "Fix: put these files in" in msg
        and "--data-root DIR" in msg
        and "DIR/MNIST/raw holds them" in msg
    )
    assert list(offline_root.iterdir()) == []  # torchvision's download would have made MNIST/raw/MNIST/raw
    missing = tmp_path / "not-yet"
    error_text(invoke(runner, ["learn-dict", "cifar10", "--data-root", str(missing)]))
    assert not missing.exists()


# --- 8. smaller points ----------------------------------------------------------------------------


def test_score_option_names(runner, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    text = invoke(runner, ["score", "--help"]).stdout
    assert "--is-splits" in text and "--pr-k" in text and "--splits " not in text and not re.search(r"--k\s", text)


def test_sample_ema_error_names_the_train_option(runner, tmp_path):
    assert invoke(runner, ["train", *SMALL, "--steps", "1", "--out", str(tmp_path / "r")]).exit_code == 0
    msg = error_text(invoke(runner, ["sample", str(tmp_path / "r"), "--ema", "--out", str(tmp_path / "s")]))
    assert "Fix: leave out ema, or train with train.ema > 0 (sgan train --ema 0.999)" in msg


def test_demo_outputs_are_ignored_by_git():
    ignored = (Path(__file__).parent.parent / ".gitignore").read_text().split()
    for name in ("/dictionary.safetensors", "/atoms.png", "/runs/", "/samples/", "/digits-classifier.safetensors"):
        assert name in ignored


# --- pictures of training -------------------------------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_curves_png_in_every_run_and_sgan_plot(runner, tmp_path, dicts):
    pytest.importorskip("matplotlib")
    whole, _ = dicts
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        invoke(runner, ["train", *SMALL, "--steps", "4", "--set", "train.log_every=2", "--out", str(a)]).exit_code == 0
    )
    assert (
        invoke(
            runner,
            ["train", "--dict", str(whole), *SMALL, "--steps", "4", "--set", "train.log_every=2", "--out", str(b)],
        ).exit_code
        == 0
    )
    w, h = _png_size(a / "curves.png")
    assert w > 600 and h > 250
    res = invoke(runner, ["plot", str(a), str(b), "--out", str(tmp_path / "cmp.png"), "--json"])
    assert res.exit_code == 0 and _json(res)["entries"] == [2, 2]
    w2, _ = _png_size(tmp_path / "cmp.png")
    assert w2 >= 2 * 300  # two runs side by side
    msg = error_text(invoke(runner, ["plot", str(a), "--out", str(tmp_path / "cmp.png")]))
    assert "already exists" in msg


def test_curves_panels_follow_the_logged_keys(tmp_path):
    pytest.importorskip("matplotlib")
    from sgan_cli.curves import draw_curves, panels_for

    entries = [
        {
            "step": s,
            "loss_d": 1.0 / s,
            "loss_g": -1.0,
            "gp": 0.1,
            "support": 0.5,
            "support_target": 0.1,
            "lambda": 0.3 + s / 100,
            "images_per_s": 1e3,
        }
        for s in (10, 20, 30)
    ]
    assert panels_for([entries]) == [
        "losses",
        "gradient penalty",
        "support fraction of the codes",
        "soft threshold λ",
        "speed",
    ]
    assert panels_for([[{"step": 1, "loss_d": 1.0, "recon_g": float("nan")}]]) == ["losses"]
    draw_curves([("run", entries)], tmp_path / "c.png")
    assert _png_size(tmp_path / "c.png")[0] > 0


def test_without_matplotlib_training_runs_and_says_so(runner, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    res = invoke(runner, ["train", *SMALL, "--steps", "2", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0 and not (tmp_path / "r" / "curves.png").exists()
    assert "no curves.png: drawing it needs matplotlib (pip install 'sgan[plots]'" in " ".join(res.stderr.split())
    msg = error_text(invoke(runner, ["plot", str(tmp_path / "r"), "--out", str(tmp_path / "c.png")]))
    assert (
        "drawing training curves needs matplotlib, which is not installed" in msg
        and "Fix: pip install 'sgan[plots]'" in msg
    )


def test_tensorboard_missing_is_a_clear_error(runner, tmp_path, monkeypatch):
    import sgan_cli.curves as curves

    monkeypatch.setattr(curves, "tensorboard_available", lambda: False)
    msg = error_text(invoke(runner, ["train", *SMALL, "--steps", "1", "--tensorboard", "--out", str(tmp_path / "r")]))
    assert "--tensorboard needs the tensorboard package" in msg and "Fix: pip install tensorboard" in msg
    assert not (tmp_path / "r").exists()


def test_tensorboard_logs_scalars_and_grids(runner, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "r"
    res = invoke(
        runner,
        [
            "train",
            *SMALL,
            "--steps",
            "4",
            "--set",
            "train.log_every=2",
            "--set",
            "train.grid_every=2",
            "--tensorboard",
            "--out",
            str(run),
        ],
    )
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss_d")] == [2, 4]
    assert "train/images_per_s" in acc.Tags()["scalars"] and [e.step for e in acc.Images("samples")] == [2, 4]


def test_main_bounds_openmp_spinning_and_waits_passively_beside_other_work_unless_the_user_chose(monkeypatch):
    import sys

    from sgan_cli import cli

    # (environment, other processes running) → what sgan adds before torch loads OpenMP
    spin, passive = {"GOMP_SPINCOUNT": str(cli.SPIN_COUNT)}, {"OMP_WAIT_POLICY": "PASSIVE"}
    for env, others, expected in (
        ({}, 0, spin),
        ({}, 1, passive),
        ({}, 7, passive),
        ({"OMP_NUM_THREADS": "1"}, 0, spin),
        ({"LOCAL_WORLD_SIZE": "1"}, 0, spin),
        ({"LOCAL_WORLD_SIZE": "x"}, 0, spin),
        ({"LOCAL_WORLD_SIZE": "2"}, 0, passive),
        ({"WORLD_SIZE": "4"}, 0, passive),
        ({"LOCAL_WORLD_SIZE": "2", "OMP_WAIT_POLICY": "ACTIVE"}, 0, {}),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, 3, {}),
        ({"GOMP_SPINCOUNT": "0"}, 0, {}),
        ({"GOMP_SPINCOUNT": "50000"}, 2, {}),
        ({"SGAN_OPENMP": "keep"}, 2, {}),
    ):
        assert cli.openmp_environment(env, others) == expected, (env, others)
    for name in ("LOCAL_WORLD_SIZE", "WORLD_SIZE", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SGAN_OPENMP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", ["sgan", "--version"])
    for others, variable, value in ((0, "GOMP_SPINCOUNT", str(cli.SPIN_COUNT)), (2, "OMP_WAIT_POLICY", "PASSIVE")):
        monkeypatch.setattr(cli, "others_running", lambda n=others: n)
        for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(SystemExit):
            cli.main()
        assert cli.os.environ.get(variable) == value
        (other,) = {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} - {variable}
        assert other not in cli.os.environ


def test_others_running_counts_a_busy_process_and_ignores_short_lived_ones(tmp_path):
    import subprocess
    import sys

    from sgan_cli import cli

    # the kernel's "running/total" field, read several times: the fewest, less this process
    stat = tmp_path / "loadavg"
    reads = iter(["0.5 0.4 0.3 4/200 99", "0.5 0.4 0.3 2/200 99", "0.5 0.4 0.3 3/200 99"])

    class Reads:
        def __fspath__(self) -> str:
            stat.write_text(next(reads))
            return str(stat)

    assert cli.others_running(samples=3, gap_s=0, stat=Reads()) == 1
    stat.write_text("0.00 0.00 0.00 1/90 12")
    assert cli.others_running(samples=2, gap_s=0, stat=str(stat)) == 0
    stat.write_text("garbled")
    assert cli.others_running(stat=str(stat)) == 0
    assert cli.others_running(stat=str(tmp_path / "absent")) == 0
    if not Path("/proc/loadavg").exists():
        return
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert cli.others_running() >= 1  # the busy loop is running in every read
    finally:
        busy.kill()
        busy.wait()


def test_tests_run_in_an_empty_folder_outside_the_checkout():
    """The README's demo leaves dictionary.safetensors, runs/ and samples/ in the checkout; a test
    that wrote default outputs there (or read them) would fail or pass by the demo's leftovers."""
    checkout = Path(__file__).resolve().parents[1]
    here = Path.cwd().resolve()
    assert list(here.iterdir()) == []
    assert checkout not in (here, *here.parents)


# --- issue 24: the card's pipeline as written -----------------------------------------------------


def test_the_card_pipeline_runs_in_order_and_says_what_it_chose(runner, tmp_path, monkeypatch, offline_root):
    """learn-dict → train (no --dict) → sample → score, in one folder, as the card has them:
    train picks up ./dictionary.safetensors and its data and says so up front; score with
    Inception offline names the weights file and the classifier route, which then works."""
    from sgan_cli.inception import WEIGHTS_NAME

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no Inception weights, no network
    res = invoke(runner, ["learn-dict", "digits", "--sparsity", "0.1", "--set", "dict.passes=2"])
    assert res.exit_code == 0, res.output
    assert "learning 64 atoms (square: K = 64 values per signal; --atoms K for fewer" in res.stderr
    res = invoke(runner, ["train", "--gan", "wgan-gp", "--recon", *SMALL, "--steps", "4"])
    assert res.exit_code == 0, res.output
    first = res.stderr.splitlines()[0]
    assert first == (
        "sparse generator over dictionary.safetensors (digits, 8×8, 64 atoms); "
        "found in this folder (--dict none for the dense baseline)"
    )
    assert "trained 4 steps: sparse, mlp" in res.stdout and Path("runs/default/generator.safetensors").is_file()
    assert invoke(runner, ["sample", "runs/default", "--out", "samples/", "-n", "30"]).exit_code == 0
    for args in (["score", "samples/", "--metric", "inception"], ["score", "samples/", "-m", "fid", "--ref", "digits"]):
        msg = error_text(invoke(runner, args))
        assert WEIGHTS_NAME in msg and str(tmp_path / "torch-home" / "hub" / "checkpoints") in msg
        assert "sgan classifier DATA --out classifier.safetensors" in msg
        assert "--features classifier:classifier.safetensors" in msg
    assert invoke(runner, ["classifier", "digits", "--epochs", "1", "--limit", "400"]).exit_code == 0
    res = invoke(
        runner,
        ["score", "samples/", "--metric", "inception", "--features", "classifier:classifier.safetensors", "--json"],
    )
    assert res.exit_code == 0 and 1 <= _json(res)["metrics"]["inception"] <= 10  # IS over 10 classes


def test_train_says_dense_up_front_and_how_to_make_it_sparse(runner, tmp_path):
    res = invoke(runner, ["train", *SMALL, "--steps", "1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0 and "dense" in res.stdout
    assert res.stderr.splitlines()[0] == (
        "dense baseline (no --dict, and no dictionary.safetensors in this folder): the generator paints pixels; "
        "for a sparse one, learn a dictionary first (sgan learn-dict DATA) or pass --dict FILE"
    )


def test_train_takes_the_data_the_dictionary_was_learned_on(runner, tmp_path, monkeypatch):
    """The dictionary's record (data name, split, image size) fills what the user did not give;
    --dict none, a recipe, or other data keep ./dictionary.safetensors out."""
    monkeypatch.setenv("SGAN_DATA", str(tmp_path / "data"))
    learned = [
        "learn-dict",
        "digits",
        "--split",
        "test",
        "--image-size",
        "6",
        "--atoms",
        "12",
        "--set",
        "dict.passes=2",
    ]
    assert invoke(runner, learned).exit_code == 0  # ./dictionary.safetensors
    res = invoke(runner, ["train", *SMALL, "--dry-run", "--json"])
    data = _json(res)["data"]
    assert (data["name"], data["split"], data["image_size"], _json(res)["train"]["dict"]) == (
        "digits",
        "test",
        6,
        "dictionary.safetensors",
    )
    assert res.stderr.splitlines()[0] == (
        "sparse generator over dictionary.safetensors (digits, 6×6, 12 atoms); data as the dictionary was "
        "learned: digits, test split, --image-size 6; found in this folder (--dict none for the dense baseline)"
    )
    res = invoke(runner, ["train", *SMALL, "--split", "train", "--dry-run", "--json"])  # a given key wins
    assert (_json(res)["data"]["split"], _json(res)["data"]["image_size"]) == ("train", 6)
    # and the run trains on it: 6×6 test digits
    res = invoke(runner, ["train", *SMALL, "--steps", "2", "--out", str(tmp_path / "r"), "--json"])
    assert res.exit_code == 0 and _json(res)["sparse"]
    assert "split: test" in (tmp_path / "r" / "config.yaml").read_text()
    res = invoke(runner, ["train", *SMALL, "--dict", "none", "--dry-run", "--json"])
    assert _json(res)["train"]["dict"] is None and _json(res)["data"]["image_size"] is None
    assert res.stderr.splitlines()[0] == "dense baseline (--dict none): the generator paints pixels"
    res = invoke(runner, ["train", *SMALL, "--data", "mnist", "--dry-run", "--json"])
    assert _json(res)["train"]["dict"] is None and _json(res)["data"]["name"] == "mnist"
    assert res.stderr.splitlines()[0].startswith(
        "dense baseline: dictionary.safetensors in this folder was learned on digits, not mnist"
    )
    recipe = tmp_path / "dense.yaml"
    recipe.write_text("data:\n  name: digits\ntrain:\n  steps: 3\n")
    res = invoke(runner, ["train", "--recipe", str(recipe), *SMALL, "--dry-run", "--json"])
    assert _json(res)["train"]["dict"] is None and _json(res)["data"]["split"] == "train"
    assert res.stderr.splitlines()[0].startswith("dense baseline (the recipe names no dictionary)")
    res = invoke(runner, ["train", "--recipe", str(recipe), "--dict", "dictionary.safetensors", *SMALL, "--dry-run"])
    assert res.stderr.splitlines()[0].startswith("sparse generator over dictionary.safetensors (digits, 6×6, 12 atoms)")
    assert "split: test" in res.stdout  # the recipe names the data set, not the split: the record gives it


def test_dry_run_names_missing_inputs_and_estimates_the_time(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("SGAN_DATA", str(tmp_path / "data"))
    recipe = tmp_path / "spgan.yaml"
    recipe.write_text(
        "data:\n  name: cifar10\ndict:\n  atoms: 16\n  patch: 3\nmodel:\n  arch: dcgan\n  g_width: 16\n"
        "  d_width: 8\n  z_dim: 8\ngan:\n  critic_steps: 1\ntrain:\n  dict: dicts/c10.safetensors\n"
        "  steps: 100000\n  batch_size: 8\n"
    )
    res = invoke(runner, ["train", "--recipe", str(recipe), "--dry-run"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.stderr.split())
    assert "sparse generator over dicts/c10.safetensors (not there yet)" in text
    assert "missing: the dictionary dicts/c10.safetensors does not exist: make it with sgan learn-dict" in text
    assert f"missing: the cifar10 data set is not in {tmp_path / 'data' / 'cifar-10-batches-py'}" in text
    assert f"sgan data cifar10 --data-root {tmp_path / 'data'}" in text
    m = re.search(r"estimate: about (.+?) for 100,000 steps on cpu \(([\d.e+-]+) s a step, timed over 2 steps", text)
    assert m and "random atoms standing in for the missing dictionary" in text, text
    unit = {"days": 86400, "h": 3600, "min": 60, "s": 1}
    parts = re.findall(r"(\d+) (days|h|min|s)\b", m.group(1))
    total = sum(int(n) * unit[u] for n, u in parts)
    # the step time is shown to 3 digits, the total to its last unit
    assert total == pytest.approx(float(m.group(2)) * 100_000, rel=0.006, abs=unit[parts[-1][1]])
    assert not (tmp_path / "data").exists() and not Path("runs").exists()  # a dry run writes nothing


def test_the_estimate_is_near_the_measured_pace(tmp_path):
    """Time per step estimated from 2 timed steps (after a warm-up step), against a 40-step
    training run of the same nets (within a factor of 6: this machine is shared; the estimate
    is of the order)."""
    from sgan_cli.config import load_config
    from sgan_cli.train_estimate import estimate_run
    from sgan_cli.training import run_training

    cfg = load_config(None, [s for s in SMALL if "=" in s] + ["train.batch_size=16", "train.steps=40"])
    est = estimate_run(cfg)
    assert est.steps_timed == 2 and est.total_seconds == pytest.approx(est.seconds_per_step * 40)
    assert (est.channels, est.size, est.stand_in_dictionary) == (1, 8, False) and cfg.model.arch == "auto"
    result = run_training(cfg, tmp_path / "r")
    measured = result.seconds / 40
    assert measured / 6 < est.seconds_per_step < measured * 6, (est.seconds_per_step, measured)
    one = estimate_run(cfg, budget_s=0.0)  # past its budget after the first step: that step alone
    assert one.steps_timed == 1 and one.seconds_per_step > 0
    slow = estimate_run(cfg, slow_s=0.0)  # a first step slower than slow_s is timed alone (no warm-up step)
    assert slow.steps_timed == 1 and slow.seconds_per_step > 0


def test_dry_run_without_estimate_times_nothing(runner, monkeypatch):
    import sgan_cli.train_estimate as train_estimate

    def refuse(*args, **kwargs):
        raise AssertionError("--no-estimate ran the nets")

    monkeypatch.setattr(train_estimate, "estimate_run", refuse)
    res = invoke(runner, ["train", "--data", "digits", "--dict", "none", "--dry-run", "--no-estimate"])
    assert res.exit_code == 0 and "estimate" not in res.stderr and "objective:" in res.stdout


def test_dry_run_estimates_nothing_that_cannot_fit(runner, monkeypatch):
    """The estimate runs the nets, so it is refused by the run's own memory checks: here the
    pairwise distances of minibatch discrimination (64² × 4096 × 8 floats, four copies: 2.1 GB)
    on a machine said to have 1 GB. The dry run still prints the configuration (exit 0)."""
    import sgan_cli.validation as validation

    monkeypatch.setattr(validation, "available_memory", lambda: 1e9)
    res = invoke(runner, ["train", "--minibatch-disc", "4096", "--dry-run"])
    assert res.exit_code == 0 and "minibatch_disc: 4096" in res.stdout
    assert (
        "no time estimate: minibatch discrimination over 64 critic inputs with 4096 kernels of 8 would need about"
        in " ".join(res.stderr.split())
    )


# --- issue 24: getting data -----------------------------------------------------------------------


def test_sgan_data_offline_names_the_files_and_the_folder(runner, offline_root):
    msg = error_text(invoke(runner, ["data", "mnist", "--data-root", str(offline_root)]))
    raw = offline_root / "MNIST" / "raw"
    assert f"the mnist data set is not in {raw} and could not be downloaded" in msg
    assert f"Fix: put these files in {raw}: train-images-idx3-ubyte, train-labels-idx1-ubyte" in msg
    assert list(offline_root.iterdir()) == []


def test_sgan_data_shows_a_prepared_folder(runner, tmp_path, offline_root):
    root = tmp_path / "prepared"
    _tiny_mnist(root / "MNIST" / "raw")
    res = invoke(runner, ["data", "mnist", "--data-root", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = _json(res)
    assert out["images"] == {"train": 6, "test": 4} and out["downloaded"] is False
    assert out["folder"] == str(root / "MNIST" / "raw") and out["data_root"] == str(root)
    raw = root / "MNIST" / "raw"
    assert {f["name"]: f["size"] for f in out["files"]} == {p.name: p.stat().st_size for p in raw.iterdir()}
    res = invoke(runner, ["data", "stacked-mnist", "--data-root", str(raw)])  # the raw folder itself, as elsewhere
    text = " ".join(res.stdout.split())
    assert res.exit_code == 0 and "6 train, 4 test" in text and "(already there)" in text
    assert f"train-images-idx3-ubyte ({(16 + 6 * 784) / 1000:.1f} KB)" in text  # an idx header and 6 images
    res = invoke(runner, ["data", "digits", "--json"])
    counts = {split: len(load_data(DataConfig(split=split))) for split in ("train", "test")}
    assert _json(res)["images"] == counts and _json(res)["folder"] is None


# --- issue 24: help, curves, progress -------------------------------------------------------------


def test_help_metavars_are_one_style(runner, monkeypatch):
    import typer

    from sgan_cli.cli import app

    monkeypatch.setenv("COLUMNS", "300")
    group = typer.main.get_command(app)
    values = {"N", "FLOAT", "PATH", "NAME", "FILE", "DIR", "DATA", "RUN", "[RUN]", "KEY=VALUE", "METRIC=VALUE"}
    values.add("[latent|vae]")
    for name in COMMANDS:
        cmd = group.commands[name]
        cmd.__init__  # noqa: B018 (the command is built: its params hold their metavars)
        for p in cmd.params:
            if p.param_type_name == "option":
                assert (p.metavar == "") if p.is_flag else (p.metavar in values), (name, p.opts, p.metavar)
        text = invoke(runner, [name, "--help"]).stdout
        assert not re.search(r"<\w", text), (name, re.findall(r"<[^>]*>", text))
    text = invoke(runner, ["--help"]).stdout
    assert not re.search(r"<\w", text) and re.search(r"--version\s+Print the version", text)
    panel = [line for line in text[text.index("Commands") :].splitlines() if line.startswith("│")]
    assert [line.split()[1] for line in panel] == COMMANDS  # one line each: no description broken over lines
    assert all(line.rstrip(" │").endswith(".") for line in panel)
    assert "pip install 'sgan[plots]'" in " ".join(invoke(runner, ["plot", "--help"]).stdout.split())


def test_curves_are_titled_with_the_run_and_keys_sit_outside_the_lines(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import sgan_cli.curves as curves

    staging = tmp_path / "run" / ".sgan-staging-9xyiitzh"
    staging.mkdir(parents=True)
    entries = [
        {"step": s, "loss_d": 1.0 / s, "loss_g": -1.0, "gp": 0.1, "recon_e": 1.0, "recon_g": 0.5, "images_per_s": 1e3}
        for s in (10, 20, 30)
    ]
    (staging / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    drawn = []
    monkeypatch.setattr(curves, "draw_curves", lambda runs, path: drawn.append([label for label, _ in runs]))
    curves.CurvesHook().draw(staging)
    assert drawn == [[str(tmp_path / "run")]]
    for runs in ([("run", entries)], [("a", entries), ("b", entries)]):
        fig = curves.curves_figure(runs)
        fig.draw_without_rendering()
        keyed = {ax.get_title().splitlines()[-1] for ax in fig.axes if ax.get_legend() is not None}
        assert keyed == {"losses", "third player"}  # panels of one line (gp, speed) are named by their title
        for ax in fig.axes:
            if ax.get_legend() is not None:
                assert not ax.get_legend().get_window_extent().overlaps(ax.get_window_extent()), ax.get_title()
    assert fig._suptitle is None and curves.curves_figure([("runs/x", entries)])._suptitle.get_text() == "runs/x"


def test_plain_progress_shows_logged_values_once():
    lines: list[str] = []
    t = [0.0]
    p = PlainProgress("train", lambda text, **kw: lines.append(text), every=10.0, clock=lambda: t[0])
    for step, loss in ((1, 0.5), (100, 0.5), (200, 0.5), (300, 0.25)):
        t[0] = step / 10 + (10 if step > 1 else 0) * step / 100
        p(step, 1000, {"loss_d": loss})
    shown = [line.split("  ", 1)[1] if "  " in line else "" for line in lines if not line.startswith("train:")]
    assert shown == ["loss_d=0.5", "", "", "loss_d=0.25"]


@pytest.fixture(scope="module")
def _module_cwd():
    return Path.cwd().resolve()


def test_module_fixtures_run_outside_the_checkout_too(_module_cwd):
    """A module-scoped fixture (a shared run, a classifier) is made before the function's own
    empty folder exists; it must not run in the checkout either."""
    checkout = Path(__file__).resolve().parents[1]
    assert checkout not in (_module_cwd, *_module_cwd.parents)
