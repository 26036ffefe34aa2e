"""kill -9 at any moment of every command that writes (issue 25, kinds 1 and 2).

Each command first writes its outputs once (the old outputs), then is run again with --force
and other settings and killed with SIGKILL at seeded random moments of its work. After every
kill the outputs must be the old ones, intact, or complete new ones — read back by sgan's own
readers — and never a mix; the next run must succeed, leave no temp files or staging folders
behind, and make the very outputs a killed run could leave as new.

The commands run in forked children of the test process (torch already imported), so a kill
lands in the command's work rather than in Python's start-up. ``SGAN_SLOW_TESTS=1`` kills
more often (the default keeps the module to a few seconds per command).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from sgan_cli import outputs
from sgan_cli.contracts import content_hash, read_file

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="fork and kill -9")

KILLS = 10 if os.environ.get("SGAN_SLOW_TESTS") == "1" else 2
TINY = ["--arch", "mlp", "--batch-size", "8", "--set", "model.g_width=16", "--set", "model.d_width=8"]
TINY += ["--set", "model.z_dim=4", "--set", "train.log_every=1", "--set", "train.grid_every=2"]


def run(args: list[str], kill_after: float | None = None, die: Callable[[], None] | None = None) -> tuple[int, float]:
    """``sgan ARGS`` in a forked child: (exit status or -signal, seconds). ``kill_after``: SIGKILL
    it after that many seconds; ``die``: called in the child first (to arm a kill from inside)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            sys.stdout = sys.stderr = open(os.devnull, "w")
            torch.set_num_threads(1)  # the parent's OpenMP threads do not exist here
            if die is not None:
                die()
            from sgan_cli.cli import app

            code = app(args, standalone_mode=False) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: B036
            code = 71
        finally:
            os._exit(code)
    done, status = 0, 0
    if kill_after is not None:
        while not done and time.perf_counter() - start < kill_after:
            done, status = os.waitpid(pid, os.WNOHANG)  # finished before the kill?
            time.sleep(0.002)
        if not done:
            os.kill(pid, signal.SIGKILL)
    if not done:
        _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, time.perf_counter() - start


def visible(folder: Path) -> dict[str, bytes]:
    """name → content of the files a reader of ``folder`` sees (hidden names are sgan's own):
    their bytes, or for safetensors files their metadata and tensors (the header's key order
    varies from process to process)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            data = p.read_bytes()
            if p.suffix == ".safetensors":
                with safe_open(str(p), "pt") as f:
                    tensors = {k: f.get_tensor(k) for k in f.keys()}
                    data = json.dumps([f.metadata(), content_hash(tensors)], sort_keys=True).encode()
            found[str(rel)] = data
    return found


def leftovers(folder: Path) -> list[str]:
    """sgan's temp files and staging folders in and beside ``folder`` (the lock file is not one)."""
    inside = [p.name for p in folder.rglob(".*") if p.name != outputs.LOCK_NAME]
    beside = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]
    return sorted(inside + beside)


def kill_anywhere(
    old: list[str], new: list[str], folder: Path, check: Callable[[], None], seed: int, picture: str | None = None
) -> None:
    """Write the old outputs, kill ``new`` at random moments (checking after each kill that
    ``folder`` holds the old outputs or complete new ones), then run ``new`` to the end.

    ``picture``: the picture of the data file beside it (atoms.png, reconstructions.png): the
    old one is removed before the data file is renamed in and the new one renamed in after it,
    so a kill may leave the old or the new data file without a picture, never beside the
    picture of the other one."""
    code, seconds = run(old)
    assert code == 0, f"{old} exited {code}"
    check()
    before = visible(folder)
    rng = random.Random(seed)
    states = []
    for _ in range(KILLS):
        code, _ = run(new, kill_after=rng.uniform(0.05, 1.2) * seconds)
        assert code in (0, -signal.SIGKILL), f"{new} exited {code}"
        check()  # sgan's readers read what is there: old or new, never torn
        states.append(visible(folder))
    code, _ = run(new)
    assert code == 0, f"{new} exited {code} after the kills"
    check()
    after = visible(folder)
    assert after != before and leftovers(folder) == []
    allowed = [before, after]
    if picture is not None:
        allowed += [{k: v for k, v in s.items() if k != picture} for s in (before, after)]
    for state in states:  # each was the old outputs, or already the new ones, never a mix
        assert state in allowed, [
            (
                name,
                "old" if state.get(name) == before.get(name) else "new" if state.get(name) == after.get(name) else "?",
            )
            for name in sorted(set(state) | set(before))
        ]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A dictionary, a run and a classifier for the commands that read them, made in this
    process with every command run once: the children then start with sgan's lazy imports
    done and the compiled sparse coders built, so each codes with the same engine and a
    new output is the same bytes every time."""
    from typer.testing import CliRunner

    from sgan_cli.cli import app

    root = tmp_path_factory.mktemp("base")
    d, clf, run_dir = root / "dictionary.safetensors", root / "clf.safetensors", root / "run"
    commands = [
        ["learn-dict", "digits", "--limit", "300", "--atoms", "16", "--out", str(d)],
        ["train", "--out", str(run_dir), "--dict", str(d), "--steps", "2", *TINY],
        ["classifier", "digits", "--epochs", "1", "--limit", "100", "--out", str(clf)],
        ["sample", str(run_dir), "-n", "4", "--out", str(root / "s")],
        ["encode", "digits", "--dict", str(d), "--limit", "4", "--out", str(root / "l.safetensors")],
        ["score", "digits", "-m", "fid", "--ref", "digits", "--features", f"classifier:{clf}", "--limit", "20"],
    ]
    for args in commands:
        res = CliRunner().invoke(
            app, [*args, "--save-stats", str(root / "st.safetensors")] if args[0] == "score" else args
        )
        assert res.exit_code == 0, res.output
    return {"dict": d, "run": run_dir, "clf": clf}


def test_learn_dict(tmp_path, base):
    out = tmp_path / "out"
    d = out / "dictionary.safetensors"
    args = ["learn-dict", "digits", "--limit", "300", "--atoms", "16", "--out", str(d)]

    def check():
        read_file(d, "sgan.dictionary")  # its picture may be missing (a kill between the renames)

    kill_anywhere(args, [*args, "--seed", "1", "--force"], out, check, seed=1, picture="atoms.png")


def test_encode(tmp_path, base):
    out = tmp_path / "out"
    lat = out / "latents.safetensors"
    args = ["encode", "digits", "--dict", str(base["dict"]), "--limit", "40", "--out", str(lat)]

    def check():
        read_file(lat, "sgan.latents")  # its picture may be missing (a kill between the renames)

    kill_anywhere(args, [*args, "--limit", "50", "--force"], out, check, seed=2, picture="reconstructions.png")


def test_classifier(tmp_path, base):
    out = tmp_path / "out"
    clf = out / "clf.safetensors"
    args = ["classifier", "digits", "--epochs", "1", "--limit", "100", "--out", str(clf)]
    kill_anywhere(args, [*args, "--seed", "1", "--force"], out, lambda: read_file(clf, "sgan.classifier"), seed=3)


def test_score_save_stats(tmp_path, base):
    out = tmp_path / "out"
    stats = out / "stats.safetensors"
    args = ["score", "digits", "-m", "fid", "--ref", "digits", "--features", f"classifier:{base['clf']}"]
    args += ["--limit", "60", "--save-stats", str(stats)]
    check = lambda: read_file(stats, "sgan.stats")  # noqa: E731
    kill_anywhere([*args, "--ref-limit", "100"], [*args, "--ref-limit", "120", "--force"], out, check, seed=4)


def test_sample_force(tmp_path, base):
    from sgan_cli.config import DataConfig
    from sgan_cli.data import load_data

    out = tmp_path / "samples"
    args = ["sample", str(base["run"]), "--out", str(out)]

    def check():  # read as a data set, the folder is one complete set of samples
        images = load_data(DataConfig(name=str(out))).images
        f = read_file(out / "samples.safetensors", "sgan.samples")
        assert torch.equal(images, f.tensors["images"])
        pngs = sorted(p.name for p in out.glob("0*.png"))
        assert pngs == [f"{i:06d}.png" for i in range(images.shape[0])] and (out / "grid.png").is_file()

    kill_anywhere([*args, "-n", "120"], [*args, "-n", "90", "--seed", "1", "--force"], out, check, seed=5)


def test_train_force(tmp_path, base):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--steps", "6", "--set", "train.save_every=2", *TINY]

    def check():  # a coherent run: the old one, or the new one at one of its checkpoints
        ckpt = read_file(out / "checkpoint.safetensors", "sgan.checkpoint")
        gen = read_file(out / "generator.safetensors", "sgan.generator")
        assert ckpt.config["train"]["seed"] == gen.config["train"]["seed"]
        assert int(gen.meta["step"]) <= int(ckpt.meta["step"])
        assert (out / "config.yaml").is_file()

    code, seconds = run(args)
    assert code == 0
    old = content_hash(read_file(out / "checkpoint.safetensors", "sgan.checkpoint").tensors)
    new = [*args, "--seed", "1", "--force"]
    rng = random.Random(6)
    for _ in range(KILLS):
        assert run(new, kill_after=rng.uniform(0.05, 1.2) * seconds)[0] in (0, -signal.SIGKILL)
        check()
        ckpt = read_file(out / "checkpoint.safetensors", "sgan.checkpoint")
        assert (content_hash(ckpt.tensors) == old) == (ckpt.config["train"]["seed"] == 0)  # old intact, or new
    if read_file(out / "checkpoint.safetensors", "sgan.checkpoint").config["train"]["seed"] == 1:
        code, _ = run(["train", "--out", str(out), "--resume", "--steps", "6"])  # the killed new run goes on
    else:
        code, _ = run(new)
    assert code == 0
    check()
    assert read_file(out / "checkpoint.safetensors", "sgan.checkpoint").meta["step"] == "6"
    assert leftovers(out) == []


def killer(step: int, os_calls: tuple[str, ...], arm: tuple[object, str], also: list[tuple[object, str]] = ()):
    """A ``die`` for :func:`run`: in the child, count the calls of ``os_calls`` (on outputs' os)
    and of ``also`` ((owner, name) pairs) once ``arm``'s method (owner, name) has been entered,
    and SIGKILL the process at the ``step``-th."""

    def die():
        count = {"n": 0, "on": False}

        def counted(fn):
            def wrapper(*a, **k):
                if count["on"]:
                    count["n"] += 1
                    if count["n"] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                return fn(*a, **k)

            return wrapper

        for name in os_calls:
            setattr(outputs.os, name, counted(getattr(os, name)))
        for owner, name in also:
            setattr(owner, name, counted(getattr(owner, name)))
        owner, method = arm
        original = getattr(owner, method)

        def armed(self, *a, **k):
            count["on"] = True
            return original(self, *a, **k)

        setattr(owner, method, armed)

    return die


def test_sample_force_killed_at_every_step_of_the_swap(tmp_path, base):
    """The moments a random kill rarely meets: each rename, link and removal while the new
    samples replace the old ones. The folder used to be left with the old samples gone and
    no samples.safetensors; now it is the old folder or the complete new one at each step."""
    out = tmp_path / "samples"
    args = ["sample", str(base["run"]), "--out", str(out)]
    assert run([*args, "-n", "12"])[0] == 0
    before = visible(out)
    states = []
    for step in range(1, 60):
        extra = [(outputs.shutil, "rmtree")] + ([(outputs, "exchange")] if hasattr(outputs, "exchange") else [])
        die = killer(
            step, ("replace", "rename", "link", "unlink", "rmdir", "mkdir"), (outputs.Staging, "publish"), extra
        )

        code, _ = run([*args, "-n", "8", "--seed", "1", "--force"], die=die)
        states.append(visible(out))
        if code == 0:
            break
        assert code == -signal.SIGKILL
    else:
        pytest.fail("the swap never finished")
    after = visible(out)
    assert len([n for n in after if n.startswith("0")]) == 8
    for i, state in enumerate(states, 1):
        assert state in (before, after), f"killed at step {i} of the swap: {sorted(set(state) ^ set(before))}"
    assert run([*args, "-n", "8", "--seed", "1", "--force"])[0] == 0 and leftovers(out) == []


def kill_at_every_rename(args: list[str], new: list[str], folder: Path, data: str, picture: str) -> None:
    """Write a data file and its picture with ``args``, then kill ``new`` (which replaces both)
    at each file system change of its group of renames in turn (the moments a random kill
    rarely meets). After every kill the folder must hold the old pair, the new pair, or the
    data file (old or new, intact) with no picture: never a picture of another data file."""
    assert run(args)[0] == 0
    before = visible(folder)
    states = []
    for step in range(1, 20):
        die = killer(step, ("replace", "rename", "unlink", "remove"), (outputs.AtomicGroup, "__exit__"))

        code, _ = run(new, die=die)
        states.append(visible(folder))
        if code == 0:
            break
        assert code == -signal.SIGKILL, f"{new} exited {code}"
    else:
        pytest.fail("the renames never finished")
    after = visible(folder)
    assert after[data] != before[data] and after[picture] != before[picture]
    assert len(states) >= 3  # killed before, between and after the renames
    for i, state in enumerate(states, 1):

        def which(name, state=state):
            got = state.get(name)
            return "none" if got is None else "old" if got == before[name] else "new" if got == after[name] else "?"

        found = {"data": which(data), "picture": which(picture), "others": sorted(set(state) - {data, picture})}
        ok = found["data"] in ("old", "new") and found["picture"] in ("none", found["data"]) and not found["others"]
        assert ok, f"killed at step {i} of the renames: {found}"
    assert run(new)[0] == 0 and visible(folder) == after and leftovers(folder) == []


def test_learn_dict_force_killed_at_every_rename(tmp_path, base):
    out = tmp_path / "out"
    args = ["learn-dict", "digits", "--limit", "300", "--atoms", "16", "--out", str(out / "dictionary.safetensors")]
    kill_at_every_rename(args, [*args, "--seed", "1", "--force"], out, "dictionary.safetensors", "atoms.png")


def test_encode_force_killed_at_every_rename(tmp_path, base):
    out = tmp_path / "out"
    args = ["encode", "digits", "--dict", str(base["dict"]), "--limit", "4", "--out", str(out / "latents.safetensors")]
    kill_at_every_rename(args, [*args, "--limit", "6", "--force"], out, "latents.safetensors", "reconstructions.png")
