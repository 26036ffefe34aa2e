"""``sgan learn-dict`` end to end through Typer's CliRunner, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sgan_cli.cli import app
from sgan_cli.contracts import load_dictionary


def _run(runner, args):
    return runner.invoke(app, args, catch_exceptions=False)


def test_help_and_version_do_not_import_torch():
    code = "import sys; from sgan_cli.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "sgan_cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("sgan ")


def test_learn_dict_digits_json(runner, tmp_path):
    out = tmp_path / "dictionary.safetensors"
    res = _run(runner, ["learn-dict", "digits", "--sparsity", "0.1", "--atoms", "32", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n_atoms"] == 32 and summary["dim"] == 64
    assert 0.08 <= summary["achieved_sparsity"] <= 0.12
    assert (tmp_path / "atoms.png").exists()
    d = load_dictionary(out)
    assert d.atoms.shape == (32, 64) and d.patch is None
    assert d.file.config["dict"]["atoms"] == 32 and d.file.meta["dataset"] == "digits"
    assert float(d.file.meta["achieved_sparsity"]) == pytest.approx(summary["achieved_sparsity"])
    from sgan_cli import native

    # which engine coded: the compiled kernels here, or the torch engine and why not
    assert (summary["engine"], summary["engine_note"]) == native.engine("cpu")
    assert summary["engine"] == ("compiled" if native.library() is not None else "torch")


def test_loading_the_kernels_is_not_counted_as_learning_or_coding_time(runner, tmp_path, monkeypatch):
    import time

    from sgan_cli import native

    if native.library() is None:
        pytest.skip(f"compiled kernels unavailable here: {native.reason()}")
    real = native._load

    def slow_load(path):  # as on a cold disk: the load is not what a summary times
        time.sleep(3.0)
        return real(path)

    monkeypatch.setattr(native, "_load", slow_load)
    for args in (
        ["learn-dict", "digits", "--atoms", "16", "--out", str(tmp_path / "d.safetensors"), "--json"],
        [
            "encode",
            "digits",
            "--limit",
            "50",
            "--dict",
            str(tmp_path / "d.safetensors"),
            "--out",
            str(tmp_path / "l.safetensors"),
            "--json",
        ],
    ):
        monkeypatch.setattr(native, "_tried", False)  # as in a new process: loaded on first use
        monkeypatch.setattr(native, "_lib", None)
        t = time.perf_counter()
        res = _run(runner, args)
        assert res.exit_code == 0, res.output
        summary = json.loads(res.stdout)
        assert time.perf_counter() - t > 3.0 and summary["seconds"] < 2.5, summary["seconds"]
        assert summary["engine"] == "compiled"


def test_learn_dict_table_names_the_engine_and_why_not_compiled(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("SGAN_NATIVE", "0")
    res = _run(runner, ["learn-dict", "digits", "--atoms", "16", "--out", str(tmp_path / "d.safetensors")])
    assert res.exit_code == 0, res.output
    assert "coders" in res.stdout and "torch (disabled by SGAN_NATIVE=0)" in res.stdout


def test_learn_dict_patches_table(runner, tmp_path):
    out = tmp_path / "patches.safetensors"
    res = _run(
        runner, ["learn-dict", "digits", "--patch", "3", "--atoms", "20", "--max-samples", "5000", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "achieved" in res.stdout
    assert (tmp_path / "patches_atoms.png").exists()
    d = load_dictionary(out)
    assert d.atoms.shape == (20, 9) and d.patch == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["imagenet"], "unknown data set 'imagenet'"),
        (["digits", "--sparsity", "1.5"], "--sparsity must be in (0, 1), got 1.5"),
        (["digits", "--sparsity", "0"], "--sparsity must be in (0, 1), got 0.0"),
        (["digits", "--atoms", "0"], "--atoms must be in [1, 1048576], got 0"),
        (["digits", "--patch", "12"], "dict.patch 12 is larger than the 8×8 images"),
        (["digits", "--set", "dict.bogus=1"], "unknown configuration key 'dict.bogus'"),
    ],
)
def test_user_errors(runner, tmp_path, args, message):
    out = tmp_path / "d.safetensors"
    res = _run(runner, ["learn-dict", *args, "--out", str(out)])
    assert res.exit_code == 2
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "d_atoms.png").exists()


def test_existing_output_needs_force(runner, tmp_path):
    out = tmp_path / "d.safetensors"
    out.write_bytes(b"keep me")
    res = _run(runner, ["learn-dict", "digits", "--out", str(out), "--limit", "100"])
    assert res.exit_code == 2 and "already exists" in res.stderr
    assert out.read_bytes() == b"keep me"


def test_missing_mnist_offline(runner, offline_root, tmp_path):
    res = _run(
        runner, ["learn-dict", "mnist", "--data-root", str(offline_root), "--out", str(tmp_path / "d.safetensors")]
    )
    assert res.exit_code == 2
    assert "train-images-idx3-ubyte" in res.stderr and "Traceback" not in res.output


def test_unreadable_folder(runner, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png")
    res = _run(runner, ["learn-dict", str(folder), "--out", str(tmp_path / "d.safetensors")])
    assert res.exit_code == 2 and "cannot read the image" in " ".join(res.stderr.split())


def test_identical_images_are_refused_not_learned(runner, tmp_path):
    """50 identical black images used to give 64 atoms of one direction, 'sparsity 0.0000
    achieved (target 0.1)', exit 0."""
    from PIL import Image

    folder = tmp_path / "black"
    folder.mkdir()
    for i in range(50):
        Image.new("L", (8, 8)).save(folder / f"{i:03d}.png")
    out = tmp_path / "d.safetensors"
    res = runner.invoke(app, ["learn-dict", str(folder), "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    msg = " ".join(res.stderr.split())
    assert f"the 50 signals of {folder} are all the same (once their mean is removed)" in msg
    assert not out.exists() and not (tmp_path / "d_atoms.png").exists()
    # without the mean term they are one direction: learned, with a warning that says so
    res = runner.invoke(app, ["learn-dict", str(folder), "--no-mean", "--atoms", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "the data cannot support 4 atoms: 1 distinct signal for 4 atoms" in " ".join(res.stderr.split())


def test_too_few_signals_are_warned_about_and_figures_say_what_they_measure(runner, tmp_path):
    """``--limit 3 --atoms 64`` reported 'signals 3 (3 held out)' and a held-out PSNR of 131 dB
    when nothing was held out."""
    out = tmp_path / "d.safetensors"
    res = _run(runner, ["learn-dict", "digits", "--limit", "3", "--atoms", "64", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    warning = " ".join(res.stderr.split())
    assert "Warning: the data cannot support 64 atoms: 3 distinct signals for 64 atoms" in warning
    assert summary["warnings"] and "3 distinct signals" in summary["warnings"][0]
    assert summary["n_signals"] == 3 and summary["n_heldout"] == 0 and summary["measured_on"] == "training"
    assert load_dictionary(out).file.meta["measured_on"] == "training"
    res = _run(runner, ["learn-dict", "digits", "--limit", "3", "--atoms", "64", "--out", str(out), "--force"])
    table = " ".join(res.stdout.split())
    assert "3 (none held out)" in table and "dB (training signals: none held out)" in table
    assert "(held out)" not in table
    # enough distinct signals: no warning, figures of held-out signals
    res = _run(runner, ["learn-dict", "digits", "--atoms", "16", "--out", str(out), "--force", "--json"])
    assert "Warning" not in res.stderr and json.loads(res.stdout)["measured_on"] == "held-out"


def test_check_signals_on_closed_cases():
    """Equal signals (their float32 mean off by an ulp), one image at many brightnesses (rank
    1), and varied signals with an over-complete dictionary (no warning)."""
    import torch

    from sgan_cli.dictionary_job import centre_signals, check_signals
    from sgan_cli.errors import SganError

    gen = torch.Generator().manual_seed(0)
    with pytest.raises(SganError, match="are all the same"):
        check_signals(centre_signals(torch.full((50, 64), 0.3137))[0], 64, True, "gray")
    brightness = torch.rand(500, 1, generator=gen) * torch.rand(1, 64, generator=gen)
    (warning,) = check_signals(brightness, 64, False, "ramp")
    assert "the signals span only 1 of their 64 dimensions (as they are)" in warning and "--atoms 1" in warning
    varied = centre_signals(torch.rand(2000, 64, generator=gen) * 2 - 1)[0]
    assert check_signals(varied, 256, True, "noise") == []  # 4× over-complete on full-rank data: fine
