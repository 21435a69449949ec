from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from grl_aecnn.entropy import PRECISION_BITS, EntropyModel, channel_histograms
from grl_aecnn.entropy.models import DEFAULT_NEIGHBOURS, NEIGHBOUR_STATES, NEIGHBOURS, context_count, symbol_contexts
from grl_aecnn.store import load_tensors, save_tensors

CONTEXTS = context_count(DEFAULT_NEIGHBOURS)  # the above/left model

TOTAL = 2**PRECISION_BITS


def test_fit_gives_full_precision_rows_with_every_symbol_encodable():
    rng = np.random.default_rng(0)
    symbols = np.minimum(rng.geometric(0.5, size=(50, 3, 4, 4)) - 1, 7)  # symbols 8..15 never occur
    model = EntropyModel.fit(symbols, bits=4)
    assert model.frequencies.shape == (3, 16) and model.frequencies.dtype == np.int32
    assert np.all(model.frequencies.sum(axis=1) == TOTAL)
    assert np.all(model.frequencies >= 1)
    # More frequent symbols get more probability.
    assert np.all(np.diff(model.frequencies[:, :7], axis=1) < 0)


def test_histograms_of_batches_add_up_and_count_per_channel():
    rng = np.random.default_rng(1)
    symbols = rng.integers(0, 4, size=(10, 2, 3, 3))
    symbols[:, 1] = 3
    whole = channel_histograms(symbols, 2)
    assert np.array_equal(whole, channel_histograms(symbols[:4], 2) + channel_histograms(symbols[4:], 2))
    assert np.array_equal(whole[1], [0, 0, 0, 90])
    assert whole[0].sum() == 90
    assert np.array_equal(channel_histograms(torch.from_numpy(symbols), 2), whole)


def test_contexts_come_from_the_neighbours_above_and_left():
    symbols = np.array([[[0, 2], [7, 1]]])  # one channel of 2 x 2
    # state: 0 outside, else 1 + min(symbol, 3); context = state(above) * 5 + state(left)
    assert np.array_equal(symbol_contexts(symbols), [[[0, 1], [1 * 5, 3 * 5 + 4]]])
    assert NEIGHBOUR_STATES**2 == CONTEXTS


def test_contexts_of_other_neighbours_follow_their_offsets():
    # Two channels of 2 x 3; states 1 + min(symbol, 3), 0 outside.
    symbols = np.array([[[0, 1, 2], [3, 9, 0]], [[1, 1, 1], [2, 2, 2]]])
    states = 1 + np.minimum(symbols, 3)
    above_right = symbol_contexts(symbols, ["above_right"])
    assert (above_right[:, 0] == 0).all() and np.array_equal(above_right[:, 1, :2], states[:, 0, 1:])
    assert np.array_equal(above_right[:, 1, 2], [0, 0])
    two_up = symbol_contexts(np.concatenate([symbols, symbols], axis=1), ["above_above"])  # 4 rows
    assert (two_up[:, :2] == 0).all() and np.array_equal(two_up[:, 2:], states)
    previous = symbol_contexts(symbols, ["previous_channel"])
    assert (previous[0] == 0).all() and np.array_equal(previous[1], states[0])
    # Digits in the order given, the first most significant.
    both = symbol_contexts(symbols, ["previous_channel", "above_left"])
    assert both[1, 1, 1] == states[0, 1, 1] * NEIGHBOUR_STATES + states[1, 0, 0]
    with pytest.raises(ValueError, match="distinct names"):
        symbol_contexts(symbols, ["above", "below"])
    with pytest.raises(ValueError, match="distinct names"):
        symbol_contexts(symbols, ["left", "left"])


def test_a_model_over_every_neighbour_round_trips_and_old_context_metadata_means_above_left():
    rng = np.random.default_rng(9)
    symbols = rng.integers(0, 4, size=(6, 3, 4, 4))
    wide = EntropyModel.fit(symbols, 2, neighbours=list(NEIGHBOURS))
    assert wide.frequencies.shape == (3, 5**6, 4) and wide.contexts == 5**6
    assert wide.metadata()["neighbours"] == list(NEIGHBOURS)
    loaded = EntropyModel.from_tensors(wide.to_tensors(), wide.metadata())
    assert loaded.neighbours == tuple(NEIGHBOURS) and np.array_equal(loaded.frequencies, wide.frequencies)
    above_left = EntropyModel.fit(symbols, 2, neighbours=DEFAULT_NEIGHBOURS)
    legacy = {k: v for k, v in above_left.metadata().items() if k != "neighbours"}  # written before neighbours
    assert EntropyModel.from_tensors(above_left.to_tensors(), legacy).neighbours == DEFAULT_NEIGHBOURS
    with pytest.raises(ValueError, match="shape"):  # a table that does not fit the named neighbours
        EntropyModel.from_tensors(above_left.to_tensors(), {**above_left.metadata(), "neighbours": ["above"]})
    with pytest.raises(ValueError, match="list of names"):
        EntropyModel.from_tensors(wide.to_tensors(), {**wide.metadata(), "neighbours": "above"})


def test_context_histograms_add_up_to_the_iid_ones():
    rng = np.random.default_rng(3)
    symbols = rng.integers(0, 8, size=(6, 3, 5, 4))
    per_context = channel_histograms(symbols, 3, neighbours=DEFAULT_NEIGHBOURS)
    assert per_context.shape == (3, CONTEXTS, 8)
    assert np.array_equal(per_context.sum(axis=1), channel_histograms(symbols, 3))
    # The top-left symbol of each map is the only one with both neighbours outside.
    assert per_context[:, 0].sum() == 6 * 3
    model = EntropyModel.fit(symbols, 3, neighbours=DEFAULT_NEIGHBOURS)
    assert model.contexts == CONTEXTS and np.all(model.frequencies.sum(axis=-1) == TOTAL)


def test_scaling_is_exact_integer_arithmetic():
    # Uniform counts divide 2^24 exactly.
    uniform = EntropyModel.from_counts(np.full((1, 4), 7), bits=2)
    assert np.array_equal(uniform.frequencies, [[TOTAL // 4] * 4])
    # Smoothed counts [2, 1, 1, 1]: 1 + floor shares of 2^24 - 4 are [6710885, 3355443 x3] with
    # remainders [4, 2, 2, 2]; the 2 missing units go to the largest remainder, then to the lowest
    # symbol among the tied ones.
    skewed = EntropyModel.from_counts(np.array([[1, 0, 0, 0]]), bits=2)
    assert np.array_equal(skewed.frequencies, [[6710886, 3355444, 3355443, 3355443]])
    # A symbol never seen among a billion samples keeps the smallest representable share.
    assert EntropyModel.from_counts(np.array([[10**9, 0]]), bits=1).frequencies[0, 1] == 1


def test_model_round_trips_through_safetensors_and_json(tmp_path):
    model = EntropyModel.fit(np.random.default_rng(2).integers(0, 8, size=(5, 3, 2, 2)), bits=3)
    save_tensors(tmp_path / "model.safetensors", model.to_tensors())
    (tmp_path / "model.json").write_text(json.dumps(model.metadata()))
    loaded = EntropyModel.from_tensors(
        load_tensors(tmp_path / "model.safetensors"), json.loads((tmp_path / "model.json").read_text())
    )
    assert loaded.bits == 3 and np.array_equal(loaded.frequencies, model.frequencies)


def test_context_models_round_trip_and_old_metadata_means_iid():
    rng = np.random.default_rng(4)
    context = EntropyModel.fit(rng.integers(0, 4, size=(5, 2, 3, 3)), bits=2, neighbours=DEFAULT_NEIGHBOURS)
    loaded = EntropyModel.from_tensors(context.to_tensors(), context.metadata())
    assert loaded.contexts == CONTEXTS and np.array_equal(loaded.frequencies, context.frequencies)
    iid = EntropyModel(2, valid_table())
    legacy = {k: v for k, v in iid.metadata().items() if k != "contexts"}  # written before context models
    assert EntropyModel.from_tensors(iid.to_tensors(), legacy).contexts == 1
    with pytest.raises(ValueError, match="contexts"):
        EntropyModel.from_tensors(context.to_tensors(), {**context.metadata(), "contexts": 1})


def test_model_is_immutable():
    model = EntropyModel.from_counts(np.ones((1, 2), dtype=np.int64), bits=1)
    with pytest.raises(ValueError):
        model.frequencies[0, 0] = 5


def valid_table() -> np.ndarray:
    return np.full((2, 4), TOTAL // 4, dtype=np.int32)


def with_entry(value: int) -> np.ndarray:
    table = valid_table()
    table[0, 0] = value
    table[0, 1] += TOTAL // 4 - value  # keep the row sum, so only the entry itself is wrong
    return table


@pytest.mark.parametrize(
    ("bits", "table", "reason"),
    [
        (2, with_entry(0), ">= 1"),
        (2, with_entry(-3), ">= 1"),
        (2, valid_table()[:, :3], "shape"),
        (3, valid_table(), "shape"),
        (2, valid_table()[0], "shape"),
        (2, np.stack([valid_table()] * 3, axis=1), "shape"),  # 3 contexts, not CONTEXTS
        (2, valid_table() + 1, "sum"),
        (2, valid_table().astype(np.float32), "integers"),
        (0, valid_table(), "bits"),
    ],
)
def test_invalid_tables_raise_value_error_naming_the_problem(bits, table, reason):
    with pytest.raises(ValueError, match=reason):
        EntropyModel(bits, table)


def test_loading_checks_metadata_against_the_tensors():
    model = EntropyModel(2, valid_table())
    tensors, metadata = model.to_tensors(), model.metadata()
    cases = [
        ({}, metadata, "lack"),
        ({"frequencies": tensors["frequencies"].long()}, metadata, "int32"),
        (tensors, {**metadata, "format": "other"}, "format"),
        (tensors, {**metadata, "precision_bits": 16}, "precision"),
        (tensors, {**metadata, "bits": 3}, "shape"),
        (tensors, {**metadata, "bits": "2"}, "bits"),
        (tensors, {**metadata, "channels": 5}, "channels"),
    ]
    for bad_tensors, bad_metadata, reason in cases:
        with pytest.raises(ValueError, match=reason):
            EntropyModel.from_tensors(bad_tensors, bad_metadata)


@pytest.mark.parametrize(
    "call",
    [
        lambda: EntropyModel.from_counts(np.array([[1, -1]]), bits=1),
        lambda: EntropyModel.from_counts(np.ones((2, 3), dtype=np.int64), bits=1),
        lambda: channel_histograms(np.full((1, 1, 2, 2), 4), bits=2),
        lambda: channel_histograms(np.zeros((1, 2, 2)), bits=2),
        lambda: channel_histograms(np.zeros((1, 1, 2, 2), dtype=np.float32), bits=2),
    ],
    ids=["negative-count", "count-shape", "symbol-too-big", "not-nchw", "float-symbols"],
)
def test_invalid_fit_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
