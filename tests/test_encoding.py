"""``sgan encode``: sparse codes over a dictionary (against scikit-learn and an explicit patch fold),
latents through a reconstructor, PSNR levels, and every refusal."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from helpers import error_text, invoke

from sgan_cli.config import DataConfig, DictConfig, load_config
from sgan_cli.contracts import load_dictionary, save_dictionary, write_file
from sgan_cli.data import load_data
from sgan_cli.dictionary_job import learn_from_config
from sgan_cli.encode_run import load_latents
from sgan_cli.encoding import (
    DictionaryCoder,
    encode_dictionary,
    encode_reconstructor,
    patch_codes,
    resolve_coder,
)
from sgan_cli.errors import SganError
from sgan_cli.images import to_uint8
from sgan_cli.run_files import load_reconstructor
from sgan_cli.sparse_coding import psnr
from sgan_cli.training import run_training

FAST = [
    "train.log_every=2",
    "train.grid_every=100",
    "train.save_every=100",
    "model.g_width=32",
    "model.d_width=16",
    "model.e_width=8",
    "model.z_dim=8",
    "train.batch_size=16",
    "gan.critic_steps=1",
]

# Measured on the digits test split (359 images) with the square dictionary below (64 atoms,
# 4 passes, 10 % target sparsity): OMP at the default k = round(0.1·64) = 6 non-zeros gives
# 20.7 dB mean PSNR, OMP at full support (k = 64) 100+ dB (exact up to rounding; worst image
# 65 dB), lasso at the dictionary's α 17.9 dB at 9.9 % support.
OMP_DEFAULT_PSNR = 20.0
FULL_SUPPORT_PSNR = 60.0


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    """A square (64-atom) whole-image dictionary of the digits training split."""
    path = tmp_path_factory.mktemp("dict") / "dictionary.safetensors"
    save_dictionary(
        path, learn_from_config(load_data(DataConfig(name="digits")), DictConfig(passes=4, sparsity=0.1)), {}
    )
    return path


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    """A 3×3 patch dictionary of digits (12 atoms), and a tiled 2×2 one (stride 2, 4 atoms)."""
    root = tmp_path_factory.mktemp("patches")
    data = load_data(DataConfig(name="digits"))
    save_dictionary(
        root / "p3.safetensors", learn_from_config(data, DictConfig(patch=3, atoms=12, passes=2, max_samples=5000)), {}
    )
    save_dictionary(
        root / "p2.safetensors",
        learn_from_config(data, DictConfig(patch=2, stride=2, atoms=4, sparsity=0.3, passes=2, max_samples=5000)),
        {},
    )
    return root


@pytest.fixture(scope="module")
def test_digits():
    return load_data(DataConfig(name="digits", split="test"))


# --- dictionary codes --------------------------------------------------------------------


def test_omp_psnr_levels_on_digits_with_a_square_dictionary(square, test_digits):
    d = load_dictionary(square)
    enc = encode_dictionary(test_digits, d, resolve_coder(d, 8, "omp", None, None, None))
    assert enc.codes.shape == (359, 64)
    assert ((enc.codes != 0).sum(dim=1) == 6).all()  # k = round(0.1 · 64) per image
    assert enc.support_fraction == pytest.approx(6 / 64)
    assert enc.mean_psnr > OMP_DEFAULT_PSNR
    full = encode_dictionary(test_digits, d, resolve_coder(d, 8, "omp", 64, None, None))
    assert full.mean_psnr > 90.0 and float(full.psnr.min()) > FULL_SUPPORT_PSNR  # a square dictionary spans the images
    assert torch.equal(full.reconstructions, test_digits.images)


def test_whole_image_codes_match_scikit_learn(square, test_digits):
    from sklearn.decomposition import sparse_encode

    d = load_dictionary(square)
    x = test_digits.floats()[:60]
    sub = load_data(DataConfig(name="digits", split="test", limit=60))
    Y, D = (x.reshape(60, -1) - d.mean).double().numpy(), d.atoms.double().numpy()  # codes of the centred images
    assert float(d.mean.abs().max()) > 0.5  # learn-dict stores the mean image by default
    omp_codes = encode_dictionary(sub, d, resolve_coder(d, 8, "omp", 6, None, None)).codes
    ref = torch.from_numpy(sparse_encode(Y, D, algorithm="omp", n_nonzero_coefs=6)).float()
    assert torch.allclose(omp_codes, ref, atol=1e-4)
    lasso = encode_dictionary(sub, d, resolve_coder(d, 8, "lasso", None, None, None)).codes
    ref = torch.from_numpy(sparse_encode(Y, D, algorithm="lasso_lars", alpha=d.alpha)).float()
    assert torch.allclose(lasso, ref, atol=1e-3)
    assert torch.equal(lasso != 0, ref != 0)


@pytest.mark.parametrize("name, stride, side", [("p3", 1, 6), ("p2", 2, 4)])
def test_patch_reconstruction_is_the_fold_of_every_patch(patches, test_digits, name, stride, side):
    """Against an independent synthesis: F.fold of every coded patch over the fold of ones."""
    d = load_dictionary(patches / f"{name}.safetensors")
    coder = resolve_coder(d, 8, "omp", None, None, None)
    assert coder.stride == stride  # a tiled dictionary (stride = patch) codes tiles by default
    x = test_digits.floats()[:20].double()
    codes, recon = patch_codes(x, d.atoms, d.patch, stride, coder)
    P, K = d.patch, d.n_atoms
    assert codes.shape == (20, K, side, side)
    per_patch = codes.permute(0, 2, 3, 1).reshape(-1, K) @ d.atoms.double()  # [20·L, P·P]
    cols = per_patch.view(20, side * side, P * P).transpose(1, 2)  # [20, P·P, L]
    summed = F.fold(cols, (8, 8), kernel_size=P, stride=stride)
    count = F.fold(torch.ones_like(cols), (8, 8), kernel_size=P, stride=stride)
    assert torch.allclose(recon, summed / count, atol=1e-10)
    # every patch has exactly k non-zeros
    assert ((codes != 0).sum(dim=1) == coder.nonzeros).all()


def test_encoding_does_not_depend_on_batch_size(patches, test_digits):
    d = load_dictionary(patches / "p3.safetensors")
    coder = resolve_coder(d, 8, "lasso", None, None, None)
    a = encode_dictionary(test_digits, d, coder, batch_size=359)
    b = encode_dictionary(test_digits, d, coder, batch_size=13)
    assert torch.allclose(a.codes, b.codes, atol=1e-6) and torch.equal(a.reconstructions, b.reconstructions)
    assert torch.allclose(a.psnr, b.psnr, atol=1e-4)


def test_coder_settings_are_checked(square, patches):
    d, p = load_dictionary(square), load_dictionary(patches / "p3.safetensors")
    with pytest.raises(SganError, match="nonzeros must be between 1 and 64"):
        resolve_coder(d, 8, "omp", 65, None, None)
    with pytest.raises(SganError, match="nonzeros must be between 1 and 9"):
        resolve_coder(p, 8, "omp", 10, None, None)  # at most dim = 9 non-zeros per 3×3 patch
    with pytest.raises(SganError, match="unknown method 'ksvd'"):
        resolve_coder(d, 8, "ksvd", None, None, None)
    with pytest.raises(SganError, match="stride 2 leaves pixels of the 8×8 images uncovered"):
        resolve_coder(p, 8, "omp", None, None, 2)
    with pytest.raises(SganError, match="stride applies to patch dictionaries only"):
        resolve_coder(d, 8, "omp", None, None, 1)
    with pytest.raises(SganError, match="alpha applies to method lasso"):
        resolve_coder(d, 8, "omp", None, 0.5, None)
    with pytest.raises(SganError, match="nonzeros applies to method omp"):
        resolve_coder(d, 8, "lasso", 3, None, None)
    assert resolve_coder(d, 8, "lasso", None, 0.5, None) == DictionaryCoder("lasso", None, 0.5, None)


# --- the command with --dict -------------------------------------------------------------


def test_cli_encode_dict_json_and_latents_file(runner, square, tmp_path):
    out = tmp_path / "latents.safetensors"
    res = invoke(runner, ["encode", "digits", "--split", "test", "--dict", str(square), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["mode"] == "dictionary" and summary["method"] == "omp" and summary["nonzeros"] == 6
    assert summary["mean_psnr"] > OMP_DEFAULT_PSNR and summary["support_fraction"] == pytest.approx(6 / 64)
    from sgan_cli import native

    assert (summary["engine"], summary["engine_note"]) == native.engine("cpu")
    f = load_latents(out)
    assert f.meta["mode"] == "dictionary" and float(f.meta["mean_psnr"]) == pytest.approx(summary["mean_psnr"])
    assert f.lineage == {"dictionary": load_dictionary(square).hash}
    assert torch.equal(f.tensors["originals"], load_data(DataConfig(name="digits", split="test")).images)
    assert f.tensors["codes"].shape == (359, 64) and f.tensors["psnr"].shape == (359,)
    # the stored per-image PSNR is that of the stored uint8 images, up to uint8 rounding
    from_uint8 = psnr(f.tensors["reconstructions"].float() / 127.5 - 1, f.tensors["originals"].float() / 127.5 - 1)
    assert (from_uint8 - f.tensors["psnr"].double()).abs().max() < 0.2
    assert (tmp_path / "reconstructions.png").exists()
    # a table without --json
    res = invoke(
        runner,
        [
            "encode",
            "digits",
            "--dict",
            str(square),
            "--method",
            "lasso",
            "--limit",
            "50",
            "--out",
            str(tmp_path / "l.safetensors"),
        ],
    )
    assert res.exit_code == 0 and "lasso (LARS)" in res.stdout and (tmp_path / "l_reconstructions.png").exists()
    assert "coders" in res.stdout


def test_cli_encode_samples_of_a_sample_run(runner, square, tmp_path):
    """sample → encode: a samples.safetensors is an input like any data set."""
    run = tmp_path / "run"
    run_training(load_config(None, [*FAST, "train.steps=2", f"train.dict={square}", "model.arch=mlp"]), run)
    assert invoke(runner, ["sample", str(run), "-n", "30", "--out", str(tmp_path / "s"), "--no-png"]).exit_code == 0
    res = invoke(
        runner,
        [
            "encode",
            str(tmp_path / "s" / "samples.safetensors"),
            "--dict",
            str(square),
            "--nonzeros",
            "64",
            "--out",
            str(tmp_path / "l.safetensors"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    # the samples are combinations of the same atoms (clipped): full support recovers them closely
    assert json.loads(res.stdout)["n"] == 30 and json.loads(res.stdout)["mean_psnr"] > 30


def test_cli_refuses_a_dictionary_of_the_wrong_size(runner, tmp_path):
    atoms = F.normalize(torch.randn(10, 784), dim=1)
    mnist = tmp_path / "mnist.safetensors"
    write_file(
        mnist,
        "sgan.dictionary",
        {"atoms": atoms},
        meta={"channels": "1", "image_size": "28", "patch": "null", "stride": "1", "achieved_sparsity": "0.1"},
    )
    msg = error_text(
        invoke(runner, ["encode", "digits", "--dict", str(mnist), "--out", str(tmp_path / "l.safetensors")])
    )
    assert "(10 whole-image atoms of 1×28×28) does not fit the 1×8×8 images" in msg and "--image-size 28" in msg
    rgb = tmp_path / "rgb.safetensors"
    write_file(
        rgb,
        "sgan.dictionary",
        {"atoms": F.normalize(torch.randn(10, 27), dim=1)},
        meta={"channels": "3", "image_size": "32", "patch": "3", "stride": "1"},
    )
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(rgb), "--out", str(tmp_path / "l.safetensors")]))
    assert "(10 patch atoms of 3×3×3) does not fit the 1×8×8 images" in msg
    assert not (tmp_path / "l.safetensors").exists() and not (tmp_path / "l_reconstructions.png").exists()


def test_cli_missing_or_wrong_kind_files(runner, square, tmp_path):
    out = ["--out", str(tmp_path / "l.safetensors")]
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(tmp_path / "none.safetensors"), *out]))
    assert "the dictionary file" in msg and "does not exist" in msg
    run = tmp_path / "run"
    run_training(load_config(None, [*FAST, "train.steps=1"]), run)
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(run / "generator.safetensors"), *out]))
    assert "is an sgan.generator file, but a sgan.dictionary file is needed" in msg
    msg = error_text(invoke(runner, ["encode", "digits", "--reconstructor", str(run), *out]))
    assert "holds no reconstructor.safetensors" in msg
    msg = error_text(invoke(runner, ["encode", "digits", "--reconstructor", str(run / "critic.safetensors"), *out]))
    assert "is a critic checkpoint, not a reconstructor" in msg
    msg = error_text(invoke(runner, ["encode", "digits", "--reconstructor", str(square), *out]))
    assert "is an sgan.dictionary file, but a sgan.checkpoint file is needed" in msg
    msg = error_text(invoke(runner, ["encode", "digits", *out]))
    assert "exactly one of --reconstructor and --dict" in msg
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(square), "--reconstructor", str(run), *out]))
    assert "exactly one of --reconstructor and --dict" in msg
    msg = error_text(invoke(runner, ["encode", "digits", "--reconstructor", str(run), "--nonzeros", "3", *out]))
    assert "apply to --dict only" in msg
    (tmp_path / "l.safetensors").write_bytes(b"keep")
    msg = error_text(invoke(runner, ["encode", "digits", "--dict", str(square), *out]))
    assert "already exists" in msg and (tmp_path / "l.safetensors").read_bytes() == b"keep"


# --- the command with --reconstructor ----------------------------------------------------


@pytest.mark.parametrize("mode", ["latent", "vae"])
def test_cli_encode_with_a_reconstructor(runner, square, tmp_path, mode, test_digits):
    run = tmp_path / "run"
    run_training(
        load_config(None, [*FAST, "train.steps=3", f"train.dict={square}", "model.arch=mlp", f"recon.mode={mode}"]), run
    )
    out = tmp_path / "latents.safetensors"
    res = invoke(
        runner,
        [
            "encode",
            "digits",
            "--split",
            "test",
            "--reconstructor",
            str(run),
            "--out",
            str(out),
            "--json",
            "--batch-size",
            "100",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    f = load_latents(out)
    assert f.meta["recon_mode"] == mode and f.tensors["z"].shape == (359, 8) and "codes" not in f.tensors
    # z = E(x) (μ for the VAE) and the reconstructions are G(E(x)), recomputed here in one batch
    r = load_reconstructor(run)
    x = test_digits.floats()
    with torch.no_grad():
        z = r.module.stats(x)[0]
        y, codes = r.generator.module.forward_codes(z)
    assert torch.allclose(f.tensors["z"], z, atol=1e-5)
    assert (f.tensors["reconstructions"].int() - to_uint8(y.clamp(-1, 1)).int()).abs().max() <= 1
    assert summary["mean_psnr"] == pytest.approx(float(psnr(y.clamp(-1, 1), x).mean()), abs=1e-3)
    assert summary["support_fraction"] == pytest.approx(float((codes != 0).double().mean()), abs=1e-6)
    assert set(f.lineage) == {"reconstructor", "generator", "dictionary"}
    assert "engine" not in summary  # nets, not sparse coders, encode here
    # a reconstructor file away from its run needs --generator
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run / "reconstructor.safetensors", alone)
    msg = error_text(
        invoke(
            runner,
            [
                "encode",
                "digits",
                "--reconstructor",
                str(alone / "reconstructor.safetensors"),
                "--out",
                str(tmp_path / "x.safetensors"),
            ],
        )
    )
    assert "no generator beside the reconstructor" in msg and "--generator" in msg
    res = invoke(
        runner,
        [
            "encode",
            "digits",
            "--limit",
            "20",
            "--reconstructor",
            str(alone / "reconstructor.safetensors"),
            "--generator",
            str(run),
            "--out",
            str(tmp_path / "x.safetensors"),
        ],
    )
    assert res.exit_code == 0, res.output


def test_reconstructor_refuses_images_of_another_size(square, tmp_path):
    run = tmp_path / "run"
    run_training(load_config(None, [*FAST, "train.steps=1", "model.arch=mlp", "recon.mode=latent"]), run)
    r = load_reconstructor(run)
    with pytest.raises(SganError, match="the images are 1×16×16 but the reconstructor .* takes 1×8×8"):
        encode_reconstructor(load_data(DataConfig(name="digits", limit=4, image_size=16)), r)
