"""``sgan score SAMPLES``: IS, FID, KID, precision/recall, mode coverage, sparsity, PSNR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import (
    DataRootOpt,
    DeviceOpt,
    JsonOpt,
    LimitOpt,
    SeedOpt,
    err,
    handle_errors,
    out,
    print_json,
)
from ._progress import progress_bar

EXIT_THRESHOLD = 1


def _fmt(values: dict[str, Any] | None, metric: str) -> str:
    """One metric's value(s) as table text; '—' when absent."""
    if not values:
        return "—"
    v = values
    if metric == "inception" and "inception" in v:
        return f"{v['inception']:.4f} ± {v['inception_std']:.4f}"
    if metric == "fid" and "fid" in v:
        return f"{v['fid']:.4f}"
    if metric == "kid" and "kid" in v:
        return f"{v['kid']:.6f} ± {v['kid_std']:.6f}"
    if metric == "pr" and "precision" in v:
        return f"precision {v['precision']:.4f}, recall {v['recall']:.4f}"
    if metric == "modes" and "modes" in v:
        return f"{v['modes']} / {v['modes_total']} (KL to uniform {v['modes_kl']:.4f})"
    if metric == "sparsity" and "sparsity" in v:
        return f"{v['sparsity']:.4f}"
    if metric == "psnr" and "psnr" in v:
        return f"{v['psnr']:.2f} ± {v['psnr_std']:.2f} dB"
    return "—"


@handle_errors
def score(
    samples: Annotated[
        str | None,
        typer.Argument(
            metavar="SAMPLES",
            help=(
                "Images to score: a folder, a samples.safetensors (sgan sample), "
                "a latents.safetensors (sgan encode), or a data set name."
            ),
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            help=(
                "inception, fid, kid, pr, modes, sparsity or psnr "
                "(repeatable). (default: inception, and fid with --ref)"
            ),
            show_default=False,
        ),
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="DATA",
            help="Real images: a data set name, a folder, a samples file, or a stats file from --save-stats.",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help=(
                "Feature extractor: inception (TF-2015 FID Inception) or classifier:FILE (from sgan "
                "classifier). (default: the one a --ref statistics file was made with, else inception)"
            ),
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights",
            metavar="FILE",
            help=(
                "Inception weights file pt_inception-2015-12-05-6726825d.pth. "
                "Default: the torch hub cache, downloaded when missing."
            ),
            show_default=False,
        ),
    ] = None,
    custom_weights: Annotated[
        bool,
        typer.Option(
            "--custom-weights",
            help="Accept Inception weights whose SHA-256 is not the published one; results are labelled non-standard.",
        ),
    ] = False,
    data_root: DataRootOpt = None,
    split: Annotated[
        str,
        typer.Option(
            "--split",
            help="train or test: the split of SAMPLES when it is a data set name. (default: test)",
            show_default=False,
        ),
    ] = "test",
    ref_split: Annotated[
        str,
        typer.Option(
            "--ref-split",
            help=(
                "train or test: the split of --ref when it is a data set name; "
                "the other split gives the real-data value. (default: train)"
            ),
            show_default=False,
        ),
    ] = "train",
    limit: LimitOpt = None,
    ref_limit: Annotated[
        int | None, typer.Option("--ref-limit", help="Use only the first N reference images.", show_default=False)
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Resize samples and reference images to N×N.", show_default=False),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Images per forward pass. (default: 50 for inception, 500 for a classifier)",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    splits: Annotated[
        int,
        typer.Option(
            "--is-splits",
            metavar="N",
            help="Inception Score: number of splits the samples are cut into (mean ± std over them). (default: 10)",
            show_default=False,
        ),
    ] = 10,
    kid_subsets: Annotated[
        int, typer.Option("--kid-subsets", help="KID: number of random subsets. (default: 100)", show_default=False)
    ] = 100,
    kid_subset_size: Annotated[
        int,
        typer.Option(
            "--kid-subset-size",
            help="KID: images per subset, capped at the smaller set. (default: 1000)",
            show_default=False,
        ),
    ] = 1000,
    k: Annotated[
        int,
        typer.Option(
            "--pr-k",
            metavar="N",
            help="Precision/recall: the N-th neighbour's distance is each image's ball radius. (default: 3)",
            show_default=False,
        ),
    ] = 3,
    ceiling: Annotated[
        bool | None,
        typer.Option(
            "--ceiling/--no-ceiling",
            help=(
                "Also score real held-out images (the real-data value). "
                "(default: on with a classifier, off with inception)"
            ),
            show_default=False,
        ),
    ] = None,
    save_stats: Annotated[
        Path | None,
        typer.Option(
            "--save-stats",
            metavar="FILE",
            help="Save the reference's features and statistics to FILE, for later use as --ref FILE.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --save-stats file.")] = False,
    fail_above: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-above",
            metavar="METRIC=VALUE",
            help="Exit with code 1 when a result exceeds a bound, e.g. fid=30 (repeatable).",
            show_default=False,
        ),
    ] = None,
    fail_below: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-below",
            metavar="METRIC=VALUE",
            help="Exit with code 1 when a result is under a bound, e.g. inception=8 (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Score generated images against real ones.

    Metrics: Inception Score (10 splits, mean ± std), FID, KID (unbiased MMD², cubic
    kernel, 100 subsets of 1000), precision/recall (k = 3), mode coverage (classes hit
    and KL to uniform; 1000 stacked modes for 3-channel digits), sparsity (support of
    the stored codes) and PSNR (of a latents file's reconstructions). Results do not
    depend on batch size or image order. With a classifier, the real-data value (held-out
    real images scored the same way) is shown beside each score.

    Examples:
      sgan score samples/ --metric inception --metric fid --ref mnist --json
      sgan score samples.safetensors -m fid -m kid -m modes --ref digits \\
          --features classifier:digits-classifier.safetensors
      sgan score --ref mnist --features classifier:clf.safetensors --save-stats mnist-stats.safetensors
      sgan score samples/ -m fid --ref mnist-stats.safetensors --features classifier:clf.safetensors --fail-above fid=30
      torchrun --standalone --nproc-per-node 2 -m sgan_cli score samples/ -m inception -m fid --ref cifar10
    """
    from ..score_options import ScoreOptions, check_thresholds, parse_thresholds, resolve_metrics
    from ..scoring import score as run_score

    opts = ScoreOptions(
        samples=samples,
        metrics=list(metric or []),
        ref=ref,
        features=features,
        weights=weights,
        custom_weights=custom_weights,
        data_root=data_root,
        split=split,
        ref_split=ref_split,
        limit=limit,
        ref_limit=ref_limit,
        image_size=image_size,
        batch_size=batch_size,
        device=device or "auto",
        seed=0 if seed is None else seed,
        splits=splits,
        kid_subsets=kid_subsets,
        kid_subset_size=kid_subset_size,
        k=k,
        ceiling=ceiling,
        save_stats=None if save_stats is None else str(save_stats),
        force=force,
    )
    from ..distributed import session

    thresholds = parse_thresholds(list(fail_above or []), list(fail_below or []), resolve_metrics(opts))
    with session("score") as world, progress_bar("score", enabled=world.main) as progress:
        result = run_score(
            opts, progress
        )  # under torchrun: each rank extracts its share, every rank computes the metrics
    if not world.main:  # rank 0 reports (and exits 1 on a missed bound, like every rank below)
        raise typer.Exit(EXIT_THRESHOLD) if check_thresholds(result.values, thresholds) else typer.Exit(0)
    failures = check_thresholds(result.values, thresholds)
    if json_out:
        print_json({**result.to_json(), "thresholds": {"checked": [str(t) for t in thresholds], "failed": failures}})
    else:
        _print_table(result, thresholds)
    if failures:
        err.print(f"[bold red]Failed:[/] {'; '.join(failures)}", highlight=False)
        raise typer.Exit(EXIT_THRESHOLD)


def _print_table(result: Any, thresholds: list[Any]) -> None:
    from rich.table import Table

    from ..score_options import METRIC_KEYS

    info = Table(title="sgan score", show_header=False)
    info.add_column("field", style="bold")
    info.add_column("value")
    if result.samples:
        s = result.samples
        info.add_row("samples", f"{s['n']} images {'×'.join(map(str, s['shape']))} from {s['source']} ({s['kind']})")
    if result.ref:
        info.add_row("reference", f"{result.ref['n']} images: {result.ref['description']}")
    if result.extractor:
        e = result.extractor
        info.add_row("extractor", e["label"])
        info.add_row("weights", f"{e['source']}  {e['hash']}")
    info.add_row("settings", ", ".join(f"{k}={v}" for k, v in result.settings.items() if v is not None))
    if result.stats_file:
        info.add_row("statistics saved", f"{result.stats_file}  {result.stats_hash}")
    out.print(info)
    if not result.metrics:
        return
    table = Table(title="scores")
    table.add_column("metric", style="bold")
    table.add_column("samples")
    show_ceiling = result.ceiling is not None or bool(result.ceiling_note)
    if show_ceiling:
        table.add_column("real data")
    if thresholds:
        table.add_column("bound")
    for m in result.metrics:
        mine = [t for t in thresholds if t.key in METRIC_KEYS[m]]
        bound_text = ", ".join(
            f"{t} " + ("[red]missed[/]" if t.failed(result.values[t.key]) else "[green]met[/]") for t in mine
        )
        row = [m, _fmt(result.values, m)]
        if show_ceiling:
            row.append(_fmt(result.ceiling, m))
        if thresholds:
            row.append(bound_text)
        table.add_row(*row)
    out.print(table)
    if result.ceiling_note:
        out.print(f"real data: {result.ceiling_note}", highlight=False)
    if result.extractor and not result.extractor["standard"]:
        out.print(
            "[bold yellow]non-standard:[/] Inception weights with "
            "another SHA-256; not comparable with published scores",
            highlight=False,
        )
