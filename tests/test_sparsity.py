"""Sparsity control of generated codes, the dictionary mean term, stacked MNIST."""

from __future__ import annotations

import json

import pytest
import torch

from sgan_cli.config import DataConfig, DictConfig, load_config
from sgan_cli.contracts import load_dictionary, save_dictionary
from sgan_cli.data import load_data
from sgan_cli.dictionary_job import learn_from_config
from sgan_cli.errors import SganError
from sgan_cli.nets import PatchSynthesis, SoftThreshold, SupportController, TopK, WholeImageSynthesis
from sgan_cli.sparsity import DEFAULT_SPARSITY_CONTROL
from sgan_cli.training import run_training

# --- top-k -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(16, 64), (4, 100, 7, 7)], ids=["whole-image", "patch"])
def test_topk_keeps_exactly_k_largest_per_code_vector_and_gradients_only_through_them(shape):
    u = torch.randn(*shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    k = 6
    a = TopK(k)(u)
    nonzero = (a != 0).sum(dim=1)
    assert bool((nonzero == k).all())  # per image, or per position of a code map
    # the kept entries are the k largest |u| of their vector, unchanged
    kth = u.detach().abs().topk(k, dim=1).values[:, -1:]
    kept = a != 0
    assert torch.equal(kept, u.detach().abs() >= kth)
    assert torch.equal(a[kept], u.detach()[kept])
    weights = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    (a * weights).sum().backward()
    assert torch.equal(u.grad, torch.where(kept, weights, torch.zeros(())))


# --- the support controller ---------------------------------------------------------------


def test_controller_moves_lambda_the_right_way_and_reaches_the_target():
    gen = torch.Generator().manual_seed(0)
    T = SoftThreshold(0.1)
    ctl = SupportController(T, target=0.1, gain=0.1)
    u = torch.randn(4096, 64, generator=gen)
    s0 = float((T(u) != 0).float().mean())  # λ = 0.1 leaves ~92 % non-zero: too dense
    lam1 = ctl.update(s0)
    assert lam1 > 0.1 and T.lam_value == lam1 == float(T.lam)
    for _ in range(300):
        ctl.update(float((T(torch.randn(512, 64, generator=gen)) != 0).float().mean()))
    # for N(0, 1) entries, support 0.1 means λ = the 95 % quantile of a normal, 1.645
    assert T.lam_value == pytest.approx(1.645, rel=0.05)
    assert float((T(u) != 0).float().mean()) == pytest.approx(0.1, rel=0.1)
    # too sparse: λ falls
    before = T.lam_value
    assert ctl.update(0.01) < before


# --- the mean term ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_dicts(tmp_path_factory):
    """Digits dictionaries with the mean term: whole-image (64 atoms), 3×3 patches, tiled 2×2 patches."""
    tmp = tmp_path_factory.mktemp("dicts")
    data = load_data(DataConfig(name="digits"))
    out = {}
    cases = (
        ("whole", DictConfig(passes=2)),  # square: 64 atoms
        ("patch", DictConfig(patch=3, atoms=12, passes=2, max_samples=5000)),
        ("tiled", DictConfig(patch=2, stride=2, atoms=4, passes=2, max_samples=5000, sparsity=0.25)),
    )
    for name, cfg in cases:
        job = learn_from_config(data, cfg)
        out[name] = tmp / f"{name}.safetensors"
        save_dictionary(out[name], job, {})
    return out


def test_learn_dict_stores_the_mean_of_the_signals(digits_dicts):
    data = load_data(DataConfig(name="digits"))
    whole = load_dictionary(digits_dicts["whole"])
    assert whole.mean.shape == (64,)
    assert torch.allclose(
        whole.mean, data.floats().reshape(len(data), -1).mean(0), atol=0.05
    )  # subset of 1438 of the images
    patch = load_dictionary(digits_dicts["patch"])
    from sgan_cli.dictionary_job import extract_signals

    all_patches = extract_signals(data.floats(), 3, 1)  # the dictionary saw a random 5,000 of them
    assert patch.mean.shape == (9,) and torch.allclose(patch.mean, all_patches.mean(0), atol=0.05)


@pytest.mark.parametrize("kind", ["whole", "tiled"])
def test_codes_of_a_dictionary_with_a_mean_round_trip_through_synthesis(digits_dicts, kind):
    """encode (codes of x − m, every atom allowed on a square dictionary) → the generator's
    synthesis (codes·D + m) rebuilds the images: whole-image atoms, and 2×2 patch atoms
    tiling the image (encode's and the generator's code layouts coincide)."""
    from sgan_cli.encoding import encode_dictionary, resolve_coder

    d = load_dictionary(digits_dicts[kind])
    assert float(d.mean.abs().max()) > 0.1
    data = load_data(DataConfig(name="digits", split="test", limit=20))
    enc = encode_dictionary(data, d, resolve_coder(d, 8, "omp", d.n_atoms, None, None))
    assert torch.equal(enc.reconstructions, data.images)  # encode's own inverse, mean added back
    if kind == "whole":
        synth = WholeImageSynthesis(d.atoms, 1, 8, d.mean)
    else:
        synth = PatchSynthesis(d.atoms, 1, 2, 8, stride=2, mean=d.mean)
    with torch.no_grad():
        x = synth(enc.codes)
    assert torch.allclose(x, data.floats(), atol=1e-4)
    # without the mean the same codes miss the images by the mean
    zero = WholeImageSynthesis(d.atoms, 1, 8) if kind == "whole" else PatchSynthesis(d.atoms, 1, 2, 8, stride=2)
    assert not torch.allclose(zero(enc.codes), data.floats(), atol=0.05)


def test_dictionary_files_without_a_mean_still_load(tmp_path, digits_dicts):
    """A schema-1 file (no mean tensor) reads with mean = 0 and trains."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(digits_dicts["whole"]), "pt") as f:
        meta = dict(f.metadata())
        atoms = f.get_tensor("atoms")
    meta["schema"] = "1"
    old = tmp_path / "old.safetensors"
    save_file({"atoms": atoms}, str(old), metadata=meta)
    d = load_dictionary(old)
    assert torch.equal(d.mean, torch.zeros(64)) and torch.equal(d.atoms, atoms)
    res = run_training(
        load_config(
            None,
            [
                f"train.dict={old}",
                "model.arch=mlp",
                "train.steps=2",
                "model.g_width=16",
                "model.d_width=8",
                "model.z_dim=4",
                "train.batch_size=8",
            ],
        ),
        tmp_path / "run",
    )
    assert res.sparse
    # schema 3 is still refused
    meta["schema"] = "3"
    save_file({"atoms": atoms}, str(tmp_path / "new.safetensors"), metadata=meta)
    with pytest.raises(SganError, match="schema"):
        load_dictionary(tmp_path / "new.safetensors")


def test_generator_files_from_before_the_mean_load_with_mean_zero():
    synth = WholeImageSynthesis(torch.eye(4), 1, 2, torch.ones(4))
    synth.load_state_dict({"atoms": torch.eye(4)})  # an old state dict: no mean
    assert torch.equal(synth.mean, torch.zeros(4))
    patch = PatchSynthesis(torch.eye(4), 1, 2, 4, mean=torch.ones(4))
    assert patch.has_mean
    patch.load_state_dict({"kernel": torch.eye(4).view(4, 1, 2, 2), "inv_count": patch.inv_count})
    assert not patch.has_mean


# --- default settings reach the dictionary's support ----------------------------------------


@pytest.mark.parametrize("kind, arch", [("whole", "mlp"), ("patch", "dcgan")])
def test_default_sparse_generator_ends_at_the_dictionarys_support(tmp_path, digits_dicts, kind, arch):
    d = load_dictionary(digits_dicts[kind])
    sets = [f"train.dict={digits_dicts[kind]}", f"model.arch={arch}", "train.steps=80", "train.log_every=10",
            "train.grid_every=1000", "train.save_every=1000", "model.g_width=32", "model.d_width=16", "model.z_dim=8",
            "train.batch_size=32", "gan.critic_steps=1"]  # fmt: skip
    res = run_training(load_config(None, sets), tmp_path / "run")
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert res.last_log["support"] == pytest.approx(d.achieved_sparsity, rel=0.2)
    g = json.loads(
        __import__("safetensors").safe_open(str(tmp_path / "run" / "generator.safetensors"), "pt").metadata()["config"]
    )
    assert g["model"]["sparsity"] == DEFAULT_SPARSITY_CONTROL  # recorded resolved, not "auto"
    # the target logged beside the support is the one the control aims at: k/K for top-k
    if DEFAULT_SPARSITY_CONTROL == "topk":  # k is recorded; the user gave no target, so none is written
        assert lines[-1]["support_target"] == pytest.approx(g["model"]["topk"] / d.n_atoms)
        assert g["model"]["support_target"] is None
    else:
        assert lines[-1]["support_target"] == pytest.approx(d.achieved_sparsity) == g["model"]["support_target"]


@pytest.mark.parametrize("kind, arch", [("whole", "mlp"), ("patch", "dcgan")])
def test_controller_run_ends_at_the_dictionarys_support_and_logs_lambda(tmp_path, digits_dicts, kind, arch):
    d = load_dictionary(digits_dicts[kind])
    sets = [f"train.dict={digits_dicts[kind]}", f"model.arch={arch}", "model.sparsity=controller", "train.steps=80",
            "train.log_every=10", "train.grid_every=1000", "train.save_every=1000", "model.g_width=32",
            "model.d_width=16", "model.z_dim=8", "train.batch_size=32", "gan.critic_steps=1"]  # fmt: skip
    res = run_training(load_config(None, sets), tmp_path / "run")
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["support_target"] == pytest.approx(d.achieved_sparsity)
    assert lines[-1]["lambda"] > lines[0]["lambda"] > 0.3  # dense at λ = 0.3: λ rose
    assert res.last_log["support"] == pytest.approx(d.achieved_sparsity, rel=0.2)


def test_topk_run_records_k_and_samples_at_exactly_k(tmp_path, digits_dicts):
    from sgan_cli.run_files import load_generator

    d = load_dictionary(digits_dicts["whole"])
    sets = [
        f"train.dict={digits_dicts['whole']}",
        "model.arch=mlp",
        "model.sparsity=topk",
        "train.steps=3",
        "model.g_width=16",
        "model.d_width=8",
        "model.z_dim=4",
        "train.batch_size=8",
    ]
    run_training(load_config(None, sets), tmp_path / "run")
    G = load_generator(tmp_path / "run")
    k = round(d.achieved_sparsity * 64)
    assert G.config["model"]["topk"] == k
    with torch.no_grad():
        _, codes = G.module.forward_codes(torch.randn(10, 4))
    assert bool(((codes != 0).sum(dim=1) == k).all())


def test_sparsity_config_errors(tmp_path, digits_dicts):
    base = [f"train.dict={digits_dicts['whole']}", "model.arch=mlp", "train.steps=1"]
    for extra, match in (
        ("model.sparsity=sparse", "unknown sparsity control"),
        ("model.topk=1000", "keeps every one of the dictionary's 64 atoms"),
        ("model.topk=64", "keeps every one of the dictionary's 64 atoms"),  # k = K: nothing sparse
        ("model.threshold=1", "model.threshold=1.0 sets λ of the soft threshold, but the codes are made by top-k"),
    ):
        cfg = load_config(
            None, [*base, extra, *(["model.sparsity=topk"] if "topk" in extra else [])]
        )  # threshold: under auto
        with pytest.raises(SganError, match=match):
            run_training(cfg, tmp_path / "run", force=True)
    for extra in (
        "model.topk=0",
        "model.support_target=1.5",
        "model.controller_gain=0",
        "data.seed=-1",
    ):  # refused where the config is read
        with pytest.raises(SganError, match=extra.split("=")[0]):
            load_config(None, [*base, extra])
    with pytest.raises(SganError, match="learn_threshold"):
        run_training(
            load_config(None, [*base, "model.learn_threshold=true", "model.sparsity=topk"]),
            tmp_path / "run",
            force=True,
        )


# --- stacked MNIST ------------------------------------------------------------------------


def _write_idx(path, array, magic):
    import numpy as np

    with open(path, "wb") as fh:
        fh.write(magic.to_bytes(4, "big"))
        for d in array.shape:
            fh.write(int(d).to_bytes(4, "big"))
        fh.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture()
def tiny_mnist(tmp_path):
    """MNIST in torchvision's raw layout, 3 images per digit, each filled with 20·digit + k."""
    import numpy as np

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.repeat(np.arange(10), 3).astype(np.uint8)
    images = (labels[:, None, None] * 20 + np.tile(np.arange(3), 10)[:, None, None] + np.zeros((1, 28, 28))).astype(
        np.uint8
    )
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images, 2051)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels, 2049)
    return tmp_path


def test_stacked_mnist_is_deterministic_per_seed_with_1000_reachable_modes(tiny_mnist):
    from sgan_cli.data import stack_digits

    a = load_data(DataConfig(name="stacked-mnist", root=str(tiny_mnist), download=False, seed=1))
    b = load_data(DataConfig(name="stacked-mnist", root=str(tiny_mnist), download=False, seed=1))
    c = load_data(DataConfig(name="stacked-mnist", root=str(tiny_mnist), download=False, seed=2))
    assert a.images.shape == (30, 3, 28, 28) and a.n_classes == 1000
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    # each channel is a whole MNIST digit; the label spells the three digits
    digits = a.images[:, :, 0, 0].long() // 20  # [N, 3]
    assert torch.equal(a.labels, digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2])
    # enough draws reach every one of the 1,000 modes
    mnist = load_data(DataConfig(name="mnist", root=str(tiny_mnist), download=False))
    many = stack_digits(mnist, 20000, seed=0)
    assert int((torch.bincount(many.labels, minlength=1000) > 0).sum()) == 1000
    assert int(many.labels.max()) == 999


def test_stacked_mnist_modes_match_score_counting(tiny_mnist):
    """The data set's label is the mode ``score -m modes`` assigns from per-channel classes."""
    from sgan_cli.metrics import stacked_modes

    a = load_data(DataConfig(name="stacked-mnist", root=str(tiny_mnist), download=False, seed=3))
    assert torch.equal(stacked_modes(a.images[:, :, 0, 0].long() // 20, 10), a.labels)


def test_stacked_mnist_offline_names_the_mnist_files(offline_root):
    with pytest.raises(SganError, match="train-images-idx3-ubyte"):
        load_data(DataConfig(name="stacked-mnist", root=str(offline_root)))


def test_resolution_keeps_what_the_user_gave():
    from sgan_cli.config import ModelConfig
    from sgan_cli.sparsity import record_sparsity, resolve_sparsity

    # a support target under auto is the controller's target, kept as given (not k/K of top-k)
    model = ModelConfig(support_target=0.05)
    resolved = resolve_sparsity(model, 100, 0.1)
    assert (resolved.control, resolved.target) == ("controller", 0.05)
    record_sparsity(model, resolved)
    assert model.support_target == 0.05
    # top-k with a target and no k: k = round(target·K); the user's target is not rewritten
    model = ModelConfig(sparsity="topk", support_target=0.05)
    resolved = resolve_sparsity(model, 100, 0.1)
    assert (resolved.k, resolved.target) == (5, 0.05)
    record_sparsity(model, resolved)
    assert (model.topk, model.support_target) == (5, 0.05)
    # default top-k records k, and no target of its own (k/K would be refused as 1.0 for k = K)
    model = ModelConfig()
    record_sparsity(model, resolve_sparsity(model, 64, 0.1))
    assert (model.sparsity, model.topk, model.support_target) == ("topk", 6, None)


def test_ema_generator_follows_the_controlled_lambda():
    from torch import nn

    from sgan_cli.training import _update_ema

    G, ema = nn.Sequential(nn.Linear(3, 8), SoftThreshold(0.3)), nn.Sequential(nn.Linear(3, 8), SoftThreshold(0.3))
    G[1].set_lambda(1.7)
    _update_ema(ema, G, 0.9)
    u = torch.linspace(-3, 3, 13)
    assert ema[1].lam_value == G[1].lam_value
    assert torch.equal(ema[1](u), G[1](u))  # the forward uses the new λ, not the one it was built with
