"""``sgan classifier`` and ``sgan score`` end to end on digits, checked against torchmetrics."""

from __future__ import annotations

import json

import pytest
import torch

from sgan_cli.classifier import load_classifier
from sgan_cli.cli import app
from sgan_cli.config import DataConfig
from sgan_cli.contracts import write_file
from sgan_cli.data import load_data
from sgan_cli.metrics import canonical_order


def _run(runner, args):
    return runner.invoke(app, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def clf(tmp_path_factory):
    from typer.testing import CliRunner

    path = tmp_path_factory.mktemp("clf") / "digits-classifier.safetensors"
    res = _run(CliRunner(), ["classifier", "digits", "--epochs", "4", "--out", str(path), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["test_accuracy"] > 0.85 and summary["n_train"] == 1438 and summary["n_test"] == 359
    return path


@pytest.fixture(scope="module")
def digits_test():
    return load_data(DataConfig(name="digits", split="test")).images  # uint8 [359, 1, 8, 8]


def _samples_file(path, images, codes=None):
    tensors = {"images": images, "z": torch.randn(images.shape[0], 4)}
    if codes is not None:
        tensors["codes"] = codes
    write_file(path, "sgan.samples", tensors)
    return path


def _score(runner, *args):
    res = _run(runner, ["score", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_classifier_file_records_its_accuracy(clf, digits_test):
    c = load_classifier(clf)
    assert c.info.dataset == "digits" and c.info.n_classes == 10 and c.info.image_size == 8
    with torch.inference_mode():
        pred = c.net(digits_test)[1].argmax(dim=1)
    labels = load_data(DataConfig(name="digits", split="test")).labels
    assert float((pred == labels).double().mean()) == pytest.approx(c.info.test_accuracy, abs=1e-12)
    # reported features are scaled to unit RMS over the training images (KID's kernel scale)
    with torch.inference_mode():
        feats = c.net(load_data(DataConfig(name="digits", split="train")).images)[0].double()
    assert float(feats.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-5)


class _Head(torch.nn.Module):
    """The classifier as torchmetrics wants it: one output, float64 (so both sides compute in float64)."""

    def __init__(self, net, which):
        super().__init__()
        self.net, self.which = net, which
        self.num_features = net.fc.out_features

    def forward(self, x):
        return self.net(x)[self.which].double()


def test_fid_kid_is_equal_torchmetrics_on_the_same_extractor(runner, tmp_path, clf, digits_test):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    samples = _samples_file(tmp_path / "samples.safetensors", digits_test[:300])
    got = _score(
        runner,
        samples,
        "-m",
        "inception",
        "-m",
        "fid",
        "-m",
        "kid",
        "--ref",
        "digits",
        "--features",
        f"classifier:{clf}",
        "--kid-subsets",
        "20",
        "--kid-subset-size",
        "100",
        "--seed",
        "7",
    )
    net = load_classifier(clf).net.double()  # sgan runs classifiers in float64
    fake = digits_test[:300][canonical_order(digits_test[:300])]
    train = load_data(DataConfig(name="digits", split="train")).images
    real = train[canonical_order(train)]

    fid = FrechetInceptionDistance(feature=_Head(net, 0))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert got["metrics"]["fid"] == pytest.approx(float(fid.compute()), rel=1e-6)

    kid = KernelInceptionDistance(feature=_Head(net, 0), subsets=20, subset_size=100)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    torch.manual_seed(7)  # torchmetrics draws its subsets from the global generator
    kid_mean, kid_std = kid.compute()
    assert got["metrics"]["kid"] == pytest.approx(float(kid_mean), rel=1e-6)
    assert got["metrics"]["kid_std"] == pytest.approx(float(kid_std), rel=1e-6)

    inc = InceptionScore(feature=_Head(net, 1), splits=10)
    inc.update(fake)
    torch.manual_seed(7)
    is_mean, is_std = inc.compute()
    assert got["metrics"]["inception"] == pytest.approx(float(is_mean), rel=1e-6)
    # torchmetrics divides the split variance by splits − 1; sgan by splits (Salimans et al., torch-fidelity)
    assert got["metrics"]["inception_std"] == pytest.approx(float(is_std) * (9 / 10) ** 0.5, rel=1e-6)

    # every classifier score reports the classifier's accuracy and the real-data value
    assert got["extractor"]["accuracy"] == pytest.approx(load_classifier(clf).info.test_accuracy)
    assert set(got["ceiling"]) >= {"inception", "fid", "kid"} and "test split" in got["ceiling_note"]


def test_results_do_not_depend_on_batch_size_or_order(runner, tmp_path, clf, digits_test):
    imgs = digits_test[:200]
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(3))
    a_path = _samples_file(tmp_path / "a.safetensors", imgs)
    b_path = _samples_file(tmp_path / "b.safetensors", imgs[perm])
    common = [
        "-m",
        "inception",
        "-m",
        "fid",
        "-m",
        "kid",
        "-m",
        "pr",
        "-m",
        "modes",
        "--ref",
        "digits",
        "--features",
        f"classifier:{clf}",
        "--kid-subsets",
        "10",
        "--kid-subset-size",
        "50",
    ]
    a = _score(runner, a_path, *common, "--batch-size", "500")
    b = _score(runner, b_path, *common, "--batch-size", "7")
    for key, value in a["metrics"].items():
        assert b["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert a["metrics"]["modes"] == 10 and a["metrics"]["modes_total"] == 10


def test_stats_cache_round_trip_and_extractor_check(runner, tmp_path, clf, digits_test):
    samples = _samples_file(tmp_path / "s.safetensors", digits_test[:120])
    stats = tmp_path / "digits-stats.safetensors"
    common = ["-m", "fid", "-m", "pr", "--features", f"classifier:{clf}"]
    direct = _score(runner, samples, *common, "--ref", "digits", "--save-stats", stats)
    cached = _score(runner, samples, *common, "--ref", stats)
    assert cached["ref"]["from_stats_file"] and cached["ref"]["n"] == 1438
    assert cached["metrics"] == pytest.approx(direct["metrics"], rel=1e-9)
    assert cached["ceiling"] == pytest.approx(direct["ceiling"], rel=1e-9)
    only = _score(
        runner, "--ref", "digits", "--features", f"classifier:{clf}", "--save-stats", tmp_path / "only.safetensors"
    )
    assert only["stats_file"] and only["metrics"] == {}

    # statistics made with another extractor are refused
    other = tmp_path / "other.safetensors"
    write_file(
        other,
        "sgan.stats",
        {
            "features": torch.zeros(3, 128),
            "logits": torch.zeros(3, 10),
            "mean": torch.zeros(128, dtype=torch.float64),
            "cov": torch.zeros(128, 128, dtype=torch.float64),
        },
        meta={"extractor": "classifier:sha256:0000"},
    )
    res = _run(runner, ["score", str(samples), "-m", "fid", "--ref", str(other), "--features", f"classifier:{clf}"])
    assert res.exit_code == 2 and "holds statistics made with classifier:sha256:0000" in " ".join(res.stderr.split())
    # and an existing stats file is not overwritten without --force
    res = _run(
        runner,
        [
            "score",
            str(samples),
            "-m",
            "fid",
            "--ref",
            "digits",
            "--features",
            f"classifier:{clf}",
            "--save-stats",
            str(stats),
        ],
    )
    assert res.exit_code == 2 and "already exists" in res.stderr


def test_failed_score_leaves_no_stats_file(runner, tmp_path, clf, digits_test, monkeypatch):
    """--save-stats is written only once the samples are scored: a failure leaves nothing to
    refuse on the rerun, and samples the extractor cannot read fail before any extraction."""
    stats = tmp_path / "stats.safetensors"
    few = _samples_file(tmp_path / "few.safetensors", digits_test[:5])
    res = _run(
        runner,
        [
            "score",
            str(few),
            "-m",
            "inception",
            "--ref",
            "digits",
            "--features",
            f"classifier:{clf}",
            "--save-stats",
            str(stats),
        ],
    )
    assert res.exit_code == 2 and "at least 10" in " ".join(res.stderr.split()) and not stats.exists()
    import sgan_cli.scoring

    extracted: list[int] = []
    real_extract = sgan_cli.scoring.extract
    monkeypatch.setattr(
        sgan_cli.scoring,
        "extract",
        lambda ex, images, *a: extracted.append(len(images)) or real_extract(ex, images, *a),
    )
    big = _samples_file(tmp_path / "big.safetensors", torch.zeros(12, 1, 16, 16, dtype=torch.uint8))
    res = _run(
        runner,
        [
            "score",
            str(big),
            "-m",
            "fid",
            "--ref",
            "digits",
            "--features",
            f"classifier:{clf}",
            "--save-stats",
            str(stats),
        ],
    )
    assert res.exit_code == 2 and "pass --image-size 8" in " ".join(res.stderr.split()) and not stats.exists()
    assert extracted == []  # refused before the reference was extracted


def test_ceiling_extracts_only_the_held_out_rows_it_uses(runner, tmp_path, clf, digits_test, monkeypatch):
    """The real-data value scores as many held-out images as samples: only those are extracted
    (the same seeded rows as before, so the values equal those from a full stats file)."""
    import sgan_cli.scoring

    sizes: list[int] = []
    real_extract = sgan_cli.scoring.extract
    monkeypatch.setattr(
        sgan_cli.scoring, "extract", lambda ex, images, *a: sizes.append(len(images)) or real_extract(ex, images, *a)
    )
    samples = _samples_file(tmp_path / "s.safetensors", digits_test[:50])
    got = _score(runner, samples, "-m", "fid", "--ref", "digits", "--features", f"classifier:{clf}")
    assert sorted(sizes) == [50, 50, 1438]  # reference (train split), held-out subset (of 359), samples
    assert got["ceiling"] is not None and "50 real images" in got["ceiling_note"]


def test_thresholds_exit_codes(runner, tmp_path, clf, digits_test):
    samples = _samples_file(tmp_path / "s.safetensors", digits_test[:100])
    base = ["score", str(samples), "-m", "fid", "-m", "inception", "--ref", "digits", "--features", f"classifier:{clf}"]
    missed = _run(runner, [*base, "--fail-above", "fid=0.000001", "--json"])
    assert missed.exit_code == 1
    payload = json.loads(missed.stdout)  # results are printed before failing
    assert payload["thresholds"]["failed"] and payload["thresholds"]["failed"][0].startswith("fid = ")
    met = _run(runner, [*base, "--fail-above", "fid=1e9", "--fail-below", "inception=1"])
    assert met.exit_code == 0 and "met" in met.stdout
    for bad, message in (
        ("fid", "is not of the form metric=value"),
        ("fid=abc", "is not of the form"),
        ("kid=1", "names 'kid', which this run does not compute"),
    ):
        res = _run(runner, [*base, "--fail-above", bad])
        assert res.exit_code == 2 and message in " ".join(res.stderr.split()), res.stderr


def test_sparsity_and_psnr(runner, tmp_path, digits_test):
    codes = torch.zeros(50, 64)
    codes[:, :8] = torch.randn(50, 8)  # support 8 / 64
    samples = _samples_file(tmp_path / "s.safetensors", digits_test[:50], codes)
    got = _score(runner, samples, "-m", "sparsity")
    assert got["metrics"]["sparsity"] == pytest.approx(8 / 64) and got["extractor"] is None
    # a folder written by `sgan sample` (numbered PNGs, a grid of another size, the samples
    # file) is scored through its samples file, codes included
    folder = tmp_path / "sampled"
    folder.mkdir()
    _samples_file(folder / "samples.safetensors", digits_test[:50], codes)
    from sgan_cli.images import save_png

    save_png(torch.zeros(1, 20, 20, dtype=torch.uint8), folder / "grid.png")
    got = _score(runner, folder, "-m", "sparsity")
    assert got["metrics"]["sparsity"] == pytest.approx(8 / 64)

    orig = digits_test[:20].clone()
    recon = orig.clone().clamp(max=250) + 3  # clamp, then +3: the error is exactly 3 levels where orig ≤ 250
    latents = tmp_path / "latents.safetensors"
    write_file(
        latents,
        "sgan.latents",
        {"originals": orig, "reconstructions": recon, "psnr": torch.zeros(20), "z": torch.zeros(20, 4)},
    )
    got = _score(runner, latents, "-m", "psnr")
    from sgan_cli.sparse_coding import psnr

    expected = psnr(orig.double() / 127.5 - 1, recon.double() / 127.5 - 1).mean()
    assert got["metrics"]["psnr"] == pytest.approx(float(expected), rel=1e-12)

    no_codes = _samples_file(tmp_path / "dense.safetensors", digits_test[:10])
    res = _run(runner, ["score", str(no_codes), "-m", "sparsity"])
    assert res.exit_code == 2 and "has neither" in " ".join(res.stderr.split())
    # codes left out for size (large patch runs): the support `sgan sample` measured over all of them
    left_out = tmp_path / "left_out.safetensors"
    write_file(
        left_out,
        "sgan.samples",
        {"images": digits_test[:10], "z": torch.randn(10, 4)},
        meta={"support_fraction": "0.0625", "codes": "left out"},
    )
    assert _score(runner, left_out, "-m", "sparsity")["metrics"]["sparsity"] == pytest.approx(0.0625)
    res = _run(runner, ["score", str(left_out), "-m", "sparsity", "--limit", "5"])  # a subset's support is unknown
    assert res.exit_code == 2 and "has neither" in " ".join(res.stderr.split())
    res = _run(runner, ["score", str(no_codes), "-m", "psnr"])
    assert res.exit_code == 2 and "is not a latents file" in " ".join(res.stderr.split())


def test_stacked_digits_have_a_thousand_modes(runner, tmp_path, clf, digits_test):
    n = 110
    stacked = torch.cat([digits_test[:n], digits_test[n : 2 * n], digits_test[2 * n : 3 * n]], dim=1)  # [n, 3, 8, 8]
    samples = _samples_file(tmp_path / "stacked.safetensors", stacked)
    got = _score(runner, samples, "-m", "modes", "--features", f"classifier:{clf}")
    net = load_classifier(clf).net
    with torch.inference_mode():
        digits = torch.stack([net(stacked[:, c : c + 1])[1].argmax(dim=1) for c in range(3)], dim=1)
    expected = len(set(map(tuple, digits.tolist())))
    assert got["metrics"]["modes_total"] == 1000 and got["metrics"]["modes"] == expected


def test_ceiling_needs_a_data_set_reference(runner, tmp_path, clf, digits_test):
    from PIL import Image

    folder = tmp_path / "real"
    folder.mkdir()
    for i, img in enumerate(digits_test[:30]):
        Image.fromarray(img[0].numpy(), mode="L").save(folder / f"{i}.png")
    samples = _samples_file(tmp_path / "s.safetensors", digits_test[30:60])
    got = _score(runner, samples, "-m", "fid", "--ref", folder, "--features", f"classifier:{clf}")
    assert got["ceiling"] is None and "data set name" in got["ceiling_note"]
    table = _run(
        runner,
        ["score", str(samples), "-m", "fid", "-m", "inception", "--ref", "digits", "--features", f"classifier:{clf}"],
    )
    assert table.exit_code == 0 and "real data" in table.stdout and "test accuracy" in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["{empty}", "-m", "inception", "--features", "classifier:{clf}"], "holds no images"),
        (
            ["{dictionary}", "-m", "inception", "--features", "classifier:{clf}"],
            "is an sgan.dictionary file, but a sgan.samples or sgan.latents file is needed",
        ),
        (["{samples}", "-m", "inception", "--features", "classifier:{tmp}/missing.safetensors"], "does not exist"),
        (
            ["{samples}", "-m", "inception", "--features", "classifier:{samples}"],
            "is an sgan.samples file, but a sgan.classifier file is needed",
        ),
        (["{samples}", "-m", "inception", "--features", "vgg"], "unknown feature extractor 'vgg'"),
        (["{samples}", "-m", "fid", "--features", "classifier:{clf}"], "no --ref was given"),
        (["{samples}", "-m", "bogus"], "unknown metric 'bogus'"),
        (["{big}", "-m", "inception", "--features", "classifier:{clf}"], "pass --image-size 8"),
        (
            ["{samples}", "-m", "modes", "--features", "classifier:{clf}", "--ref", "digits", "--ref-split", "val"],
            "unknown split 'val'",
        ),
        ([], "no SAMPLES to score"),
        # a malformed samples file is caught by its kind's checks even though score never imports the sampler
        (["{badcodes}", "-m", "sparsity"], "tensor 'codes' has 0 rows for 20 images"),
    ],
)
def test_user_errors(runner, tmp_path, clf, digits_test, args, message):
    from sgan_cli.contracts import SCHEMAS

    assert "sgan.dictionary" in SCHEMAS
    (tmp_path / "empty").mkdir()
    write_file(
        tmp_path / "dict.safetensors",
        "sgan.dictionary",
        {"atoms": torch.eye(4)},
        meta={"channels": "1", "image_size": "2", "patch": "null", "stride": "1"},
    )
    _samples_file(tmp_path / "s.safetensors", digits_test[:20])
    _samples_file(tmp_path / "big.safetensors", torch.zeros(12, 1, 16, 16, dtype=torch.uint8))
    _samples_file(tmp_path / "badcodes.safetensors", digits_test[:20], codes=torch.tensor(0.5))
    names = {
        "empty": tmp_path / "empty",
        "dictionary": tmp_path / "dict.safetensors",
        "samples": tmp_path / "s.safetensors",
        "big": tmp_path / "big.safetensors",
        "badcodes": tmp_path / "badcodes.safetensors",
        "clf": clf,
        "tmp": tmp_path,
    }
    res = _run(runner, ["score", *(a.format(**names) for a in args)])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split())
    assert "Traceback" not in res.output and res.stdout == ""


def test_classifier_needs_labels(runner, tmp_path, digits_test):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(digits_test[i, 0].numpy(), mode="L").save(folder / f"{i}.png")
    out = tmp_path / "c.safetensors"
    res = _run(runner, ["classifier", str(folder), "--out", str(out)])
    assert res.exit_code == 2 and "has no labels" in " ".join(res.stderr.split()) and not out.exists()
