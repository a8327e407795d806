import random

import pytest
import torch

from tests.training.synthetic import make_processed, tiny_config, tiny_encoder
from training.features import (
    NO_DATE,
    PAD,
    ClientRecord,
    FeatureBuilder,
    FeatureSchema,
    history_before_valid,
    split_examples,
    target_positions,
)


@pytest.fixture(scope="module")
def builder() -> FeatureBuilder:
    data, config = make_processed(n_clients=20), tiny_config(data={"max_sessions": 3, "max_labels": 2})
    return FeatureBuilder(data.vocab, FeatureSchema.create(data.vocab, config), tiny_encoder(data, config))


def test_build_batch_right_aligns_pads_and_truncates(builder: FeatureBuilder) -> None:
    histories = [[[1, 2, 3], [4], [5, 6], [7, 8]], [[9]]]  # 4 sessions > S = 3; a session of 3 > L = 2
    inputs = builder.build_batch(histories, [1, 2], [3, 0])
    assert inputs.hist.dtype == torch.int64 and inputs.hist.shape == (2, 3, 2)
    assert inputs.hist[0].tolist() == [[4, PAD], [5, 6], [7, 8]]  # oldest session dropped, newest last
    assert inputs.hist[1].tolist() == [[PAD, PAD], [PAD, PAD], [9, PAD]]
    assert inputs.gender.tolist() == [1, 2] and inputs.age.tolist() == [3, 0]
    assert inputs.doc_vec.dtype == torch.float32 and inputs.doc_vec.shape == (2, 8)
    assert inputs.ago.tolist() == [[NO_DATE] * 3] * 2  # no dates given: the model sees none


def test_build_batch_dates_become_days_before_the_reference(builder: FeatureBuilder) -> None:
    histories = [[[1], [4], [5], [7]], [[9]], [[2], [3]]]
    days = [[100, 110, 120, 125], [90], [None, 50]]
    inputs = builder.build_batch(histories, [1, 1, 1], [1, 1, 1], days, [130, 95, 60])
    assert inputs.ago.tolist() == [[20.0, 10.0, 5.0], [NO_DATE, NO_DATE, 5.0], [NO_DATE] * 3]
    assert builder.build_batch(histories[:1], [1], [1], days[:1], [None]).ago.tolist() == [[NO_DATE] * 3]
    with pytest.raises(ValueError, match="after its reference date"):
        builder.build_batch(histories[:1], [1], [1], days[:1], [124])


def test_build_batch_doc_vec_is_the_vector_of_the_visible_sessions(builder: FeatureBuilder) -> None:
    long, short = [[1, 2], [4], [5, 6], [7, 8]], [[4], [5, 6], [7, 8]]
    inputs = builder.build_batch([long, short], [1, 1], [1, 1])
    assert torch.equal(inputs.doc_vec[0], inputs.doc_vec[1])


def test_build_batch_empty_history_is_all_padding(builder: FeatureBuilder) -> None:
    inputs = builder.build_batch([[]], [0], [0])
    assert (inputs.hist == PAD).all() and not inputs.doc_vec.any()


def test_build_batch_unknown_label_id_raises(builder: FeatureBuilder) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        builder.build_batch([[[10_000]]], [0], [0])


def test_feature_schema_json_round_trip(builder: FeatureBuilder) -> None:
    schema = builder.schema
    assert FeatureSchema.from_json(schema.to_json()) == schema


def test_target_positions_follow_the_contract_split() -> None:
    assert list(target_positions(10, "train")) == list(range(1, 8))
    assert list(target_positions(10, "valid")) == [8]
    assert list(target_positions(10, "test")) == [9]
    assert list(target_positions(2, "valid")) == [] and list(target_positions(1, "test")) == []


def test_split_examples_history_is_every_session_before_the_target() -> None:
    record = ClientRecord(7, 1, 2, [[0], [1], [2], [3], [4]])
    test = split_examples([record], "test")
    assert test.histories == [[[0], [1], [2], [3]]] and test.targets == [[4]] and test.clnt_ids == [7]
    train = split_examples([record], "train")
    assert train.targets == [[1], [2]] and train.histories[1] == [[0], [1]]
    assert history_before_valid(record) == [[0], [1], [2]]
    assert test.days == [[None] * 4] and test.target_days == [None]
    dated = split_examples([ClientRecord(7, 1, 2, record.sessions, [10, 12, 15, 20, 21])], "valid")
    assert dated.days == [[10, 12, 15]] and dated.target_days == [20]


def test_split_examples_matches_processed_data_split_column() -> None:
    data = make_processed(n_clients=3, n_sessions=6)
    records = [ClientRecord(c, g, a, s) for c, g, a, s, _ in data.client_histories()]
    by_split = {
        split: sum(1 for _, _, _, _, splits in data.client_histories() for x in splits if x == split)
        for split in ("train", "valid", "test")
    }
    assert {split: len(split_examples(records, split)) for split in by_split} == by_split


def _ago_row(sessions: list[int | None], ref: int | None, s: int) -> list[float]:
    """One row of `ago_tensor`, spelled out: the newest s sessions right-aligned, or NO_DATE throughout."""
    kept = sessions[-s:]
    if ref is None or not kept or None in kept:
        return [NO_DATE] * s
    return [NO_DATE] * (s - len(kept)) + [float(ref - day) for day in kept if day is not None]


def test_ago_tensor_equals_the_row_by_row_rule_on_random_batches(builder: FeatureBuilder) -> None:
    rng, s = random.Random(0), builder.schema.max_sessions
    for _ in range(300):
        sorted_days = [sorted(rng.sample(range(400), rng.randint(0, 6))) for _ in range(rng.randint(0, 5))]
        days = [[None if rng.random() < 0.05 else day for day in row] for row in sorted_days]
        today = [None if rng.random() < 0.1 else rng.randint(400, 600) for _ in days]
        want = [_ago_row(sessions, ref, s) for sessions, ref in zip(days, today, strict=True)]
        assert builder.ago_tensor(days, today).tolist() == want
