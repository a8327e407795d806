"""The training loop: every baseline start ranks exactly as its baseline, the lambda loss, learning rates,
epoch 0 and early stopping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from tests.training.synthetic import make_processed, tiny_config
from training.baselines import Pool, fit_baselines
from training.evaluate import model_scores
from training.explore import WEIGHTS, choose_explore_weight
from training.features import FeatureBuilder, FeatureSchema, split_examples
from training.metrics import top_k
from training.pipeline import client_records
from training.train import EncodedSplit, build_model, lambda_loss, param_groups, train_model


class ZeroEncoder:
    def __init__(self, dim: int) -> None:
        self.dim = dim

    def infer(self, histories: Sequence[Sequence[Sequence[int]]]) -> np.ndarray:
        return np.zeros((len(histories), self.dim), dtype=np.float32)


@pytest.fixture(scope="module")
def setting() -> dict[str, object]:
    """40 synthetic clients of 8 sessions; a model window (10 sessions) that sees every history whole."""
    data = make_processed(n_clients=40, n_sessions=8)
    config = tiny_config(data={"max_sessions": 10}, start={"neighbour_pool": 30})
    schema = FeatureSchema.create(data.vocab, config)
    builder = FeatureBuilder(data.vocab, schema, ZeroEncoder(config.doc2vec.vector_size))
    records = client_records(data)
    pool = Pool.of(records, max_neighbours=config.start.neighbour_pool, seed=config.seed)
    splits = {}
    for split in ("train", "valid"):
        ex = split_examples(records, split)
        splits[split] = EncodedSplit(ex, builder.build_examples(ex), pool.neighbour_row_of(ex.clnt_ids))
    baselines = fit_baselines(pool, splits["valid"].examples, data.vocab.n_labels)
    pool_hist = builder.hist_tensor([builder.recent(h) for h in pool.neighbour_histories()])
    return {"data": data, "config": config, "schema": schema, "splits": splits, "baselines": baselines,
            "pool_hist": pool_hist}  # fmt: skip


@pytest.mark.parametrize("name", ["G-Pop", "P-Pop", "P-Pop (recency)", "ItemKNN", "TIFU-KNN", "EASE"])
def test_untrained_start_ranks_exactly_as_its_baseline(setting: dict, name: str) -> None:
    baseline = next(b for b in setting["baselines"] if b.name == name)
    if name == "TIFU-KNN":  # a setting where neighbours matter and the pool is capped (30 of 40 clients)
        baseline.params.update({"group_size": 3, "within": 0.9, "across": 0.7, "k": 5, "alpha": 0.3})
    valid = setting["splits"]["valid"]
    n = setting["data"].vocab.n_labels
    model = build_model(setting["schema"], setting["data"].vocab, setting["config"],
                        targets=setting["splits"]["train"].examples.targets, start_from=baseline,
                        pool_hist=setting["pool_hist"])  # fmt: skip
    got = top_k(model_scores(model, valid.inputs, valid.exclude), n)
    assert got == top_k(baseline.score(valid.examples), n)


def test_lambda_loss_prefers_targets_on_top_and_ignores_rows_without_targets() -> None:
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    good = lambda_loss(torch.tensor([[3.0, 1.0, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0]]), y, candidates=4)
    bad = lambda_loss(torch.tensor([[0.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]]), y, candidates=4)
    assert good < bad
    logits = torch.zeros(1, 4, requires_grad=True)
    lambda_loss(logits + torch.tensor([[0.0, 3.0, 2.0, 1.0]]), y[:1], candidates=4).backward()
    assert logits.grad is not None
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises the target, lowers the non-target


def test_param_groups_slow_down_all_but_the_start_weights(setting: dict) -> None:
    baseline = setting["baselines"][1]
    targets = setting["splits"]["train"].examples.targets
    model = build_model(setting["schema"], setting["data"].vocab, setting["config"], targets=targets,
                        start_from=baseline, pool_hist=setting["pool_hist"])  # fmt: skip
    groups, optim = param_groups(model, setting["config"]), setting["config"].optim
    assert groups[0]["params"][0] is model.wide.start.own_shared
    assert groups[1]["lr"] == pytest.approx(optim.lr * optim.rest_lr_scale)
    assert groups[2]["lr"] == pytest.approx(optim.lr * optim.deep_lr_scale)
    client_out = {id(p) for p in model.deep.client_out.parameters()}
    assert client_out <= {id(p) for p in groups[1]["params"]}  # one weight per label: slowed like the wide's
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in model.deep.parameters()} - client_out
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    plain = tiny_config(start={"baseline": "none"}, optim={"rest_lr_scale": 1.0})
    unstarted = build_model(setting["schema"], setting["data"].vocab, plain, targets=targets)
    assert len(param_groups(unstarted, plain)) == 2 and unstarted.wide.start is None


@pytest.mark.slow
def test_train_model_scores_the_start_as_epoch_zero_and_keeps_the_best(setting: dict) -> None:
    config = tiny_config(data={"max_sessions": 10}, optim={"max_epochs": 2})
    baseline = next(b for b in setting["baselines"] if b.name == "TIFU-KNN")
    splits = setting["splits"]
    targets = splits["train"].examples.targets
    model = build_model(setting["schema"], setting["data"].vocab, config, targets=targets,
                        start_from=baseline, pool_hist=setting["pool_hist"])  # fmt: skip
    result = train_model(model, config, train=splits["train"], valid=splits["valid"])
    start_ndcg = result.curve[0]["valid_ndcg@10"]
    assert [row["epoch"] for row in result.curve][:2] == [0, 1]
    assert result.best_valid_ndcg == max(row["valid_ndcg@10"] for row in result.curve) >= start_ndcg > 0.0


def test_explore_weight_is_the_validation_best_of_the_grid_and_stays_set(setting: dict) -> None:
    ease = next(b for b in setting["baselines"] if b.name == "EASE")
    valid = setting["splits"]["valid"]

    def model(mode: str) -> torch.nn.Module:
        config = setting["config"].with_mode(mode)
        return build_model(setting["schema"], setting["data"].vocab, config,
                           targets=setting["splits"]["train"].examples.targets,
                           start_from=setting["baselines"][4] if mode != "deep" else None,
                           pool_hist=setting["pool_hist"],
                           explore_map=torch.from_numpy(ease.similarity))  # fmt: skip

    started = model("wide_deep")
    chosen = choose_explore_weight(started, valid)
    assert list(chosen["valid"]) == [str(w) for w in WEIGHTS]
    total = {w: v["ndcg@10"] + v["new_ndcg@10"] for w, v in chosen["valid"].items()}
    assert chosen["weight"] == float(max(total, key=total.__getitem__))
    assert float(started.wide.explore_weight) == pytest.approx(chosen["weight"])  # float32
    again = model("wide_deep")
    again.wide.explore_weight.fill_(chosen["weight"])
    scores = model_scores(started, valid.inputs, valid.exclude)
    assert np.array_equal(scores, model_scores(again, valid.inputs, valid.exclude))
    assert choose_explore_weight(model("deep"), valid) == {"weight": 0.0, "valid": {}}
