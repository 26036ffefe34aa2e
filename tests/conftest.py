"""Shared fixtures. Tests use the bundled digits or data they make; never the network."""

from __future__ import annotations

import os

# set before torch loads OpenMP: with two cores shared by pytest, subprocesses and torch,
# passive waiting avoids the ~16 ms stalls per small op measured on a shared 2-core CPU
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session", autouse=True)
def _empty_session_directory(tmp_path_factory):
    """Session- and module-scoped fixtures run before function-scoped ones: they get an empty
    folder of their own too (a module's run made in the checkout picked up the demo's
    ./dictionary.safetensors and trained sparse)."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("session-cwd"))
    yield
    os.chdir(before)


@pytest.fixture(scope="module", autouse=True)
def _empty_module_directory(tmp_path_factory):
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("module-cwd"))
    yield
    os.chdir(before)


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
