"""Accuracy of DeepJSCC over an SNR grid: the analog path (symbols, channel, reconstruction,
backbone) on a test set, with seeded noise so a grid point gives the same figure on every run."""

from __future__ import annotations

import torch

from grl_aecnn.codecs.channel import transmit
from grl_aecnn.codecs.deepjscc.codec import DeepJsccCodec
from grl_aecnn.data import ImageSet, iterate_batches
from grl_aecnn.nets.training import evaluate

SNR_GRID_DB = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0)


@torch.no_grad()
def evaluate_snr_grid(codec: DeepJsccCodec, test_set: ImageSet, snrs_db=SNR_GRID_DB, channel: str | None = None,
                      seed: int = 0, batch_size: int = 500) -> list[dict]:
    """Per SNR: top-1 of the backbone on the reconstructions, and their PSNR (dB, pixels in [0, 1]).
    The noise of grid point i comes from a generator seeded with (seed, i)."""
    channel = channel or codec.channel
    rows = []
    for i, snr in enumerate(snrs_db):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        correct, squared_error = 0, 0.0
        for x, y in iterate_batches(test_set, batch_size):
            pixels = codec.reconstruct(transmit(codec.encode_symbols(x), snr, channel, generator))
            logits = codec.backbone(codec.model.normalize(pixels))
            correct += int((logits.argmax(1) == y).sum())
            squared_error += float((pixels - codec.model.pixels(x)).square().flatten(1).mean(1).sum())
        mse = squared_error / len(test_set)
        rows.append({"snr_db": snr, "top1": correct / len(test_set),
                     "psnr_db": float(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))))})
    return rows


def evaluate_channels(levels: list[DeepJsccCodec], model: str, test_set: ImageSet, snrs_db=SNR_GRID_DB,
                      channels=("awgn",), seed: int = 0) -> dict:
    """Every level on every channel over the SNR grid; the uncompressed figure is the codec's own backbone's."""
    first_image = next(iterate_batches(test_set, 1))[0][0]
    rows = [{"level": c.level, "symbols": c.symbols, "bandwidth_ratio": c.bandwidth_ratio, "trained_for": c.channel,
             "channel": ch, "snr": evaluate_snr_grid(c, test_set, snrs_db, ch, seed)}
            for c in levels for ch in channels]
    return {"codec": "deepjscc", "model": model, "n": len(test_set), "dataset_checksum": test_set.checksum,
            "seed": seed, "top1_uncompressed": evaluate(levels[0].backbone, test_set),
            # the whole frame a digital link sends (header and CRC included), measured on the first image
            "bytes_per_image_digital": {str(c.level): len(c.encode(first_image)) for c in levels},
            "levels": rows}
