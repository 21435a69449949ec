"""The `grl-aecnn` command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

import grl_aecnn
from grl_aecnn.errors import ConfigError, GrlAecnnError
from grl_aecnn.store import atomic_write_json

app = typer.Typer(help="GRL-AECNN: semantic compression and offloading for edge CNN inference.", no_args_is_help=True)
nets_app = typer.Typer(help="Backbones and their split points.", no_args_is_help=True)
train_app = typer.Typer(help="Train models from YAML configs.", no_args_is_help=True)
zoo_app = typer.Typer(help="Models shipped with the package.", no_args_is_help=True)
eval_app = typer.Typer(help="Re-measure shipped models on real data.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets.", no_args_is_help=True)
codec_app = typer.Typer(help="Semantic codecs: evaluate and ship.", no_args_is_help=True)
profile_app = typer.Typer(help="Option profiles: every option's real bytes and correctness per test sample.",
                          no_args_is_help=True)
for sub, name in ((nets_app, "nets"), (train_app, "train"), (zoo_app, "zoo"), (eval_app, "eval"), (data_app, "data"),
                  (codec_app, "codec"), (profile_app, "profile")):
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
    device: Optional[str] = typer.Option(None, help="cpu or cuda instead of the config's device (a checkpoint "
                                                    "resumes on either)."),
) -> None:
    """Train a backbone; checkpoints every epoch and writes a model card at the end."""
    from grl_aecnn.config import load_config
    from grl_aecnn.nets.training import BackboneTrainConfig, train_backbone

    try:
        cfg = load_config(config, BackboneTrainConfig)
        if device is not None:
            if device not in ("cpu", "cuda"):
                raise ConfigError(f"--device must be cpu or cuda, got {device!r}")
            cfg = cfg.model_copy(update={"device": device})
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
    threads: Optional[int] = typer.Option(None, min=1, help="Torch threads instead of the config's (speed only; "
                                                             "a checkpoint resumes under any count)."),
) -> None:
    """Train one level of the config's `codec:` (aecnn, bottlenetpp, deepjscc); every stage resumes from its checkpoint."""
    from grl_aecnn.codecs import train_codec_level

    try:
        console.print(train_codec_level(config, threads=threads))
    except GrlAecnnError as exc:
        raise _fail(exc) from exc


@train_app.command("policy")
def train_policy_cmd(
    policy: str = typer.Option("grl", help="grl (GRL-AECNN), grl-bottlenetpp, grl-deepjscc (the same algorithm on "
                                            "those action sets) or droo (DROO-AECNN); the config is configs/policies/POLICY.yaml."),
    scenario: Path = typer.Option(Path("configs/scenarios/default.yaml"), help="Scenario YAML."),
    slots: int = typer.Option(..., min=1, help="Training slots in total (with --resume: including those done)."),
    profile: Optional[Path] = typer.Option(None, help="Option profile JSON [the shipped real profile if present, "
                                                      "else the SYNTHETIC one]."),
    config: Optional[Path] = typer.Option(None, help="Training config YAML [configs/policies/POLICY.yaml]."),
    n_md: Optional[int] = typer.Option(None, min=1, help="Number of MDs instead of the scenario's (DROO's network fixes "
                                                          "N: one network per N); the scenario is named SCENARIO-nN."),
    n_es: Optional[int] = typer.Option(None, min=1, help="Number of ESs instead of the scenario's (DROO's network fixes "
                                                          "M too); the scenario is named SCENARIO[-nN]-mM."),
    out: Optional[Path] = typer.Option(None, help="Output folder [runs/policies/POLICY-SCENARIO]."),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in --out."),
    seed: Optional[int] = typer.Option(None, help="Training seed instead of the config's (several seeds, then "
                                                  "`select-policy`, docs/policies.md)."),
) -> None:
    """Train a decision policy in the simulator; checkpoints (safetensors + JSON), then model.safetensors + card.json."""
    import torch

    from grl_aecnn.config import load_config
    from grl_aecnn.mec.scenario import Scenario
    from grl_aecnn.policies.grl import AgentConfig, train_agent
    from grl_aecnn.policies.registry import default_profile

    torch.set_num_threads(1)  # tiny networks: threads cost more than they give
    try:
        cfg = load_config(config or Path(f"configs/policies/{policy}.yaml"), AgentConfig)
        if seed is not None:
            cfg = cfg.model_copy(update={"seed": seed})
        if (cfg.name or cfg.policy) != policy:
            raise GrlAecnnError(f"{config or f'configs/policies/{policy}.yaml'}: config is for policy "
                                f"{cfg.name or cfg.policy!r}, not {policy!r}")
        scen = load_config(scenario, Scenario)
        for field, value, tag in (("n_md", n_md, "n"), ("n_es", n_es, "m")):
            if value is not None:
                scen = scen.replaced(**{field: value, "name": f"{scen.name}-{tag}{value}"})
        prof, source = default_profile(profile)
        if prof.synthetic:
            console.print("[bold yellow]warning[/]: training against the SYNTHETIC option profile")
        card = train_agent(cfg, scen, prof, slots, out or Path(f"runs/policies/{policy}-{scen.name}"), resume=resume,
                           profile_source=source, log=console.print)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"{card['name']}: {card['slots']} slots, mean slot reward of the last episodes "
                  f"{card['mean_reward_last_episodes']:+.4f}")


@app.command("select-policy")
def select_policy_cmd(
    run: list[Path] = typer.Option(..., help="Finished training run (card.json + model.safetensors) or a policy card "
                                             "(e.g. a zoo one, zoo/weights/grl-default.json); repeat."),
    scenario: Path = typer.Option(Path("configs/scenarios/default.yaml"), help="Scenario YAML."),
    profile: Optional[Path] = typer.Option(None, help="Option profile JSON [the shipped real profile]."),
    n_md: list[int] = typer.Option([5, 10, 20, 40], min=1, help="Numbers of MDs to validate on; repeat."),
    seed: Optional[list[int]] = typer.Option(None, help="Validation seeds; repeat [1000, 1001; never 0-2, the experiments']."),
    slots: int = typer.Option(300, min=1, help="Slots per (N, seed)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write every run's validation rewards here."),
    ship: bool = typer.Option(False, help="Add the best run to the zoo (`zoo add`)."),
) -> None:
    """Pick the best of several training runs of a policy (e.g. seeds) on validation layouts; optionally ship it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from grl_aecnn import zoo
    from grl_aecnn.config import load_config
    from grl_aecnn.experiments.select import VALIDATION_SEEDS, select_policy
    from grl_aecnn.mec.scenario import Scenario
    from grl_aecnn.policies.registry import default_profile

    try:
        prof, _ = default_profile(profile)
        with Progress(TextColumn("validation"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task("validation", total=None)
            result = select_policy(run, load_config(scenario, Scenario), prof, tuple(n_md),
                                   tuple(seed) if seed else VALIDATION_SEEDS, slots,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
        table = Table(title=f"validation: {result['scenario']}, N in {result['n_mds']}, seeds {result['seeds']}, "
                            f"{slots} slots each")
        for column in ("run", "policy", "seed", "mean task reward", "best"):
            table.add_column(column, justify="left" if column in ("run", "policy") else "right")
        for row in result["runs"]:
            table.add_row(row["run"], row["name"], str(row["seed"]), f"{row['reward']:+.4f}",
                          "*" if row["run"] == result["best"] else "")
        console.print(table)
        _write_json(json_file, result)
        if ship and Path(result["best"]).suffix == ".json":
            console.print(f"{result['best']} is a card already, not a run folder: nothing to ship")
        elif ship:
            card = zoo.add_to_zoo(result["best"])
            console.print(f"shipped {card['name']} from {result['best']}")
    except GrlAecnnError as exc:
        raise _fail(exc) from exc


@codec_app.command("ship")
def codec_ship(
    codec: str = typer.Option("aecnn", help="aecnn, bottlenetpp or deepjscc."),
    base_dir: Optional[Path] = typer.Option(None, help="Output folder of the level trainings [runs/codecs/CODEC-resnet20-cifar10]."),
    name: Optional[str] = typer.Option(None, help="Zoo name of the codec [CODEC-resnet20-cifar10]."),
) -> None:
    """Collect the trained levels of a codec into the zoo: $GRL_AECNN_ZOO when set, else the package's."""
    from grl_aecnn.codecs import learned_codec

    name = name or f"{codec}-resnet20-cifar10"
    try:
        card = learned_codec(codec).ship(base_dir or Path(f"runs/codecs/{name}"), name)
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


@codec_app.command("compare")
def codec_compare(
    model: str = typer.Option("resnet20-cifar10", help="Zoo name of the backbone."),
    limit: Optional[int] = typer.Option(None, min=1, help="A fixed subset of N test images (default: all)."),
    json_file: Path = typer.Option(Path("results/codec-compare-resnet20-cifar10.json"), "--json", help="Summary JSON; "
                                   "the PNGs go beside it (.png: accuracy vs bytes, .snr.png: DeepJSCC vs SNR)."),
    profile: Optional[Path] = typer.Option(None, help="Summarize this option profile (e.g. the zoo's) instead of "
                                           "measuring every codec again; --model and --limit then come from it."),
) -> None:
    """AECNN, BottleNet++, JPEG, PNG, raw and DeepJSCC on the same test images, with real bytes."""
    from grl_aecnn.experiments.codec_eval import (compare_codecs, plot_accuracy_vs_bytes, plot_accuracy_vs_snr,
                                                  summarize_profile)
    from grl_aecnn.profile import load_profile

    try:
        result = summarize_profile(load_profile(profile)) if profile else compare_codecs(model, limit)
        model = result["model"]
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    result["package_version"] = grl_aecnn.__version__
    table = Table(title=f"codecs on {model}, {result['n']} test images, uncompressed top-1 "
                        f"{result['top1_uncompressed']:.4f}")
    for column in ("codec", "option", "bytes / image", "top-1"):
        table.add_column(column, justify="right" if column in ("bytes / image", "top-1") else "left")
    for codec, rows in result["curves"].items():
        for r in sorted(rows, key=lambda r: -r["bytes_mean"]):
            table.add_row(codec, r["option"], f"{r['bytes_mean']:.1f}", f"{r['top1']:.4f}")
    console.print(table)
    if result["missing_codecs"]:
        console.print(f"not in the zoo, left out: {', '.join(result['missing_codecs'])}")
    _write_json(json_file, result)
    title = f"{model}, {result['n']} test images"
    plot_accuracy_vs_bytes(result["curves"], result["top1_uncompressed"], json_file.with_suffix(".png"), title)
    if result["deepjscc"]:
        plot_accuracy_vs_snr(result["deepjscc"], result["top1_uncompressed"], json_file.with_suffix(".snr.png"),
                             f"DeepJSCC, {title}")
    console.print(f"wrote {json_file} and its plots")


@codec_app.command("eval-channel")
def codec_eval_channel(
    model: str = typer.Option("resnet20-cifar10", help="Zoo name of the backbone."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate on a fixed subset of N test images."),
    channel: list[str] = typer.Option(["awgn", "rayleigh"], help="Channels to evaluate (repeatable)."),
    snr: list[float] = typer.Option([-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0], help="SNR grid in dB (repeatable)."),
    seed: int = typer.Option(0, help="Seed of the channel noise."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON."),
) -> None:
    """DeepJSCC: top-1 and PSNR of every bandwidth ratio over an SNR grid, seeded channel noise (analog path)."""
    from grl_aecnn.codecs import load_codec_levels
    from grl_aecnn.codecs.deepjscc import evaluate_channels
    from grl_aecnn.data import load_dataset
    from grl_aecnn.zoo import load_card

    try:
        levels = load_codec_levels("deepjscc", model)
        test_set = load_dataset(load_card(model)["dataset"]["name"], "test").take(limit)
        result = evaluate_channels(levels, model, test_set, snr, channel, seed)
        result["weights_sha256"] = load_card(f"deepjscc-{model}")["weights_sha256"]
    except (GrlAecnnError, ValueError) as exc:
        console.print(f"[bold red]error[/]: {exc}")
        raise typer.Exit(code=2) from exc
    result["package_version"] = grl_aecnn.__version__
    table = Table(title=f"deepjscc on {model}, {result['n']} test images, top-1 / PSNR dB "
                        f"(uncompressed top-1 {result['top1_uncompressed']:.4f})")
    for column in ("level", "k/n", "channel", *(f"{s:g} dB" for s in snr)):
        table.add_column(column, justify="right")
    for r in result["levels"]:
        table.add_row(str(r["level"]), f"1/{1 / r['bandwidth_ratio']:.0f}", r["channel"],
                      *(f"{p['top1']:.3f} / {p['psnr_db']:.1f}" for p in r["snr"]))
    console.print(table)
    _write_json(json_file, result)


@zoo_app.command("list")
def zoo_list(json_file: Optional[Path] = typer.Option(None, "--json", help="Write the list as JSON.")) -> None:
    """Models shipped with the package (and those of $GRL_AECNN_ZOO, which shadow them)."""
    from grl_aecnn.zoo import list_models, zoo_folders

    cards = list_models()
    table = Table(title="grl-aecnn zoo", caption="from " + ", then ".join(str(f) for f in zoo_folders()))
    for column in ("name", "kind", "dataset / backbone", "top-1 / levels"):
        table.add_column(column)
    rows = []
    for c in cards:
        if c.get("kind") == "policy":  # a trained decision policy (policies/grl.py)
            rows.append({"name": c["name"], "kind": f"{c['policy']} policy", "scenario": c["scenario"],
                         "profile": c["profile"]["source"], "slots": c["slots"]})
            table.add_row(c["name"], rows[-1]["kind"], f"{c['scenario']} ({c['profile']['model']})", f"{c['slots']} slots")
            continue
        if c.get("format") == "grl-aecnn-option-profile":  # what the simulator draws tasks from
            rows.append({"name": c["name"], "kind": "option profile", "model": c["model"], "samples": c["n_samples"],
                         "options": len(c["options"])})
            table.add_row(c["name"], "option profile", c["model"], f"{c['n_samples']} samples, {len(c['options'])} options")
            continue
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
    """Ship a finished training run in the zoo: $GRL_AECNN_ZOO when set, else the package's."""
    from grl_aecnn.zoo import add_to_zoo

    try:
        card = add_to_zoo(run_dir)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"added {card['name']}" + (f" (top-1 {card['top1']:.4f})" if "top1" in card else ""))


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


@profile_app.command("build")
def profile_build(
    config: Path = typer.Option(Path("configs/profiles/resnet20-cifar10.yaml"), help="Profile build YAML."),
    limit: Optional[int] = typer.Option(None, min=1, help="Override: a fixed subset of N test images."),
    output: Optional[str] = typer.Option(None, help="Override: path stem of the .json/.npz pair."),
    codecs: Optional[list[str]] = typer.Option(None, "--codec", help="Override: measure only these codecs (repeat)."),
    extend: Optional[Path] = typer.Option(None, help="Add the measured options to this profile (same test samples "
                                                     "and backbone) instead of writing them alone."),
    replace: bool = typer.Option(False, help="With --extend: the measured codecs replace their options in that "
                                             "profile (a retrained codec) instead of clashing with them."),
) -> None:
    """Run every shipped option on the test set and write the profile the simulator draws tasks from."""
    from grl_aecnn.config import load_config
    from grl_aecnn.profile import ProfileBuildConfig, build_profile, load_profile, merge_profiles, save_profile

    try:
        cfg = load_config(config, ProfileBuildConfig)
        overrides = (("limit", limit), ("output", output), ("codecs", tuple(codecs) if codecs else None))
        cfg = cfg.model_copy(update={k: v for k, v in overrides if v is not None})
        base = load_profile(extend) if extend else None
        if base is not None:  # the same fixed subset as the profile being extended
            cfg = cfg.model_copy(update={"limit": base.n_samples})
        profile = build_profile(cfg)
        if replace and base is None:
            raise ConfigError("--replace needs --extend: the profile whose options the measured codecs replace")
        if base is not None:
            profile = merge_profiles(base, profile, replace=replace)
        path = save_profile(profile, cfg.output_stem())
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    _print_profile(profile)
    console.print(f"wrote {path} and {path.with_suffix('.npz').name}")


@profile_app.command("show")
def profile_show(path: Optional[Path] = typer.Argument(None, help="Profile JSON; default: the shipped one.")) -> None:
    """Validate a profile and print its options."""
    from grl_aecnn.profile import load_profile, load_shipped_profile

    try:
        profile = load_profile(path) if path else load_shipped_profile()
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    _print_profile(profile)


def _print_profile(profile) -> None:
    from rich.table import Table

    table = Table(title=f"{profile.model} on {profile.dataset}: {profile.n_samples} test samples")
    for column in ("option", "kind", "payload mean", "top-1", "device MFLOPs", "server MFLOPs", "device ms", "server ms"):
        table.add_column(column, justify="left" if column in ("option", "kind") else "right", no_wrap=True,
                         min_width=14 if column == "option" else None)
    unit = {"bytes": " B", "symbols": " sym", "local": ""}
    for o, payload, acc in zip(profile.options, profile.payload.mean(axis=1), profile.accuracy()):
        table.add_row(o.name, o.kind, f"{payload:.1f}{unit[o.kind]}", f"{acc:.4f}", f"{o.device_flops / 1e6:.1f}",
                      f"{o.server_flops / 1e6:.1f}", f"{o.device_latency_ms:.2f}", f"{o.server_latency_ms:.2f}")
    console.print(table)


@app.command("simulate")
def simulate(
    scenario: Path = typer.Option(Path("configs/scenarios/default.yaml"), help="Scenario YAML."),
    policy: str = typer.Option("greedy", help="grl, grl-bottlenetpp, grl-deepjscc, droo, exhaustive, oracle, "
                                              "full-offload, greedy, local or random."),
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


# ---- experiments (issue 7): evaluate and demo ---------------------------------------------------
def _run_experiment(cfg, backend: str, workers: Optional[int], address: Optional[str]) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from grl_aecnn.experiments.evaluate import run_experiment

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task(f"{cfg.name}: simulations", total=None)
        summary = run_experiment(cfg, backend, workers, address,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
    _print_experiment(summary)
    if summary["profile"]["synthetic"]:
        console.print("[bold yellow]warning[/]: SYNTHETIC option profile: these numbers are not measurements")
    return summary


def _print_experiment(summary: dict) -> None:
    table = Table(title=f"{summary['experiment']}: {summary['slots']} slots x {len(summary['seeds'])} seeds, "
                        f"profile {summary['profile']['source']}")
    factor = summary["factor"]
    for column in ((factor,) if factor else ()) + ("policy", "avg accuracy", "reliability", "throughput /s",
                                                   "reward", "decision ms"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for point in summary["points"]:
        for policy, e in sorted(point["policies"].items(), key=lambda kv: -kv[1]["avg_accuracy"]):
            table.add_row(*((f"{point['value']:g}",) if factor else ()), policy, f"{e['avg_accuracy']:.4f}",
                          f"{e['reliability']:.4f}", f"{e['throughput_per_s']:.1f}", f"{e['reward']:+.4f}",
                          f"{e['decision_ms_median']:.2f}")
    console.print(table)


@app.command("evaluate")
def evaluate_cmd(
    config: Path = typer.Option(..., help="Experiment YAML, e.g. configs/experiments/default.yaml."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the summary JSON here."),
    backend: str = typer.Option("local", help="local (processes on this machine) or ray."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (with --backend ray); default: start one."),
    workers: Optional[int] = typer.Option(None, min=1, help="Parallel simulations (local) [all cores]."),
    output: Optional[Path] = typer.Option(None, help="Result folder instead of the config's output_dir "
                                                     "[results/experiments/NAME]."),
) -> None:
    """Sweep one scenario factor over every listed policy; table, CSV, plots and summary in the result folder.
    Rerunning resumes: finished simulations are kept."""
    from grl_aecnn.config import load_config
    from grl_aecnn.experiments.evaluate import ExperimentConfig

    try:
        cfg = load_config(config, ExperimentConfig)
        if output is not None:
            cfg = cfg.model_copy(update={"output_dir": str(output)})
        summary = _run_experiment(cfg, backend, workers, address)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    _write_json(json_file, summary)
    console.print(f"results in {cfg.out}/ (summary.json, table.csv, *.png, config.yaml, metadata.json)")


@app.command("demo")
def demo_cmd(
    slots: int = typer.Option(300, min=1, help="Evaluation slots per policy."),
    output: Path = typer.Option(Path("results/demo"), help="Result folder."),
) -> None:
    """The main job: every policy on the default scenario with the shipped codecs, profile and trained policies."""
    from grl_aecnn.config import load_config
    from grl_aecnn.experiments.evaluate import ExperimentConfig

    demo_config = Path("configs/experiments/demo.yaml")
    try:
        cfg = load_config(demo_config, ExperimentConfig).model_copy(update={"slots": slots, "output_dir": str(output)})
        shutil.rmtree(output / "jobs", ignore_errors=True)  # the demo always simulates afresh, never resumes
        _run_experiment(cfg, "local", None, None)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"table and figures in {output}/ (table.csv, avg_accuracy.png, reliability.png, throughput_per_s.png)")


# ---- runtime (issue 8): edge server, device, testbed ------------------------------------------
serve_app = typer.Typer(help="Long-running runtime processes.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")


@serve_app.command("edge")
def serve_edge(
    config: Path = typer.Option(Path("configs/runtime/edge.yaml"), help="Edge-server YAML (EdgeServerConfig)."),
    port: Optional[int] = typer.Option(None, help="Override the config's port (0: ephemeral)."),
    ready_file: Optional[Path] = typer.Option(None, help="Write {url, pid} here once listening."),
) -> None:
    """Edge server: decodes bitstreams of any served codec, runs the tail, EDF queue with batching (HTTP)."""
    from grl_aecnn.config import load_config
    from grl_aecnn.runtime.config import EdgeServerConfig
    from grl_aecnn.runtime.server import run_edge_server

    try:
        cfg = load_config(config, EdgeServerConfig)
        run_edge_server(cfg if port is None else cfg.model_copy(update={"port": port}), ready_file)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc


@app.command("device")
def device_cmd(
    config: Path = typer.Option(Path("configs/runtime/device.yaml"), help="Device YAML (DeviceConfig)."),
    port: Optional[int] = typer.Option(None, help="Override the config's port (0: ephemeral)."),
    ready_file: Optional[Path] = typer.Option(None, help="Write {url, pid} here once listening."),
) -> None:
    """Device: runs the head and encoder (or the whole model) on real test images, as the controller orders."""
    from grl_aecnn.config import load_config
    from grl_aecnn.runtime.config import DeviceConfig
    from grl_aecnn.runtime.device import run_device

    try:
        cfg = load_config(config, DeviceConfig)
        run_device(cfg if port is None else cfg.model_copy(update={"port": port}), ready_file)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc


@app.command("testbed")
def testbed_cmd(
    scenario: Path = typer.Option(Path("configs/scenarios/default.yaml"), help="Scenario YAML (N devices, M servers)."),
    policy: str = typer.Option("greedy", help="Any policy make_policy knows."),
    slots: int = typer.Option(20, min=1, help="Number of slots (real time: slot_s each, at least)."),
    seed: int = typer.Option(0, help="Seed of the environment and the policy (as in simulate)."),
    config: Path = typer.Option(Path("configs/runtime/testbed.yaml"), help="Testbed YAML (TestbedConfig)."),
    json_file: Path = typer.Option(Path("results/testbed.json"), "--json",
                                   help="Summary JSON; event log, sim-vs-real table, simulation and logs beside it."),
    allocator: str = typer.Option("optimal", help="optimal or equal (shares)."),
) -> None:
    """Real processes, sockets and models on this machine, driven slot by slot by the simulator; sim-vs-real table."""
    from grl_aecnn.config import load_config
    from grl_aecnn.runtime.config import TestbedConfig
    from grl_aecnn.runtime.testbed import comparison_markdown, run_testbed

    try:
        result = run_testbed(scenario, policy, slots, seed, load_config(config, TestbedConfig), json_file, allocator)
    except GrlAecnnError as exc:
        raise _fail(exc) from exc
    console.print(f"shaping: {result['shaping']['mode']} ({result['shaping']['why']}); task outcomes: "
                  f"{result['status_counts']}")
    console.print(comparison_markdown(result["sim_vs_real"], f"{result['scenario']}: policy {policy}, {slots} slots"))
    console.print(f"wrote {json_file} and its companions")
