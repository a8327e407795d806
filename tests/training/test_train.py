"""The training loop: the P-Pop and TIFU-KNN warm starts of the wide part, the lambda loss, epoch 0."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from tests.training.synthetic import hist_baskets, make_processed, tiny_config
from training.config import TrainConfig
from training.dataset import Vocabulary
from training.evaluate import top_k as evaluate_top_k
from training.features import PAD, FeatureBuilder, FeatureSchema, split_examples
from training.knn_baselines import (
    neighbour_mean,
    neighbour_order,
    tifu_vectors,
    top_k,
    with_popularity_ties,
)
from training.model import WideAndDeep
from training.pipeline import client_records, neighbour_pool
from training.train import (
    build_model,
    init_repeat_weight,
    init_tifu_start,
    lambda_loss,
    param_groups,
    train_model,
)

SCHEMA = FeatureSchema(
    max_sessions=3,
    max_labels=2,
    doc_dim=2,
    n_labels=4,
    n_clac1=1,
    n_genders=3,
    n_ages=9,
    d2v_infer_epochs=1,
    d2v_seed=0,
)
# Label 1 in three sessions, labels 0 and 2 in one each, label 3 never.
HIST = torch.tensor([[[0, 1], [1, PAD], [1, 2]]])


def _wide_logits(model: WideAndDeep) -> torch.Tensor:
    wide, _ = model.parts(HIST, torch.tensor([0]), torch.tensor([0]), torch.zeros(1, 2))
    return wide[0]


def test_init_repeat_weight_wide_part_starts_at_own_counts() -> None:
    torch.manual_seed(0)
    model = WideAndDeep(SCHEMA, [0, 0, 0, 0], mode="wide", hidden=(4,))

    init_repeat_weight(model, 2.0)

    logits = _wide_logits(model)
    assert logits.tolist() == pytest.approx(torch.log1p(torch.tensor([1.0, 3.0, 1.0, 0.0])).mul(2.0).tolist())


def test_init_repeat_weight_deep_only_model_is_unchanged() -> None:
    torch.manual_seed(0)
    model = WideAndDeep(SCHEMA, [0, 0, 0, 0], mode="deep", hidden=(4,))

    init_repeat_weight(model, 2.0)

    assert model.repeat_shared.abs().sum().item() == 0.0


def _random_hist(rng: np.random.Generator, n_clients: int, *, s: int, n_labels: int) -> torch.Tensor:
    """[n_clients, s, 3] right-aligned histories of 1..s sessions of 1-3 distinct labels."""
    hist = torch.full((n_clients, s, 3), PAD)
    for b in range(n_clients):
        for j in range(s - int(rng.integers(1, s + 1)), s):
            labels = rng.choice(n_labels, size=int(rng.integers(1, 4)), replace=False)
            hist[b, j, : len(labels)] = torch.from_numpy(labels)
    return hist


def test_tifu_start_ranks_exactly_as_tifu_knn() -> None:
    rng, n = np.random.default_rng(3), 12
    schema = dataclasses.replace(SCHEMA, max_sessions=6, max_labels=3, n_labels=n)
    pool = _random_hist(rng, 40, s=6, n_labels=n)
    query = _random_hist(rng, 40, s=6, n_labels=n)
    config = TrainConfig(neighbours=5, tifu_group_size=3, tifu_within=0.9, tifu_across=0.7, tifu_alpha=0.3)
    torch.manual_seed(0)
    model = build_model(schema, make_vocab_like(n), config, mode="wide_deep")
    model.set_pool(pool)
    init_tifu_start(model, config, pool)
    exclude = torch.arange(40)
    logits = model(query, torch.zeros(40, dtype=torch.int64), torch.zeros(40, dtype=torch.int64),
                   torch.randn(40, 2), exclude)  # fmt: skip
    own = tifu_vectors(hist_baskets(query, n), group_size=3, within=0.9, across=0.7)
    neighbours = tifu_vectors(hist_baskets(pool, n), group_size=3, within=0.9, across=0.7)
    near = neighbour_mean(neighbours, neighbour_order(own, neighbours, exclude.numpy()), 5)
    popularity = hist_baskets(pool, n).weighted_sum(np.ones(len(hist_baskets(pool, n).owner))).sum(0)
    expected = top_k(with_popularity_ties(0.3 * own + 0.7 * near, popularity), n)
    assert evaluate_top_k(logits.detach(), n) == expected


def make_vocab_like(n: int) -> Vocabulary:
    return Vocabulary(labels=[f"l{i}" for i in range(n)], label_clac1=[0] * n, clac1=["c"])


def test_lambda_loss_prefers_targets_on_top_and_ignores_rows_without_targets() -> None:
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    good = lambda_loss(torch.tensor([[3.0, 1.0, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0]]), y, candidates=4)
    bad = lambda_loss(torch.tensor([[0.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]]), y, candidates=4)
    assert good < bad
    logits = torch.zeros(1, 4, requires_grad=True)
    lambda_loss(logits + torch.tensor([[0.0, 3.0, 2.0, 1.0]]), y[:1], candidates=4).backward()
    assert logits.grad is not None
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises the target, lowers the non-target


def test_param_groups_slow_down_all_but_tifu_weights_only_with_tifu() -> None:
    model = WideAndDeep(SCHEMA, [0, 0, 0, 0], hidden=(4,))
    assert len(param_groups(model, TrainConfig())) == 1
    groups = param_groups(model, TrainConfig(tifu_group_size=2, lr=1e-2, rest_lr_scale=0.01))
    assert groups[0]["params"][0] is model.tifu_shared
    assert groups[1]["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.slow
def test_train_model_with_tifu_scores_the_start_as_epoch_zero() -> None:
    data = make_processed(n_clients=40, n_sessions=8)
    config = tiny_config(max_epochs=2, neighbours=5, tifu_group_size=2, loss="lambda", rest_lr_scale=0.0)
    schema = FeatureSchema.create(data.vocab, config)
    builder = FeatureBuilder(data.vocab, schema, _ZeroEncoder(config.d2v_vector_size))
    records = client_records(data)
    encoded = {
        split: (builder.build_batch(ex.histories, ex.genders, ex.ages), ex.targets)
        for split, ex in ((s, split_examples(records, s)) for s in ("train", "valid"))
    }
    pool = neighbour_pool(builder, records)
    train, valid = encoded["train"], encoded["valid"]
    result = train_model(schema, data.vocab, config, train=train, valid=valid, mode="wide_deep", pool=pool)
    assert [row["epoch"] for row in result.curve][:2] == [0, 1]
    assert result.best_valid_ndcg >= result.curve[0]["valid_ndcg@10"] > 0.0
    assert torch.all(result.model.out.weight == 0)  # rest_lr_scale 0: the deep output never moved


class _ZeroEncoder:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def infer(self, histories: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
        return np.zeros((len(histories), self.dim), dtype=np.float32)
