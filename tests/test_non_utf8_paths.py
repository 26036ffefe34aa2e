"""Paths that are not UTF-8 (issue 25, kind 6): any bytes but ``/`` and NUL make a Linux file name.

learn-dict, encode and score --save-stats used to do all their work and then fail with a
traceback while writing metadata; train --out lost the run while drawing curves.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import invoke

from sgan_cli.contracts import read_file
from sgan_cli.errors import printable

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes: Linux")

TINY = ["--arch", "mlp", "--batch-size", "8", "--set", "model.g_width=16", "--set", "model.d_width=8"]


def test_printable_writes_the_bytes_of_a_name_that_is_not_utf8():
    assert printable(os.fsdecode(b"/data/\xff\xfe/x.png")) == "/data/\\xff\\xfe/x.png"
    assert printable("données ü") == "données ü"


def test_every_command_works_in_a_folder_named_by_bytes(runner, tmp_path):
    folder = tmp_path / os.fsdecode(b"\xff\xfe")
    folder.mkdir()
    shown = str(folder).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    d = folder / "dictionary.safetensors"
    res = invoke(runner, ["learn-dict", "digits", "--limit", "300", "--atoms", "16", "--out", str(d)])
    assert res.exit_code == 0, res.output
    lat = folder / "latents.safetensors"
    res = invoke(runner, ["encode", "digits", "--dict", str(d), "--limit", "20", "--out", str(lat)])
    assert res.exit_code == 0, res.output
    assert read_file(lat, "sgan.latents").meta["dictionary"] == f"{shown}/dictionary.safetensors"
    clf = folder / "clf.safetensors"
    res = invoke(runner, ["classifier", "digits", "--epochs", "1", "--limit", "200", "--out", str(clf)])
    assert res.exit_code == 0, res.output
    stats = folder / "stats.safetensors"
    args = ["score", "digits", "-m", "fid", "--ref", "digits", "--features", f"classifier:{clf}"]
    res = invoke(runner, [*args, "--limit", "100", "--save-stats", str(stats)])
    assert res.exit_code == 0, res.output
    assert read_file(stats, "sgan.stats").meta["extractor_source"].startswith(shown)
    run = folder / "run"
    res = invoke(runner, ["train", "--out", str(run), "--dict", str(d), "--steps", "3", *TINY])
    assert res.exit_code == 0, res.output
    assert (run / "checkpoint.safetensors").is_file() and (run / "curves.png").is_file()
    res = invoke(runner, ["sample", str(run), "-n", "4", "--out", str(folder / "samples")])
    assert res.exit_code == 0, res.output
    assert read_file(folder / "samples" / "samples.safetensors", "sgan.samples").meta["generator"].startswith(shown)


def test_the_command_line_prints_such_a_path_under_a_utf8_locale(tmp_path):
    """A real process, whose stdout is strict UTF-8: the summary names the file by its bytes."""
    folder = tmp_path / os.fsdecode(b"\xff\xfe")
    folder.mkdir()
    out = os.path.join(os.fsencode(folder), b"d.safetensors")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    args = [b"-m", b"sgan_cli", b"learn-dict", b"digits", b"--limit", b"200", b"--atoms", b"8", b"--out", out]
    res = subprocess.run([os.fsencode(sys.executable), *args], capture_output=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert b"Traceback" not in res.stderr and b"\\xff\\xfe" in res.stdout
    assert os.path.isfile(out)
