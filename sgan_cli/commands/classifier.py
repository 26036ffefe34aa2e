"""``sgan classifier DATA``: train the domain classifier that ``sgan score`` can use for features."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    DataRootOpt,
    DeviceOpt,
    JsonOpt,
    LimitOpt,
    SeedOpt,
    handle_errors,
    print_fields,
    print_json,
    refuse_torchrun,
)
from ._progress import progress_bar


@handle_errors
def classifier(
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA",
            help=(
                "Labelled data set: digits, mnist, fashion-mnist or cifar10. "
                "Trains on its train split, measures accuracy on its test split."
            ),
            show_default=False,
        ),
    ],
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", help="Passes over the training images. (default: 15)", show_default=False),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per step. (default: 128)", show_default=False)
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr", help="Peak AdamW learning rate (one-cycle schedule). (default: 0.003)", show_default=False
        ),
    ] = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    data_root: DataRootOpt = None,
    limit: LimitOpt = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Resize images to N×N (then score at that size too).", show_default=False),
    ] = None,
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="FILE",
            help="Output classifier file. (default: classifier.safetensors)",
            show_default=False,
        ),
    ] = Path("classifier.safetensors"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a LeNet-style classifier; its test accuracy goes into the file's metadata.

    `sgan score --features classifier:FILE` then takes IS from its softmax, FID/KID from
    its penultimate layer and mode coverage from its classes, and reports its accuracy
    beside every score.

    Examples:
      sgan classifier digits --out digits-classifier.safetensors
      sgan classifier mnist --data-root ../shared/data/mnist-5k --out mnist-classifier.safetensors
      (one process: under torchrun it refuses to start)
    """
    refuse_torchrun("classifier")
    from dataclasses import asdict

    from ..classifier import ClassifierConfig, save_classifier, train_from_data
    from ..config import DataConfig
    from ..contracts import check_writable
    from ..data import load_data

    cfg = ClassifierConfig()
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed), ("device", device)):
        if value is not None:
            setattr(cfg, key, value)
    check_writable(out_path, force)
    train = load_data(DataConfig(name=data, root=data_root, split="train", limit=limit, image_size=image_size))
    test = load_data(DataConfig(name=data, root=data_root, split="test", image_size=image_size))
    with progress_bar("classifier") as progress:
        net, info, seconds = train_from_data(train, test, cfg, progress)
    config = {
        "data": {"name": data, "root": data_root, "limit": limit, "image_size": image_size},
        "classifier": asdict(cfg),
    }
    digest = save_classifier(out_path, net, info, config, force=force)
    summary = {"out": str(out_path), "hash": digest, "seconds": seconds, **asdict(info), "epochs": cfg.epochs}
    if json_out:
        print_json(summary)
        return
    rows = [
        ("data", f"{info.dataset}: {info.channels}×{info.image_size}×{info.image_size}, {info.n_classes} classes"),
        ("images", f"{info.n_train} train, {info.n_test} test"),
        ("test accuracy", f"{info.test_accuracy:.2%}"),
        ("net", f"{info.arch}, width {info.width}, {info.feature_dim} penultimate features"),
        ("training", f"{cfg.epochs} epochs in {seconds:.1f} s"),
        ("file", str(out_path)),
        ("hash", digest),
    ]
    print_fields(f"Classifier {out_path}", rows)
