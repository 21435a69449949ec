"""Build an option profile from shipped models: every option run on every test sample.

Per sample and option: the real coded bytes (or channel symbols) and whether the edge server's
answer is right. Per option: device and server FLOPs, and the median CPU latency of each side at
batch size 1. Payloads and correctness come from the batched paths (same computation as the
one-image paths, many images at once; see `grl_aecnn.codecs.base`).

Analog options (DeepJSCC) are measured on an SNR grid: the encoder's symbols go through the codec's
channel (seeded noise, the same draw for every option at a grid point) and the server classifies
what arrives; `snr_correct` keeps every grid point.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, PositiveInt
from rich.progress import Progress

import grl_aecnn
from grl_aecnn.codecs import CODECS, Codec, load_codec_levels
from grl_aecnn.config import StrictModel
from grl_aecnn.data import ImageSet, load_dataset, to_tensor
from grl_aecnn.errors import ConfigError, ModelNotFoundError
from grl_aecnn.nets import count_flops
from grl_aecnn.profile.format import OptionMeta, OptionProfile, ProfileError, load_profile
from grl_aecnn.store import read_json
from grl_aecnn import zoo
from grl_aecnn.zoo import load_backbone, load_card

# How an option is named in the profile: "<codec>:<prefix><level>", e.g. "aecnn:L3", "jpeg:q50".
LEVEL_PREFIX = {"jpeg": "q", "bottlenetpp": "R"}
UNLEVELLED = ("raw", "png")


class ProfileBuildConfig(StrictModel):
    """One profile build. Sizes are test images; SNRs are dB at the receiver."""

    model: str = Field("resnet20-cifar10", description="zoo name of the backbone")
    codecs: tuple[str, ...] = Field(("aecnn", "bottlenetpp", "deepjscc", "raw", "png", "jpeg"),
                                    description="codec names (grl_aecnn.codecs.CODECS); each contributes all its levels")
    skip_missing: bool = Field(True, description="leave out codecs that are not in the zoo (named in the metadata)")
    limit: PositiveInt | None = Field(None, description="first N of a fixed shuffled order of the test set; None: all")
    batch_size: PositiveInt = 250
    latency_samples: PositiveInt = Field(30, description="batch-1 timings per side and option (median kept)")
    snr_grid_db: tuple[float, ...] = Field((-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
                                           description="SNR grid of analog options, strictly increasing")
    seed: int = Field(0, description="channel noise of analog options")
    threads: PositiveInt | None = None
    output: str | None = Field(None, description="path stem: writes <output>.json and <output>.npz; None: "
                                                 "profile-<model> in the zoo ($GRL_AECNN_ZOO when set, else the package's)")

    def output_stem(self) -> Path:
        return Path(self.output) if self.output else zoo.zoo_folders()[0] / f"profile-{self.model}"


def option_name(codec: Codec) -> str:
    if codec.codec_id in UNLEVELLED:
        return codec.codec_id
    if codec.codec_id == "deepjscc":
        return f"deepjscc:k{codec.symbols}"
    return f"{codec.codec_id}:{LEVEL_PREFIX.get(codec.codec_id, 'L')}{codec.level}"


def _median_ms(fn: Callable[[torch.Tensor], object], inputs) -> float:
    times = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _batches(images: torch.Tensor, size: int) -> Iterator[slice]:
    for start in range(0, len(images), size):
        yield slice(start, min(start + size, len(images)))


class _Measure:
    """Runs options over the test images and collects the profile's rows."""

    def __init__(self, cfg: ProfileBuildConfig, test_set: ImageSet, progress: Progress):
        self.cfg, self.progress = cfg, progress
        self.images = to_tensor(test_set.images, test_set.mean, test_set.std)
        self.labels = torch.as_tensor(test_set.labels)
        self.timing = self.images[: cfg.latency_samples]
        self.options: list[OptionMeta] = []
        self.payload: list[np.ndarray] = []
        self.correct: list[np.ndarray] = []
        self.snr_correct: list[np.ndarray] = []

    def _task(self, name: str):
        return self.progress.add_task(name, total=len(self.images))

    def local(self, backbone) -> None:
        task = self._task("local")
        right = []
        with torch.no_grad():
            for part in _batches(self.images, self.cfg.batch_size):
                right.append((backbone(self.images[part]).argmax(1) == self.labels[part]).numpy())
                self.progress.advance(task, part.stop - part.start)
            device_ms = _median_ms(lambda x: backbone(x[None]), self.timing)
        flops = count_flops(backbone, self.images[:1])
        self._add(OptionMeta("local", "local", flops, 0.0, device_ms, 0.0), np.zeros(len(self.images), np.int64),
                  np.concatenate(right))

    def bytes_option(self, codec: Codec) -> None:
        task = self._task(option_name(codec))
        sizes, right = [], []
        for part in _batches(self.images, self.cfg.batch_size):
            data = codec.encode_batch(self.images[part])
            sizes.append([len(d) for d in data])
            right.append((codec.decode_batch(data).argmax(1) == self.labels[part]).numpy())
            self.progress.advance(task, part.stop - part.start)
        frames = [codec.encode(x) for x in self.timing]
        meta = OptionMeta(option_name(codec), "bytes", codec.device_flops, codec.server_flops,
                          _median_ms(codec.encode, self.timing), _median_ms(codec.decode, frames))
        self._add(meta, np.concatenate(sizes).astype(np.int64), np.concatenate(right))

    def symbols_option(self, codec) -> None:
        grid = self.cfg.snr_grid_db
        task = self._task(option_name(codec))
        right = np.zeros((len(grid), len(self.images)), bool)
        for part in _batches(self.images, self.cfg.batch_size):
            symbols = codec.encode_symbols(self.images[part])
            for g, snr in enumerate(grid):
                # One generator per (grid point, batch): every analog option sees the same noise draw.
                seed = np.random.SeedSequence([self.cfg.seed, g, part.start]).generate_state(1)[0]
                gen = torch.Generator().manual_seed(int(seed))
                received = codec.transmit(symbols, snr, gen)
                right[g, part] = (codec.decode_symbols(received).argmax(1) == self.labels[part]).numpy()
            self.progress.advance(task, part.stop - part.start)
        received = [codec.encode_symbols(x) for x in self.timing]
        meta = OptionMeta(option_name(codec), "symbols", codec.device_flops, codec.server_flops,
                          _median_ms(codec.encode_symbols, self.timing), _median_ms(codec.decode_symbols, received))
        self.snr_correct.append(right)
        self._add(meta, np.full(len(self.images), codec.symbols, np.int64), right[-1])

    def _add(self, meta: OptionMeta, payload: np.ndarray, correct: np.ndarray) -> None:
        self.options.append(meta)
        self.payload.append(payload)
        self.correct.append(correct.astype(bool))


def build_profile(cfg: ProfileBuildConfig, show_progress: bool = True) -> OptionProfile:
    """Measure every option of every listed codec; the profile records its provenance."""
    if len(cfg.snr_grid_db) < 1 or any(b <= a for a, b in zip(cfg.snr_grid_db, cfg.snr_grid_db[1:])):
        raise ConfigError("snr_grid_db must be a non-empty, strictly increasing list")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    card = load_card(cfg.model)
    test_set = load_dataset(card["dataset"]["name"], "test").take(cfg.limit)
    backbone = load_backbone(cfg.model)
    if unknown := sorted(set(cfg.codecs) - set(CODECS)):
        raise ConfigError(f"unknown codecs {unknown}; known: {sorted(CODECS)}")
    levels, missing = {}, []
    for name in cfg.codecs:
        try:
            levels[name] = load_codec_levels(name, cfg.model)
        except ModelNotFoundError:
            if not cfg.skip_missing:
                raise
            missing.append(name)
    with Progress(disable=not show_progress) as progress:
        measure = _Measure(cfg, test_set, progress)
        measure.local(backbone)
        for name, codecs in levels.items():
            for codec in codecs:
                (measure.symbols_option if hasattr(codec, "encode_symbols") else measure.bytes_option)(codec)
    n_sym = len(measure.snr_correct)
    provenance = {
        "config": cfg.model_dump(mode="json"), "package_version": grl_aecnn.__version__,
        "torch_version": torch.__version__, "dataset_source": test_set.source, "backbone_sha256": card["weights_sha256"],
        "codecs": {name: _codec_sha256(name, cfg.model) for name in levels}, "missing_codecs": missing,
    }
    return OptionProfile(
        model=cfg.model, dataset=card["dataset"]["name"], dataset_checksum=test_set.checksum.removeprefix("sha256:"),
        options=tuple(measure.options), payload=np.stack(measure.payload), correct=np.stack(measure.correct),
        snr_grid_db=np.asarray(cfg.snr_grid_db if n_sym else (), float),
        snr_correct=np.stack(measure.snr_correct) if n_sym else np.zeros((0, 0, len(test_set)), bool),
        provenance=provenance,
    )


def option_codec(name: str) -> str:
    """The codec an option belongs to: "aecnn:L3" -> "aecnn", "png" -> "png"."""
    return name.split(":", 1)[0]


def merge_profiles(base: OptionProfile, extra: OptionProfile, replace: bool = False) -> OptionProfile:
    """`base` plus the offloading options of `extra`, which must be measured on the same test samples
    with the same backbone: adds a codec to a profile without measuring the others again. With
    `replace`, the codecs `extra` measured take the place of their options in `base` (a retrained
    codec; the other options keep their order), instead of clashing with them."""
    if (extra.model, extra.dataset_checksum) != (base.model, base.dataset_checksum):
        raise ProfileError(f"cannot merge: {extra.model} on {extra.dataset_checksum[:12]} vs "
                           f"{base.model} on {base.dataset_checksum[:12]} (another model or other test samples)")
    if not np.array_equal(extra.correct[extra.local_index], base.correct[base.local_index]):
        raise ProfileError("cannot merge: the local answers differ, so the profiles used different backbone weights")
    added = [(extra, i) for i, o in enumerate(extra.options) if o.kind != "local"]
    codecs = {option_codec(extra.names[i]) for _, i in added}
    dropped = [i for i, name in enumerate(base.names) if replace and option_codec(name) in codecs]
    kept = [(base, i) for i in range(len(base.options)) if i not in dropped]
    if clash := sorted({base.names[i] for _, i in kept} & {extra.names[i] for _, i in added}):
        raise ProfileError(f"cannot merge: both profiles have {clash}")
    # a replaced codec goes where its first old option was; a new one at the end
    at = sum(1 for _, i in kept if i < dropped[0]) if dropped else len(kept)
    order = kept[:at] + added + kept[at:]
    options = tuple(src.options[i] for src, i in order)
    symbols = [(src, i) for src, i in order if src.options[i].kind == "symbols"]
    if symbols and len({tuple(src.snr_grid_db) for src, _ in symbols}) > 1:
        raise ProfileError("cannot merge: the analog options were measured on different SNR grids")
    grid = symbols[0][0].snr_grid_db if symbols else np.zeros(0)
    provenance = {**base.provenance, "codecs": {**base.provenance.get("codecs", {}), **extra.provenance.get("codecs", {})},
                  "merged_from": [base.provenance, extra.provenance]}
    return OptionProfile(
        model=base.model, dataset=base.dataset, dataset_checksum=base.dataset_checksum, options=options,
        payload=np.stack([src.payload[i] for src, i in order]), correct=np.stack([src.correct[i] for src, i in order]),
        snr_grid_db=grid,
        snr_correct=(np.stack([src.snr_correct[src.symbols_row(i)] for src, i in symbols]) if symbols
                     else np.zeros((0, 0, base.n_samples), bool)),
        provenance=provenance,
    )


def _codec_sha256(codec: str, model: str) -> str | None:
    """SHA-256 of a shipped codec's weights from its zoo card; None for codecs without weights (image codecs)."""
    card = zoo.zoo_file(f"{codec}-{model}.json")
    return read_json(card).get("weights_sha256") if card.exists() else None


def shipped_profile_path(model: str = "resnet20-cifar10") -> Path:
    return zoo.zoo_file(f"profile-{model}.json")


def load_shipped_profile(model: str = "resnet20-cifar10") -> OptionProfile:
    """The zoo's profile of `model` (checksums and model name verified on load)."""
    path = shipped_profile_path(model)
    if not path.exists():
        raise ProfileError(f"no shipped profile for {model!r} ({path}); build one with `grl-aecnn profile build`")
    return load_profile(path, expected_model=model)
