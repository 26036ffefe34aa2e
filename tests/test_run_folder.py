"""Outputs that survive --force, failures, kill -9, Ctrl-C and a second process (issue 12, kinds 7–10, 12).

Each test is an example a careless or unlucky user met: the CLI end to end where they meet
it, with the message asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import error_text, invoke
from safetensors.torch import load_file

from sgan_cli import outputs
from sgan_cli.cli import app
from sgan_cli.contracts import read_file, write_file

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--arch",
    "mlp",
    "--batch-size",
    "8",
    "--set",
    "model.g_width=16",
    "--set",
    "model.d_width=8",
    "--set",
    "model.z_dim=4",
]


def train(runner, out, *args):
    return runner.invoke(app, ["train", "--out", str(out), *TINY, *args])


def resume(runner, out, steps, *args):
    return runner.invoke(app, ["train", "--out", str(out), "--resume", "--steps", str(steps), *args])


def step_of(path: Path) -> int:
    return int(read_file(path, ("sgan.checkpoint", "sgan.generator")).meta["step"])


def logged_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != outputs.LOCK_NAME)


@pytest.fixture()
def digits_dict(tmp_path):
    atoms = torch.nn.functional.normalize(torch.randn(16, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    path = tmp_path / "dictionary.safetensors"
    write_file(
        path,
        "sgan.dictionary",
        {"atoms": atoms},
        meta={"channels": "1", "image_size": "8", "patch": "null", "stride": "1"},
    )
    return path


# ------------------------------------------------------------------ kind 7: --force, failures, kill -9


def test_force_replaces_every_output_of_the_old_run(runner, tmp_path):
    out = tmp_path / "run"
    old = ["--steps", "6", "--recon", "--set", "train.grid_every=2", "--set", "train.log_every=1"]
    assert train(runner, out, *old).exit_code == 0
    assert (out / "reconstructor.safetensors").exists() and len(list((out / "grids").iterdir())) == 3
    (out / "notes.txt").write_text("mine")  # not sgan's: kept
    (out / "curves.png").write_bytes(b"old")  # another output of the old run
    res = train(runner, out, "--steps", "3", "--force", "--set", "train.grid_every=3", "--set", "train.log_every=3")
    assert res.exit_code == 0, res.stderr
    assert not (out / "reconstructor.safetensors").exists()  # encode would pair it with the new generator
    assert (
        not (out / "curves.png").exists() or (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    )  # the new run's, when matplotlib draws one
    assert logged_steps(out) == [3]  # not appended to the old run's log
    assert sorted(p.name for p in (out / "grids").iterdir()) == ["step-000003.png"]
    assert step_of(out / "checkpoint.safetensors") == step_of(out / "generator.safetensors") == 3
    assert (out / "notes.txt").read_text() == "mine"
    assert hidden_leftovers(out) == []


def test_failed_force_keeps_the_old_run_and_a_failed_new_run_leaves_nothing(runner, tmp_path, monkeypatch):
    import sgan_cli.training as tr

    out = tmp_path / "run"
    assert train(runner, out, "--steps", "4", "--recon").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != outputs.LOCK_NAME}
    real = tr.critic_loss
    monkeypatch.setattr(tr, "critic_loss", lambda o, r, f: real(o, r, f) * float("nan"))
    res = train(runner, out, "--steps", "30", "--force", "--set", "train.save_every=10")
    assert "training diverged at step 1" in error_text(res)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != outputs.LOCK_NAME} == before
    assert hidden_leftovers(out) == []
    # a new run that fails leaves no folder, no config.yaml
    res = train(runner, tmp_path / "new", "--steps", "3")
    assert "training diverged" in error_text(res)
    assert not (tmp_path / "new").exists()


def test_saves_never_put_the_generator_ahead_of_the_checkpoint(runner, tmp_path, monkeypatch):
    """kill -9 between two renames of a save: the checkpoint goes first."""
    out = tmp_path / "run"
    assert train(runner, out, "--steps", "5").exit_code == 0
    real_replace = os.replace
    renamed = []

    def dies_after_first(src, dst):
        if Path(dst).parent == out and Path(dst).suffix == ".safetensors":
            renamed.append(Path(dst).name)
            if len(renamed) == 2:
                raise KeyboardInterrupt  # the process dies here
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", dies_after_first)
    assert resume(runner, out, 10).exit_code == 130
    assert renamed[0] == "checkpoint.safetensors"
    assert step_of(out / "checkpoint.safetensors") == 10 and step_of(out / "generator.safetensors") == 5


def _dead_pid() -> str:
    """The pid of a process that has exited (a killed writer's, for its temp file names)."""
    return subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()


def test_stale_temp_files_of_killed_writers_are_removed(runner, tmp_path):
    out = tmp_path / "run"
    assert train(runner, out, "--steps", "2").exit_code == 0
    dead = _dead_pid()
    stale = out / f".generator.safetensors.{outputs._HOST_TAG}-{dead}-abc123.tmp"
    live = out / f".critic.safetensors.{outputs._HOST_TAG}-{os.getpid()}-abc123.tmp"  # a writer still running
    legacy = out / ".checkpoint.safetensors.k2j4h5g1.tmp"  # mkstemp naming, from before
    for p in (stale, live, legacy):
        p.write_bytes(b"\0" * 1000)
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    assert resume(runner, out, 3).exit_code == 0
    assert not stale.exists() and not legacy.exists() and live.exists()
    # single-file outputs clean their own leftovers too
    target = tmp_path / "dictionary.safetensors"
    stale2 = tmp_path / f".dictionary.safetensors.{outputs._HOST_TAG}-{dead}-zz.tmp"
    stale2.write_bytes(b"x")
    write_file(
        target,
        "sgan.dictionary",
        {"atoms": torch.eye(64)[:16]},
        meta={"channels": "1", "image_size": "8", "patch": "null", "stride": "1"},
    )
    assert not stale2.exists()


def test_resumed_log_continues_from_the_checkpoint(runner, tmp_path, monkeypatch):
    """Killed at step 7 with a checkpoint at 5: steps 6 and 7 are redone, logged once."""
    import sgan_cli.training as tr

    out = tmp_path / "run"
    cadence = ["--set", "train.log_every=1", "--set", "train.save_every=5", "--set", "train.grid_every=1"]
    real = tr.generator_loss
    calls = {"n": 0}

    def killed_in_step_8(objective, scores):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(objective, scores)

    monkeypatch.setattr(tr, "generator_loss", killed_in_step_8)
    assert train(runner, out, "--steps", "10", *cadence).exit_code == 130
    monkeypatch.setattr(tr, "generator_loss", real)
    assert step_of(out / "checkpoint.safetensors") == 5 and logged_steps(out) == [1, 2, 3, 4, 5, 6, 7]
    assert resume(runner, out, 10).exit_code == 0
    assert logged_steps(out) == list(range(1, 11))
    assert len(list((out / "grids").iterdir())) == 10


def test_killed_sample_force_keeps_the_old_samples(runner, tmp_path, monkeypatch):
    import sgan_cli.sampling as sm

    run, folder = tmp_path / "run", tmp_path / "samples"
    assert train(runner, run, "--steps", "2").exit_code == 0
    assert runner.invoke(app, ["sample", str(run), "-n", "6", "--out", str(folder)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != outputs.LOCK_NAME}
    real = sm.generate

    def dies_midway(g, z, batch_size, *, keep_codes, on_batch=None, progress=None):
        real(g, z[:2], 1, keep_codes=keep_codes, on_batch=on_batch)  # two new PNGs written, then killed
        raise KeyboardInterrupt

    monkeypatch.setattr(sm, "generate", dies_midway)
    assert runner.invoke(app, ["sample", str(run), "-n", "4", "--out", str(folder), "--force"]).exit_code == 130
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != outputs.LOCK_NAME} == before
    assert hidden_leftovers(folder) == []
    # a new folder: nothing of the killed sample is left to be scored as a data set
    assert runner.invoke(app, ["sample", str(run), "-n", "4", "--out", str(tmp_path / "fresh")]).exit_code == 130
    assert not (tmp_path / "fresh").exists()
    monkeypatch.setattr(sm, "generate", real)
    res = runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(folder), "--force"])
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in folder.glob("*.png")) == ["000000.png", "000001.png", "000002.png", "grid.png"]
    assert read_file(folder / "samples.safetensors", "sgan.samples").tensors["images"].shape[0] == 3


def test_a_swap_killed_half_way_reads_as_incomplete_and_is_finished_later(runner, tmp_path, monkeypatch):
    """Where the one-step exchange is not available (another OS or file system), the swap is
    several renames guarded by a marker."""
    monkeypatch.setattr(outputs, "_may_exchange", lambda folder: False)
    run, folder = tmp_path / "run", tmp_path / "samples"
    assert train(runner, run, "--steps", "2").exit_code == 0
    assert runner.invoke(app, ["sample", str(run), "-n", "5", "--out", str(folder)]).exit_code == 0
    real_replace = os.replace
    moved = []

    def dies_in_the_swap(src, dst):
        if Path(src).parent.name.startswith(outputs.STAGING_PREFIX) and Path(dst).parent == folder:
            moved.append(Path(dst).name)
            if len(moved) == 2:
                raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", dies_in_the_swap)
    assert runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(folder), "--force"]).exit_code == 130
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert (folder / outputs.PUBLISHING).exists() and not (folder / "samples.safetensors").exists()
    res = runner.invoke(app, ["score", str(folder), "--metric", "sparsity"])
    assert f"the folder {folder} is incomplete" in error_text(res)
    # the next sgan process that locks the folder completes the swap it found
    res = runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(tmp_path / "other")])
    assert res.exit_code == 0
    with outputs.locked_folder(folder, "test"):
        pass
    assert not (folder / outputs.PUBLISHING).exists() and hidden_leftovers(folder) == []
    assert sorted(p.name for p in folder.glob("0*.png")) == ["000000.png", "000001.png", "000002.png"]
    same_tensors(folder / "samples.safetensors", tmp_path / "other" / "samples.safetensors")


# ------------------------------------------------------------------ kind 8: Ctrl-C, then --resume


def test_ctrl_c_stops_at_a_step_boundary_and_resumes_bit_for_bit(runner, tmp_path):
    """A real SIGINT to `sgan train` in a subprocess; its resumed run equals an uninterrupted one."""
    out = tmp_path / "run"
    args = [
        *TINY,
        "--gan",
        "wgan-gp",
        "--set",
        "gan.critic_steps=2",
        "--set",
        "train.save_every=5",
        "--set",
        "train.grid_every=100000",
    ]
    threads = str(torch.get_num_threads())  # the same reductions as this process's runs
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": threads,
        "OMP_WAIT_POLICY": "PASSIVE",
        "COLUMNS": "200",
    }
    cmd = [sys.executable, "-m", "sgan_cli", "train", "--out", str(out), "--steps", "100000", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.safetensors").exists():  # the first checkpoint (step 5) is in
            assert proc.poll() is None and time.time() < deadline, (
                proc.stderr.read() if proc.poll() is not None else "timeout"
            )
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    stopped = step_of(out / "checkpoint.safetensors")
    message = " ".join(stderr.split())
    assert f"stopped after step {stopped} of 100000; the checkpoint is saved" in message
    assert f"sgan train --resume {out} --steps 100000" in message
    assert "Traceback" not in stderr
    assert step_of(out / "generator.safetensors") == stopped
    target = stopped + 3
    assert resume(runner, out, target).exit_code == 0
    straight = tmp_path / "straight"
    assert runner.invoke(app, ["train", "--out", str(straight), "--steps", str(target), *args]).exit_code == 0
    for name in ("checkpoint.safetensors", "generator.safetensors"):
        same_tensors(out / name, straight / name)


def test_stop_request_before_the_first_step_writes_nothing(tmp_path):
    from sgan_cli.config import load_config
    from sgan_cli.training import run_training

    cfg = load_config(None, ["train.steps=5", "model.arch=mlp", "model.g_width=8", "model.d_width=8"])
    res = run_training(cfg, tmp_path / "run", stop=lambda: True)
    assert res.interrupted and res.steps == 0 and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ kind 9: one process per folder


def _holder(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock (as a running sgan train or sample would)."""
    code = (
        "import sys, time; from pathlib import Path; from sgan_cli.outputs import acquire_lock; "
        "acquire_lock(Path(sys.argv[1]), 'sgan train'); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_live_run_folder_is_refused_and_a_dead_holders_lock_is_taken_over(runner, tmp_path):
    out = tmp_path / "run"
    assert train(runner, out, "--steps", "2").exit_code == 0
    holder = _holder(out)
    try:
        for extra in ([], ["--force"]):
            msg = error_text(train(runner, out, "--steps", "2", *extra))
            assert (
                f"the folder {out} is in use by another sgan process (pid {holder.pid} on " in msg
                and "sgan train, since" in msg
            )
        assert f"pid {holder.pid}" in error_text(resume(runner, out, 4))
        samples = tmp_path / "samples"
        samples.mkdir()
        holder2 = _holder(samples)
        try:
            msg = error_text(runner.invoke(app, ["sample", str(out), "-n", "2", "--out", str(samples)]))
            assert f"is in use by another sgan process (pid {holder2.pid}" in msg
        finally:
            holder2.kill()
            holder2.wait()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without unlocking: the kernel drops its flock
        holder.wait()
    assert resume(runner, out, 4).exit_code == 0
    assert step_of(out / "checkpoint.safetensors") == 4


# ------------------------------------------------------------------ kind 10: resume uses what it records


def test_a_copied_run_resumes_without_its_dictionary_file(runner, tmp_path, digits_dict):
    import shutil

    out = tmp_path / "run"
    assert train(runner, out, "--steps", "4", "--dict", str(digits_dict)).exit_code == 0
    straight = tmp_path / "straight"
    assert train(runner, straight, "--steps", "7", "--dict", str(digits_dict)).exit_code == 0
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, copy)
    # another dictionary at the recorded path is not mixed in: the checkpoint's atoms are used
    other = torch.nn.functional.normalize(torch.randn(16, 64), dim=1)
    write_file(
        digits_dict,
        "sgan.dictionary",
        {"atoms": other},
        meta={"channels": "1", "image_size": "8", "patch": "null", "stride": "1"},
        force=True,
    )
    assert resume(runner, out, 7).exit_code == 0
    same_tensors(out / "generator.safetensors", straight / "generator.safetensors")
    digits_dict.unlink()  # the copy resumes without any dictionary file
    res = resume(runner, copy, 7)
    assert res.exit_code == 0, res.stderr
    same_tensors(copy / "generator.safetensors", straight / "generator.safetensors")


def test_resume_to_fewer_steps_is_refused_and_rewrites_nothing(runner, tmp_path):
    out = tmp_path / "run"
    assert train(runner, out, "--steps", "6").exit_code == 0
    files = {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in out.iterdir()
        if p.is_file() and p.name != outputs.LOCK_NAME
    }
    msg = error_text(resume(runner, out, 3))
    assert f"the run in {out} is already at step 6, so --steps 3 would go back" in msg and "give --steps above 6" in msg
    res = resume(runner, out, 6)
    assert res.exit_code == 0 and "already at step 6: nothing to do" in " ".join(res.stderr.split())
    assert {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in out.iterdir()
        if p.is_file() and p.name != outputs.LOCK_NAME
    } == files


def test_resume_refuses_data_that_changed(runner, tmp_path, monkeypatch):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i in range(12):
        Image.fromarray(
            (torch.rand(8, 8, generator=torch.Generator().manual_seed(i)) * 255).byte().numpy(), mode="L"
        ).save(images / f"{i}.png")
    out = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # a relative data path is recorded as an absolute one
    assert train(runner, out, "--steps", "2", "--data", "images").exit_code == 0
    assert f"name: {images}" in (out / "config.yaml").read_text()
    Image.fromarray(torch.zeros(8, 8, dtype=torch.uint8).numpy(), mode="L").save(images / "3.png")
    msg = error_text(resume(runner, out, 4))
    assert f"the training data {images} changed since the run in {out} started" in msg


# ------------------------------------------------------------------ kind 12 and kind 4: permissions


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_follow_the_umask(runner, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert train(runner, out, "--steps", "2").exit_code == 0
        assert runner.invoke(app, ["sample", str(out), "-n", "2", "--out", str(tmp_path / "s")]).exit_code == 0
    finally:
        os.umask(old)
    files = [
        out / "checkpoint.safetensors",
        out / "generator.safetensors",
        out / "config.yaml",
        out / "metrics.jsonl",
        tmp_path / "s" / "000000.png",
        tmp_path / "s" / "samples.safetensors",
    ]
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    assert (out / "grids").stat().st_mode & 0o777 == 0o777 & ~umask


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(runner, tmp_path, monkeypatch):
    import tempfile

    import sgan_cli.training as tr

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    loaded = []
    monkeypatch.setattr(tr, "new_state", lambda *a, **k: loaded.append(1))
    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)  # what a read-only folder answers
    msg = error_text(train(runner, tmp_path / "run", "--steps", "2"))
    assert f"cannot write into {tmp_path / 'run'}: Permission denied" in msg and loaded == []
    msg = error_text(
        runner.invoke(app, ["learn-dict", "digits", "--atoms", "8", "--out", str(tmp_path / "d.safetensors")])
    )
    assert f"cannot write into {tmp_path}: Permission denied" in msg


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused_before_the_work(runner, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert "cannot write into" in error_text(train(runner, ro / "run", "--steps", "2"))
    finally:
        ro.chmod(0o755)


def test_a_file_system_without_locks_is_named_and_sgan_no_lock_runs_unlocked(runner, tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    msg = error_text(train(runner, tmp_path / "run", "--steps", "2"))
    assert "the file system does not support file locks (No locks available)" in msg and "SGAN_NO_LOCK=1" in msg
    monkeypatch.setenv("SGAN_NO_LOCK", "1")
    assert train(runner, tmp_path / "run", "--steps", "2").exit_code == 0


def test_numbered_pngs_and_a_grid_without_the_samples_file_are_not_read_as_complete(runner, tmp_path):
    """What an older sgan left when killed in `sample --force`: score must not accept it."""
    run, folder = tmp_path / "run", tmp_path / "samples"
    assert train(runner, run, "--steps", "2").exit_code == 0
    assert runner.invoke(app, ["sample", str(run), "-n", "4", "--out", str(folder)]).exit_code == 0
    (folder / "samples.safetensors").unlink()
    msg = error_text(runner.invoke(app, ["score", str(folder), "--metric", "sparsity"]))
    assert f"the folder {folder} looks like an incomplete sgan sample output" in msg and "--force" in msg
    (folder / "grid.png").unlink()  # a plain folder of PNGs reads as images
    from sgan_cli.config import DataConfig
    from sgan_cli.data import load_data

    assert len(load_data(DataConfig(name=str(folder)))) == 4


def test_resume_and_force_together_are_refused(runner, tmp_path):
    out = tmp_path / "run"
    msg = error_text(invoke(runner, ["train", "--resume", str(out), "--force", "--steps", "2"]))
    assert "--resume continues the run and --force starts it over: they cannot go together" in msg
    assert not out.exists()


# ------------------------------------------------------------------ issue 25: nothing left behind


def test_a_refused_resume_leaves_the_folder_as_it_was(runner, tmp_path):
    """``--resume`` of a folder that is not a run was refused, but left a new .sgan.lock in it."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    msg = error_text(resume(runner, folder, 5))
    assert f"there is no run to resume in {folder}" in msg
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert "there is no run to resume" in error_text(resume(runner, tmp_path / "absent", 5))
    assert not (tmp_path / "absent").exists()


def test_readers_remove_what_killed_writers_left_and_never_read_it(runner, tmp_path):
    out = tmp_path / "run"
    assert train(runner, out, "--steps", "2").exit_code == 0
    dead = _dead_pid()
    stale = out / f".generator.safetensors.{outputs._HOST_TAG}-{dead}-abc123.tmp"
    stale.write_bytes(b"\0" * 100)  # a torn generator: never to be read
    res = runner.invoke(app, ["sample", str(out), "-n", "3", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert not stale.exists()  # the next command that touched the folder (a reader) removed it


def test_a_swapped_folder_keeps_its_mode_its_other_files_and_a_link_stays_a_link(runner, tmp_path):
    run, folder = tmp_path / "run", tmp_path / "samples"
    assert train(runner, run, "--steps", "2").exit_code == 0
    assert runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(folder)]).exit_code == 0
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("mine")
    os.chmod(folder, 0o750)
    inode = folder.stat().st_ino
    assert runner.invoke(app, ["sample", str(run), "-n", "2", "--out", str(folder), "--force"]).exit_code == 0
    assert folder.stat().st_ino != inode  # a new folder, exchanged in whole
    assert folder.stat().st_mode & 0o777 == 0o750 and (folder / "notes" / "a.txt").read_text() == "mine"
    assert sorted(p.name for p in folder.glob("0*.png")) == ["000000.png", "000001.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    link = tmp_path / "link"
    link.symlink_to(folder)
    assert runner.invoke(app, ["sample", str(run), "-n", "1", "--out", str(link), "--force"]).exit_code == 0
    assert link.is_symlink() and sorted(p.name for p in folder.glob("0*.png")) == ["000000.png"]


def test_readers_remove_an_abandoned_staging_folder_beside_but_not_a_live_one(runner, tmp_path, digits_dict):
    import fcntl

    run, folder = tmp_path / "run", tmp_path / "samples"
    assert train(runner, run, "--steps", "2", "--dict", str(digits_dict)).exit_code == 0
    assert runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(folder)]).exit_code == 0
    dead, live = tmp_path / ".samples.sgan-staging-dead0000", tmp_path / ".samples.sgan-staging-live0000"
    for staging in (dead, live):  # as a killed sample (dead) and a running one (live) leave them
        staging.mkdir()
        (staging / outputs.LOCK_NAME).touch()
        (staging / "000000.png").write_bytes(b"new")
    fd = os.open(live / outputs.LOCK_NAME, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert runner.invoke(app, ["score", str(folder), "--metric", "sparsity"]).exit_code == 0
        assert not dead.exists() and live.exists()
    finally:
        os.close(fd)
    assert runner.invoke(app, ["score", str(folder), "--metric", "sparsity"]).exit_code == 0
    assert not live.exists()
