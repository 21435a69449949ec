"""The committed codec results: measured with the weights the zoo ships, on the full test set, and
meeting the baselines' acceptance (each learned codec within one point of the uncompressed backbone at
its highest rate; AECNN at or above BottleNet++ wherever both cover the rate)."""

import json
from pathlib import Path

import numpy as np
import pytest

from grl_aecnn.zoo import load_card

RESULTS = Path(__file__).parents[1] / "results"
MODEL = "resnet20-cifar10"
ONE_POINT = 0.01


@pytest.fixture(scope="module")
def compare() -> dict:
    return json.loads((RESULTS / f"codec-compare-{MODEL}.json").read_text())


@pytest.fixture(scope="module")
def channel() -> dict:
    return json.loads((RESULTS / f"codec-deepjscc-{MODEL}.json").read_text())


def test_results_come_from_the_shipped_models_on_all_test_images(compare, channel):
    backbone = load_card(MODEL)
    for result in (compare, channel):
        assert result["n"] == backbone["dataset"]["test_n"] == 10_000
        assert result["top1_uncompressed"] == pytest.approx(backbone["top1"])
    for codec in ("aecnn", "bottlenetpp", "deepjscc"):
        assert compare["codec_weights_sha256"][codec] == load_card(f"{codec}-{MODEL}")["weights_sha256"], codec
    assert channel["weights_sha256"] == load_card(f"deepjscc-{MODEL}")["weights_sha256"]


@pytest.mark.parametrize("codec", ["aecnn", "bottlenetpp"])
def test_digital_codecs_reach_one_point_at_their_highest_rate(compare, codec):
    highest = max(compare["curves"][codec], key=lambda r: r["bytes_mean"])
    assert highest["top1"] >= compare["top1_uncompressed"] - ONE_POINT, highest


def test_deepjscc_reaches_one_point_at_its_highest_ratio_at_high_snr(compare, channel):
    awgn = [r for r in channel["levels"] if r["channel"] == "awgn" and r["trained_for"] == "awgn"]
    highest = max(awgn, key=lambda r: r["bandwidth_ratio"])
    for point in highest["snr"]:
        if point["snr_db"] >= 20:
            assert point["top1"] >= channel["top1_uncompressed"] - ONE_POINT, point
    # The profile's own draw (what the simulator uses) agrees.
    ratio = max(r["bandwidth_ratio"] for r in compare["deepjscc"])
    for row in compare["deepjscc"]:
        if row["bandwidth_ratio"] == ratio and row["snr_db"] >= 20:
            assert row["top1"] >= compare["top1_uncompressed"] - ONE_POINT, row


def test_aecnn_at_or_above_bottlenetpp_wherever_both_cover_the_rate(compare):
    aecnn = sorted(compare["curves"]["aecnn"], key=lambda r: r["bytes_mean"])
    log_bytes = np.log([r["bytes_mean"] for r in aecnn])
    for point in compare["curves"]["bottlenetpp"]:
        if log_bytes[0] <= np.log(point["bytes_mean"]) <= log_bytes[-1]:
            aecnn_top1 = np.interp(np.log(point["bytes_mean"]), log_bytes, [r["top1"] for r in aecnn])
            assert aecnn_top1 >= point["top1"], (point, aecnn_top1)
