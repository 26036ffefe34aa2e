"""Shared fixtures. Tests use the bundled digits or data they make; never the network."""

from __future__ import annotations

import os

# set before torch loads OpenMP: with two cores shared by pytest, subprocesses and torch,
# passive waiting avoids the ~16 ms stalls per small op measured on a shared 2-core CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _empty_working_directory(tmp_path_factory, monkeypatch):
    """Every test runs in a fresh empty folder: default output paths (dictionary.safetensors,
    runs/default, samples/) and relative inputs never touch, or depend on, the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture()
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture()
def offline_root(tmp_path, monkeypatch):
    """An empty data root, with downloads made to fail at once as they would offline."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    root = tmp_path / "data"
    root.mkdir()
    return root
