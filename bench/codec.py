"""Benchmark: our entropy stage against general-purpose compressors on the same quantized symbols.

Data imitate split tensors: a Laplacian field, scaled and shifted per channel and passed through a
ReLU, so over half of the values are exact zeros. Two kinds bracket real feature maps: "iid" draws
every activation independently, "smooth" averages 3x3 neighbourhoods first, so neighbouring
activations are strongly correlated (which LZ-style compressors exploit, our per-channel i.i.d.
model does not, and our context model, "ours-context", does through the above/left neighbours). Per-channel ranges and the entropy model are fitted on a training set; each
test sample (one (k, H, W) tensor, as sent per inference request) is then coded on its own.

Ours codes the symbols into a complete frame (header and CRC included). zstd (levels 19 and 3) and
brotli (quality 11) get the same symbols as bytes in two layouts: "packed", b bits per symbol, and
"u8", one symbol per byte; their decode includes unpacking back to the symbol array. Bytes are
means per sample; times are medians over --repeats of the per-sample mean. Ratios are against ours
from the same run: bytes x > 1 means bigger than ours, speed x > 1 means faster than ours.

    python bench/codec.py --repeats 5 --json bench-codec.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from grl_aecnn.entropy import (DEFAULT_NEIGHBOURS, EntropyModel, decode_tensor_frame, encode_tensor_frame,
                               fit_channel_range, quantize)
from grl_aecnn.store import atomic_write_json

DATA_KINDS = ("iid", "smooth")
CHANNEL_COUNTS = (8, 32, 64)
SPATIAL_SIZES = (8, 16)
BIT_DEPTHS = (2, 4, 8)
TRAIN_SAMPLES = 256
CODEC_ID = "aecnn"


@dataclass(frozen=True)
class Compressor:
    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]


def relu_laplacian_features(rng: np.random.Generator, kind: str, n: int, k: int, size: int) -> torch.Tensor:
    """n samples of k channels; each channel has its own scale and shift, shared by all samples."""
    if kind == "iid":
        field = rng.laplace(0.0, 1.0, size=(n, k, size, size))
    else:  # 3x3 box average of a larger field; dividing by 3 keeps the unit scale of 9 summed terms
        wide = rng.laplace(0.0, 1.0, size=(n, k, size + 2, size + 2))
        field = sum(wide[:, :, i : i + size, j : j + size] for i in range(3) for j in range(3)) / 3.0
    scale = rng.lognormal(0.0, 0.5, size=(1, k, 1, 1))
    shift = rng.normal(0.0, 0.5, size=(1, k, 1, 1))
    return torch.from_numpy(np.maximum(field * scale + shift, 0.0).astype(np.float32))


def pack_bits(symbols: np.ndarray, bits: int) -> bytes:
    """Each symbol as its low `bits` bits, most significant first, densely concatenated."""
    planes = np.unpackbits(symbols.reshape(-1, 1), axis=1)[:, 8 - bits :]
    return np.packbits(planes).tobytes()


def unpack_bits(data: bytes, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    return np.packbits(np.pad(planes, ((0, 0), (8 - bits, 0))), axis=1).reshape(shape)


def general_purpose_compressors(bits: int, shape: tuple[int, ...]) -> list[Compressor]:
    """zstd and brotli in both layouts; a missing package is skipped with a message."""
    backends: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = []
    try:
        import zstandard
    except ImportError:
        print("zstandard not installed: skipping zstd", file=sys.stderr)
    else:
        for level in (19, 3):
            compressor = zstandard.ZstdCompressor(level=level)
            backends.append((f"zstd-{level}", compressor.compress, zstandard.ZstdDecompressor().decompress))
    try:
        import brotli
    except ImportError:
        print("brotli not installed: skipping brotli", file=sys.stderr)
    else:
        backends.append(("brotli-11", lambda data: brotli.compress(data, quality=11), brotli.decompress))

    compressors = []
    for name, compress, decompress in backends:
        compressors.append(
            Compressor(
                f"{name}/packed",
                lambda s, compress=compress: compress(pack_bits(s, bits)),
                lambda d, decompress=decompress: unpack_bits(decompress(d), bits, shape),
            )
        )
        compressors.append(
            Compressor(
                f"{name}/u8",
                lambda s, compress=compress: compress(s.tobytes()),
                lambda d, decompress=decompress: np.frombuffer(decompress(d), dtype=np.uint8).reshape(shape),
            )
        )
    return compressors


def median_seconds_per_sample(run: Callable[[], object], samples: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) / samples)
    return statistics.median(times)


def measure(compressor: Compressor, test_symbols: np.ndarray, repeats: int) -> dict[str, float]:
    encoded = [compressor.encode(s) for s in test_symbols]
    for original, data in zip(test_symbols, encoded, strict=True):
        if not np.array_equal(compressor.decode(data), original):
            raise AssertionError(f"{compressor.name} did not reproduce the symbols")
    samples = len(test_symbols)
    return {
        "bytes": float(np.mean([len(d) for d in encoded])),
        "encode_us": 1e6
        * median_seconds_per_sample(lambda: [compressor.encode(s) for s in test_symbols], samples, repeats),
        "decode_us": 1e6 * median_seconds_per_sample(lambda: [compressor.decode(d) for d in encoded], samples, repeats),
    }


def run_config(
    rng: np.random.Generator, kind: str, k: int, size: int, bits: int, test_samples: int, repeats: int
) -> dict:
    # One draw, so training and test samples share each channel's scale and shift.
    train, test = relu_laplacian_features(rng, kind, TRAIN_SAMPLES + test_samples, k, size).split(
        [TRAIN_SAMPLES, test_samples]
    )
    lo, hi = fit_channel_range(train)
    train_symbols = quantize(train, lo, hi, bits)
    model = EntropyModel.fit(train_symbols, bits)
    context_model = EntropyModel.fit(train_symbols, bits, neighbours=DEFAULT_NEIGHBOURS)
    test_symbols = quantize(test, lo, hi, bits).numpy()
    shape = (k, size, size)

    ours = Compressor(
        "ours",
        lambda s: encode_tensor_frame(s, model, CODEC_ID, level=bits),
        lambda d: decode_tensor_frame(d, model, expected_codec=CODEC_ID),
    )
    # a context model over the above/left neighbours (the shipped AECNN levels 2-8 use five causal
    # neighbours, configs/codecs/aecnn-r3-L*.yaml); the i.i.d. "ours" stays the reference
    ours_context = Compressor(
        "ours-context",
        lambda s: encode_tensor_frame(s, context_model, CODEC_ID, level=bits),
        lambda d: decode_tensor_frame(d, context_model, expected_codec=CODEC_ID),
    )
    results = {"ours": measure(ours, test_symbols, repeats)}
    for compressor in [ours_context, *general_purpose_compressors(bits, shape)]:
        result = measure(compressor, test_symbols, repeats)
        result["bytes_x_ours"] = result["bytes"] / results["ours"]["bytes"]
        result["encode_speed_x_ours"] = results["ours"]["encode_us"] / result["encode_us"]
        result["decode_speed_x_ours"] = results["ours"]["decode_us"] / result["decode_us"]
        results[compressor.name] = result
    return {
        "data": kind,
        "k": k,
        "size": size,
        "bits": bits,
        "zero_fraction": float((test_symbols == 0).mean()),
        "raw_packed_bytes": int(np.prod(shape)) * bits / 8,
        "compressors": results,
    }


def print_config(config: dict) -> None:
    label = f"{config['data']} k={config['k']} {config['size']}x{config['size']} b={config['bits']}"
    print(f"\n{label}  (raw {config['raw_packed_bytes']:.0f} B packed, {config['zero_fraction']:.0%} zeros)")
    print(f"  {'compressor':<18}{'bytes':>9}{'bytes x':>9}{'enc us':>9}{'enc spd x':>11}{'dec us':>9}{'dec spd x':>11}")
    for name, r in config["compressors"].items():
        ratios = (r.get("bytes_x_ours", 1.0), r.get("encode_speed_x_ours", 1.0), r.get("decode_speed_x_ours", 1.0))
        print(
            f"  {name:<18}{r['bytes']:>9.1f}{ratios[0]:>9.2f}{r['encode_us']:>9.1f}{ratios[1]:>11.2f}"
            f"{r['decode_us']:>9.1f}{ratios[2]:>11.2f}"
        )


def summarize(configs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Geometric means of the ratios against ours, per data kind and compressor."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for kind in DATA_KINDS:
        rows = [c["compressors"] for c in configs if c["data"] == kind]
        summary[kind] = {
            name: {
                ratio: float(np.exp(np.mean([np.log(row[name][ratio]) for row in rows])))
                for ratio in ("bytes_x_ours", "encode_speed_x_ours", "decode_speed_x_ours")
            }
            for name in rows[0]
            if name != "ours"
        }
    return summary


def print_summary(summary: dict[str, dict[str, dict[str, float]]]) -> None:
    print("\nGeometric means over configurations (x ours; bytes > 1: bigger than ours, speed > 1: faster)")
    print(f"  {'data':<8}{'compressor':<18}{'bytes x':>9}{'enc spd x':>11}{'dec spd x':>11}")
    for kind, compressors in summary.items():
        for name, r in compressors.items():
            print(
                f"  {kind:<8}{name:<18}{r['bytes_x_ours']:>9.2f}{r['encode_speed_x_ours']:>11.2f}"
                f"{r['decode_speed_x_ours']:>11.2f}"
            )


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("constriction", "zstandard", "brotli", "numpy", "torch"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats; medians are reported")
    parser.add_argument("--samples", type=int, default=64, help="test tensors per configuration")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.repeats < 1 or args.samples < 1:
        parser.error("--repeats and --samples must be >= 1")

    rng = np.random.default_rng(args.seed)
    configs = []
    for kind in DATA_KINDS:
        for k in CHANNEL_COUNTS:
            for size in SPATIAL_SIZES:
                for bits in BIT_DEPTHS:
                    configs.append(run_config(rng, kind, k, size, bits, args.samples, args.repeats))
                    print_config(configs[-1])
    summary = summarize(configs)
    print_summary(summary)
    if args.json:
        report = {
            "settings": vars(args) | {"train_samples": TRAIN_SAMPLES},
            "platform": platform.platform(),
            "python": platform.python_version(),
            "packages": package_versions(),
            "summary": summary,
            "configs": configs,
        }
        atomic_write_json(args.json, report)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
