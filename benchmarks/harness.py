"""What the benchmark scripts share: running sgan commands, their work folder, and the stand-in
data of their ``--smoke`` runs. A module, not a benchmark (it measures nothing).

Every benchmark has a ``--smoke`` mode: the whole script on tiny inputs (digits or generated
data, a few steps, a few samples) in seconds, writing only into a temporary folder or an
``--out`` / ``--work`` the caller gives. ``tests/test_benchmarks.py`` runs each of them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def sgan(*args: str, in_process: bool = False, cwd: Path | None = None, echo: bool = True) -> dict:
    """Run ``sgan ARGS --json`` and return its JSON output; stderr (progress) passes through.

    By default in a fresh process (the interpreter running this script, this checkout's
    ``sgan_cli`` first on its path), as a user's shell script would run it; ``in_process``
    runs the same command line in this process instead (``--smoke``: one torch import for
    all the commands). A command that fails ends the script (SystemExit naming it)."""
    if echo:
        print("$ sgan " + " ".join(args), flush=True)
    argv = [*args, "--json"]
    if in_process:
        from sgan_cli.cli import app

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                code = app(argv, prog_name="sgan", standalone_mode=False)
            except SystemExit as exc:  # pragma: no cover - typer's own exits
                code = exc.code
        if code:
            raise SystemExit(f"sgan {' '.join(args)} failed with exit code {code}: {buf.getvalue()[-2000:]}")
        return json.loads(buf.getvalue())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    res = subprocess.run([sys.executable, "-m", "sgan_cli", *argv], stdout=subprocess.PIPE, text=True, cwd=cwd, env=env)
    if res.returncode != 0:
        raise SystemExit(f"sgan {' '.join(args)} failed with exit code {res.returncode}")
    return json.loads(res.stdout)


@contextlib.contextmanager
def work_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """``given`` (created if missing), or a temporary folder removed afterwards."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix=f"sgan-{prefix}-") as tmp:
        yield Path(tmp)


def jsonl_rows(path: Path) -> list[dict]:
    """The JSON objects of a results file (one per line) a resumable study appends to; [] when absent."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def smoke_mnist(work: Path, data_root: str | Path | None, classifier: str | Path | None) -> tuple[Path, Path]:
    """The inputs of an MNIST benchmark's ``--smoke``: (data root, classifier file), the ones
    given, else stand-in MNIST in ``work`` (:func:`stand_in_mnist`, 300 + 100 images) and a
    one-epoch ``sgan classifier`` of it."""
    root = Path(data_root) if data_root is not None else stand_in_mnist(work / "mnist", n_train=300, n_test=100)
    if classifier is None:
        classifier = work / "classifier.safetensors"
        sgan(
            "classifier", "mnist", "--data-root", str(root), "--epochs", "1", "--out", str(classifier), in_process=True
        )
    return root, Path(classifier)


def stand_in_mnist(root: Path, n_train: int = 300, n_test: int = 100) -> Path:
    """A data root holding ``MNIST/raw/`` in torchvision's layout, made from the bundled digits
    (8×8, upscaled to 20×20 and centred in 28×28 as MNIST's digits are, labels kept): what
    ``--smoke`` runs use where the benchmark reads MNIST and no ``--mnist-root`` is given.
    Pixel values matter to no smoke; the digits only keep classifiers and modes meaningful.
    Returns ``root``."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    x, y = load_digits(return_X_y=True)
    images = torch.from_numpy(x).float().reshape(-1, 1, 8, 8) / 16.0
    images = F.pad(F.interpolate(images, size=20, mode="bilinear", align_corners=False), (4, 4, 4, 4))
    u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    labels = y.astype(np.uint8)
    for split, lo, hi in (("train", 0, n_train), ("t10k", n_train, n_train + n_test)):
        with open(raw / f"{split}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 2051, hi - lo, 28, 28) + u8[lo:hi].tobytes())
        with open(raw / f"{split}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 2049, hi - lo) + labels[lo:hi].tobytes())
    return root
