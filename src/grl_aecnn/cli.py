"""The `grl-aecnn` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

import grl_aecnn
from grl_aecnn.errors import GrlAecnnError
from grl_aecnn.store import atomic_write_json

app = typer.Typer(help="GRL-AECNN: semantic compression and offloading for edge CNN inference.", no_args_is_help=True)
nets_app = typer.Typer(help="Backbones and their split points.", no_args_is_help=True)
train_app = typer.Typer(help="Train models from YAML configs.", no_args_is_help=True)
zoo_app = typer.Typer(help="Models shipped with the package.", no_args_is_help=True)
eval_app = typer.Typer(help="Re-measure shipped models on real data.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
codec_app = typer.Typer(help="Semantic codecs: evaluate and ship.", no_args_is_help=True)
for sub, name in ((nets_app, "nets"), (train_app, "train"), (zoo_app, "zoo"), (eval_app, "eval"), (data_app, "data"),
                  (codec_app, "codec")):
    app.add_typer(sub, name=name)

console = Console()


def _version(value: bool) -> None:
    if value:
        console.print(f"grl-aecnn {grl_aecnn.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """GRL-AECNN command line."""


def _fail(exc: GrlAecnnError) -> typer.Exit:
    console.print(f"[bold red]error[/]: {exc}")
    return typer.Exit(code=2)


def _write_json(path: Optional[Path], obj: dict) -> None:
    if path is not None:
        atomic_write_json(path, obj)
        console.print(f"wrote {path}")


@nets_app.command("info")
def nets_info(
    model: str = typer.Option("resnet20", help="Backbone name (resnet20, resnet32, resnet56, resnet50)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the table as JSON."),
) -> None:
    """Split points of a backbone: tensor shape, float32 bytes, head and tail FLOPs per image."""
    from grl_aecnn.nets import build_model, split_table

    try:
        rows = split_table(build_model(model))
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"{model}: split points (one 32x32 image)")
    for column in ("split", "shape", "bytes fp32", "head MFLOPs", "tail MFLOPs"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r.name, "x".join(map(str, r.shape)), f"{r.bytes_fp32:,}", f"{r.head_flops / 1e6:.2f}",
                      f"{r.tail_flops / 1e6:.2f}")
    console.print(table)
    _write_json(json_file, {"model": model, "splits": [r.to_json() for r in rows]})


@train_app.command("backbone")
def train_backbone_cmd(
    config: Path = typer.Option(..., help="YAML config, e.g. configs/backbones/resnet20-cifar10.yaml."),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in the config's output_dir."),
    stop_after: Optional[int] = typer.Option(None, min=1, help="Stop after this many epochs (resume later)."),
) -> None:
    """Train a backbone; checkpoints every epoch and writes a model card at the end."""
    from grl_aecnn.config import load_config
    from grl_aecnn.nets.training import BackboneTrainConfig, train_backbone

    try:
        cfg = load_config(config, BackboneTrainConfig)
        card = train_backbone(cfg, resume=resume, stop_after=stop_after)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    if card is None:
        console.print(f"stopped early; continue with --resume (checkpoint in {cfg.output_dir})")
    else:
        console.print(f"{card['name']}: top-1 {card['top1']:.4f} after {card['epochs']} epochs, "
                      f"card in {cfg.output_dir}/card.json")


@train_app.command("codec")
def train_codec_cmd(
    config: Path = typer.Option(..., help="YAML config of one level, e.g. configs/codecs/aecnn-L5.yaml."),
) -> None:
    """Train one AECNN level (stages 1-2 are shared and run once); every stage resumes from its checkpoint."""
    from grl_aecnn.codecs.aecnn.training import AecnnLevelConfig, train_level
    from grl_aecnn.config import load_config

    try:
        card = train_level(load_config(config, AecnnLevelConfig))
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"level {card['level']}: {card['keep_channels']} channels at {card['bits']} bits, "
                  f"{card['entropy_bits_per_symbol']:.3f} bits/symbol on the training set, "
                  f"test top-1 (tensor path) {card['test_top1_tensor_path']:.4f}")


@codec_app.command("ship")
def codec_ship(
    base_dir: Path = typer.Option(Path("runs/codecs/aecnn-resnet20-cifar10"), help="Output folder of the level trainings."),
    name: str = typer.Option("aecnn-resnet20-cifar10", help="Zoo name of the codec."),
) -> None:
    """Collect the trained AECNN levels into the package's zoo (for developers)."""
    from grl_aecnn.codecs.aecnn import ship_codec

    try:
        card = ship_codec(base_dir, name)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"shipped {name}: levels {[lv['level'] for lv in card['levels']]}")


@codec_app.command("eval")
def codec_eval(
    codec: str = typer.Option("aecnn", help="Codec name."),
    model: str = typer.Option("resnet20-cifar10", help="Zoo name of the backbone."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate on a fixed subset of N test images."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON."),
    plot: Optional[Path] = typer.Option(None, help="PNG of accuracy vs bytes (default: beside --json)."),
) -> None:
    """Every level through real encode -> bytes -> decode at batch size 1."""
    from grl_aecnn.codecs import load_codec_levels
    from grl_aecnn.data import load_dataset
    from grl_aecnn.experiments.codec_eval import evaluate_codec, plot_accuracy_vs_bytes
    from grl_aecnn.zoo import load_card

    try:
        levels = load_codec_levels(codec, model)
        test_set = load_dataset(load_card(model)["dataset"]["name"], "test").take(limit)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    result = evaluate_codec(codec, model, levels, test_set)
    result["package_version"] = grl_aecnn.__version__
    table = Table(title=f"{codec} on {model}, {result['n']} test images, split {result['split']} "
                        f"({result['split_bytes_fp32']:,} bytes fp32), uncompressed top-1 {result['top1_uncompressed']:.4f}")
    for column in ("level", "ratio", "bytes mean", "median", "p95", "top-1", "drop (pts)", "enc ms", "dec ms",
                   "device MFLOPs", "server MFLOPs"):
        table.add_column(column, justify="right")
    for r in result["levels"]:
        table.add_row(str(r["level"]), f"{r['ratio']:.1f}", f"{r['bytes_mean']:.1f}", f"{r['bytes_median']:.0f}",
                      f"{r['bytes_p95']:.0f}", f"{r['top1']:.4f}", f"{100 * r['top1_drop']:.2f}",
                      f"{r['encode_ms_median']:.2f}", f"{r['decode_ms_median']:.2f}", f"{r['device_flops'] / 1e6:.2f}",
                      f"{r['server_flops'] / 1e6:.2f}")
    console.print(table)
    _write_json(json_file, result)
    plot = plot or (json_file.with_suffix(".png") if json_file else None)
    if plot:
        plot_accuracy_vs_bytes({codec: result["levels"]}, result["top1_uncompressed"], plot,
                               f"{codec} on {model} (n={result['n']})")
        console.print(f"wrote {plot}")


@zoo_app.command("list")
def zoo_list(json_file: Optional[Path] = typer.Option(None, "--json", help="Write the list as JSON.")) -> None:
    """Models shipped with the package."""
    from grl_aecnn.zoo import list_models

    cards = list_models()
    table = Table(title="grl-aecnn zoo")
    for column in ("name", "kind", "dataset / backbone", "top-1 / levels"):
        table.add_column(column)
    rows = []
    for c in cards:
        if "codec" in c:  # a codec card: its levels sit on a shipped backbone
            rows.append({"name": c["name"], "kind": f"{c['codec']} codec", "backbone": c["backbone"],
                         "levels": [lv["level"] for lv in c["levels"]]})
            table.add_row(c["name"], rows[-1]["kind"], c["backbone"], str(rows[-1]["levels"]))
        else:
            rows.append({"name": c["name"], "kind": "backbone", "model": c["model"], "top1": c["top1"],
                         "epochs": c["epochs"]})
            table.add_row(c["name"], f"backbone ({c['model']})", c["dataset"]["name"], f"{c['top1']:.4f}")
    console.print(table)
    _write_json(json_file, {"models": rows})


@zoo_app.command("add")
def zoo_add(run_dir: Path = typer.Argument(..., help="A finished training run folder (model.safetensors + card.json).")) -> None:
    """Ship a finished training run in the package's zoo (for developers)."""
    from grl_aecnn.zoo import add_to_zoo

    try:
        card = add_to_zoo(run_dir)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"added {card['name']} (top-1 {card['top1']:.4f})")


@eval_app.command("backbone")
def eval_backbone(
    model: str = typer.Option("resnet20-cifar10", help="Zoo model name."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate on a fixed subset of N test images."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """Top-1 accuracy of a shipped backbone on its dataset's test split."""
    from grl_aecnn.data import load_dataset
    from grl_aecnn.nets.training import evaluate
    from grl_aecnn.zoo import load_backbone, load_card

    try:
        card = load_card(model)
        net = load_backbone(model)
        test_set = load_dataset(card["dataset"]["name"], "test").take(limit)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    top1 = evaluate(net, test_set)
    result = {"model": model, "dataset": test_set.name, "n": len(test_set), "top1": top1,
              "dataset_source": test_set.source, "dataset_checksum": test_set.checksum,
              "card_top1": card["top1"], "package_version": grl_aecnn.__version__}
    console.print(f"{model} on {test_set.name} test ({len(test_set)} images): top-1 [bold]{top1:.4f}[/]")
    _write_json(json_file, result)


@data_app.command("fetch")
def data_fetch(dataset: str = typer.Argument("cifar10", help="cifar10 (official archive) is downloadable.")) -> None:
    """Find a dataset offline, or download the official archive into the user cache (needs internet)."""
    from grl_aecnn.data import load_cifar10, load_dataset

    try:
        data = load_cifar10("test", download=True) if dataset == "cifar10" else load_dataset(dataset, "test")
    except (GrlAecnnError, ValueError, OSError) as exc:
        console.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(code=2) from exc
    typer.echo(json.dumps({"dataset": data.name, "source": data.source, "test_n": len(data),
                              "test_checksum": data.checksum}))


@app.command("simulate")
def simulate(
    scenario: Path = typer.Option(Path("configs/scenarios/default.yaml"), help="Scenario YAML."),
    policy: str = typer.Option("greedy", help="local, random or greedy."),
    slots: int = typer.Option(100, min=1, help="Number of slots."),
    seed: int = typer.Option(0, help="Seed of the environment and the policy."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Summary JSON; the event log CSV and the resolved "
                                                                   "scenario are written beside it."),
    profile: Optional[Path] = typer.Option(None, help="Option profile JSON built from real models."),
    synthetic_profile: bool = typer.Option(False, "--synthetic-profile",
                                           help="Use a made-up option profile (for trying the simulator; not a result)."),
    allocator: str = typer.Option("optimal", help="optimal or equal (shares)."),
) -> None:
    """Run a policy in the dynamic MEC simulator and report accuracy, reliability, throughput, energy, latency."""
    from grl_aecnn.experiments.simulate import run_simulation, write_outputs

    if (profile is None) == (not synthetic_profile):
        console.print("[bold red]error[/]: pass exactly one of --profile FILE (real measurements) or "
                      "--synthetic-profile (made-up numbers, for trying the simulator)")
        raise typer.Exit(code=2)
    if synthetic_profile:
        console.print("[bold yellow]warning[/]: SYNTHETIC option profile: these numbers are not measurements")
    try:
        result, sim = run_simulation(scenario, policy, slots, seed, profile, allocator)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    lat = result["latency_ms"]
    table = Table(title=f"{result['scenario']}: policy {policy}, {slots} slots, seed {seed}, profile {result['profile']}")
    for column in ("tasks", "avg accuracy", "reliability", "throughput /s", "energy/task mJ", "p50 ms", "p95 ms",
                   "offloaded"):
        table.add_column(column, justify="right")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    table.add_row(str(result["tasks"]), f"{result['avg_accuracy']:.4f}", f"{result['reliability']:.4f}",
                  f"{result['throughput_per_s']:.1f}", f"{1e3 * result['energy_per_task_j']:.3f}", fmt(lat["p50"]),
                  fmt(lat["p95"]), f"{result['offload_fraction']:.2f}")
    console.print(table)
    if json_file is not None:
        paths = write_outputs(result, sim, json_file)
        console.print(f"wrote {paths['json']}, {paths['csv']}, {paths['scenario']}")
