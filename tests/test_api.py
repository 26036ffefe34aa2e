"""The public Python API, used only through ``sgan_cli``'s public names (``sgan_cli.__all__``):
learn a dictionary on digits, save and reload it, train a few steps, sample, encode and score,
each checked against what must hold (closed forms, invariants), and the errors a caller can make."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import sgan_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 16-atom whole-image digits dictionary (saved) and a 4-step sparse run trained with it."""
    root = tmp_path_factory.mktemp("api")
    d = sgan_cli.learn_dictionary("digits", atoms=16, passes=1, limit=300, seed=1)
    d.save(root / "d.safetensors")
    cfg = sgan_cli.SganConfig()
    cfg.model.arch, cfg.model.z_dim, cfg.model.g_width, cfg.model.d_width = "mlp", 8, 32, 16
    cfg.train.steps, cfg.train.batch_size, cfg.train.log_every = 4, 16, 2
    result = sgan_cli.train(cfg, root / "run", dictionary=d)
    return d, cfg, result, root


def test_public_names_load_on_first_use_and_import_sgan_cli_stays_light():
    code = "import sys, sgan_cli; print('torch' in sys.modules, set(sgan_cli.__all__) <= set(dir(sgan_cli)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]  # every public name listed, none loaded yet
    assert all(getattr(sgan_cli, name) is not None for name in sgan_cli.__all__)
    with pytest.raises(AttributeError, match="no attribute 'run_training'"):
        sgan_cli.run_training  # noqa: B018 - internal functions are not part of the API


def test_learned_dictionary_is_what_its_file_holds(trained, tmp_path):
    d, _, _, root = trained
    assert isinstance(d, sgan_cli.Dictionary) and d.atoms.shape == (16, 64) and d.patch is None
    assert torch.allclose(d.atoms.norm(dim=1), torch.ones(16), atol=1e-4)  # unit-norm atoms
    assert 0 < d.achieved_sparsity < 1 and d.alpha > 0 and d.psnr > 0
    loaded = sgan_cli.load_dictionary(root / "d.safetensors")
    assert torch.equal(loaded.atoms, d.atoms) and torch.equal(loaded.mean, d.mean)
    assert loaded.hash == d.hash != "" and loaded.psnr == pytest.approx(d.psnr)
    assert loaded.save(tmp_path / "again.safetensors") == d.hash  # a loaded dictionary saves the same tensors


def test_train_runs_into_its_folder_and_leaves_the_config_alone(trained):
    d, cfg, result, root = trained
    assert isinstance(result, sgan_cli.TrainResult)
    assert (result.steps, result.resumed_from, result.sparse) == (4, 0, True)
    assert 0.0 <= result.last_log["support"] <= 1.0 and (root / "run" / "generator.safetensors").is_file()
    assert cfg.train.dict is None and cfg.train.steps == 4  # the caller's config is not resolved in place
    again = sgan_cli.train(cfg, root / "run", dictionary=root / "d.safetensors", resume=True)
    assert (again.steps, again.resumed_from) == (4, 4)  # already there: nothing to do


def test_samples_are_images_in_range_and_a_seed_fixes_each_row(trained):
    _, _, _, root = trained
    g = sgan_cli.load_generator(root / "run")
    assert isinstance(g, sgan_cli.LoadedGenerator) and g.sparse and g.z_dim == 8
    x = sgan_cli.sample(g, 50, seed=3)
    assert x.shape == (50, 1, 8, 8) and x.dtype == torch.float32 and float(x.abs().max()) <= 1.0
    assert torch.equal(sgan_cli.sample(root / "run", 20, seed=3, batch_size=7), x[:20])  # any n, any batch size
    assert not torch.equal(sgan_cli.sample(g, 20, seed=4), x[:20])


def test_encode_codes_are_sparse_and_rebuild_their_reconstructions(trained):
    d, _, _, root = trained
    images = sgan_cli.to_uint8(sgan_cli.sample(root / "run", 30, seed=5))
    enc = sgan_cli.encode(images, d, nonzeros=3)
    assert isinstance(enc, sgan_cli.Encoded) and enc.codes.shape == (30, 16) and torch.equal(enc.originals, images)
    assert int((enc.codes != 0).sum(dim=1).max()) <= 3
    rebuilt = sgan_cli.to_uint8((enc.codes.double() @ d.atoms.double() + d.mean.double()).clamp(-1, 1))
    rebuilt = rebuilt.view(30, 1, 8, 8)
    assert int((rebuilt.int() - enc.reconstructions.int()).abs().max()) <= 1  # float32 codes: rounding at .5
    assert enc.support_fraction == pytest.approx(float((enc.codes != 0).float().mean()))


def test_fid_of_one_feature_is_the_closed_form(trained):
    """With one feature per image (its mean intensity), FID = (μ₁ − μ₂)² + (σ₁ − σ₂)²."""
    _, _, _, root = trained
    samples, reference = sgan_cli.sample(root / "run", 200, seed=6), sgan_cli.sample(root / "run", 300, seed=7)

    def brightness(u):  # uint8 [B, C, H, W] → [B, 1]
        return u.double().mean(dim=(1, 2, 3))[:, None]

    s, r = (brightness(sgan_cli.to_uint8(t))[:, 0] for t in (samples, reference))
    expected = float((s.mean() - r.mean()) ** 2 + (s.std() - r.std()) ** 2)
    got = sgan_cli.score(samples, reference, metrics=["fid"], features=brightness)
    assert got["fid"] == pytest.approx(expected, rel=1e-9, abs=1e-12) and expected > 0
    assert sgan_cli.score(samples, samples.flip(0), metrics=["fid"], features=brightness)["fid"] == pytest.approx(0)


def test_errors_name_the_argument_or_key(trained):
    d, cfg, _, root = trained
    with pytest.raises(sgan_cli.SganError, match=r"dict.atoms must be in \[1, 1048576\], got 0"):
        sgan_cli.learn_dictionary("digits", atoms=0)
    with pytest.raises(sgan_cli.SganError, match="n must be at least 1, got 0"):
        sgan_cli.sample(root / "run", 0)
    with pytest.raises(sgan_cli.SganError, match="samples must be a tensor of square images"):
        sgan_cli.score(torch.zeros(3, 8, 8), metrics=["inception"])
    with pytest.raises(sgan_cli.SganError, match="fid compares with reference images") as err:
        sgan_cli.score(torch.zeros(3, 1, 8, 8), metrics=["fid"])
    assert err.value.where == "reference"
    fresh = sgan_cli.learn_dictionary(sgan_cli.sample(root / "run", 64, seed=8), atoms=4)  # from a tensor
    assert fresh.path is None and fresh.hash == "" and fresh.atoms.shape == (4, 64)
    with pytest.raises(sgan_cli.SganError, match="this dictionary is not saved"):
        sgan_cli.train(cfg, root / "other", dictionary=fresh)
    bad = sgan_cli.SganConfig()
    bad.gan.lr_g = -1.0
    with pytest.raises(sgan_cli.SganError, match=r"gan.lr_g must be in \(0, 10\], got -1.0"):
        sgan_cli.train(bad, root / "bad")
    bad = sgan_cli.SganConfig()
    bad.model.clip_images = "no"  # truthy: it trained clipped and wrote a file no reader accepted
    with pytest.raises(sgan_cli.SganError, match="model.clip_images must be bool, got 'no'"):
        sgan_cli.train(bad, root / "bad")
    assert not (root / "bad").exists() and not (root / "other").exists()
