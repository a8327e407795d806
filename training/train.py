"""The training loop: the model and its start, mini-batches, AdamW, the loss, early stopping on NDCG@10."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.baselines import Baseline
from training.config import TrainConfig
from training.dataset import Vocabulary
from training.features import Examples, FeatureSchema, ModelInputs
from training.metrics import mean_ndcg
from training.model import HistoryFeatures, WideAndDeep
from training.start import BaselineStart, history_entries

log = logging.getLogger(__name__)
FEATURE_BATCH = 512  # examples per batch when computing features once
LAMBDA_CANDIDATES = 50  # the lambda loss ranks each row's top 50: the top 10 and what may enter it


@dataclass(frozen=True)
class EncodedSplit:
    """One split's examples, their model inputs and each example's own neighbour-pool row (or -1)."""

    examples: Examples
    inputs: ModelInputs
    exclude: torch.Tensor  # int64 [E]


@dataclass
class TrainResult:
    """The best model (weights of its best validation epoch) and how it got there."""

    model: WideAndDeep
    curve: list[dict[str, float]] = field(default_factory=list)  # per epoch: loss, valid NDCG@10
    best_epoch: int = 0
    best_valid_ndcg: float = 0.0
    seconds: float = 0.0
    examples_per_s: float = 0.0


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def multi_hot(targets: Sequence[Sequence[int]], n_labels: int) -> torch.Tensor:
    """float32 [B, N] with 1 at every target label."""
    y = torch.zeros(len(targets), n_labels)
    rows = [b for b, t in enumerate(targets) for _ in t]
    y[rows, [i for t in targets for i in t]] = 1.0
    return y


def lambda_loss(logits: torch.Tensor, y: torch.Tensor, candidates: int = LAMBDA_CANDIDATES) -> torch.Tensor:
    """LambdaRank (Burges, 2010) over each row's `candidates` top-scored labels: a logistic loss on every
    (target, non-target) pair, weighted by how much swapping the two would change DCG at their current
    ranks. It only cares about the order near the top, as NDCG@10 does."""
    score, label = logits.topk(min(candidates, logits.shape[1]), dim=1)
    rel = y.gather(1, label)
    gain = 1.0 / torch.log2(torch.arange(2, score.shape[1] + 2, dtype=torch.float32, device=logits.device))
    pairs = rel.unsqueeze(2) * (1.0 - rel).unsqueeze(1)  # [B, C, C]: i a target, j not
    weight = pairs * (gain.view(-1, 1) - gain.view(1, -1)).abs()
    loss = nn.functional.softplus(score.unsqueeze(1) - score.unsqueeze(2))  # log(1 + e^-(s_i - s_j))
    return ((weight * loss).sum((1, 2)) / weight.sum((1, 2)).clamp(min=1e-12)).mean()


def loss_fn(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """ "bce": per-label binary cross-entropy summed over labels; "softmax": the target labels' mean
    negative log-probability under one softmax over all labels (a listwise loss); "lambda":
    `lambda_loss`."""
    if kind == "lambda":
        return lambda_loss(logits, y)
    if kind == "softmax":
        return (-(torch.log_softmax(logits, dim=1) * y).sum(1) / y.sum(1).clamp(min=1.0)).mean()
    return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1).mean()


def explore_loss(
    logits: torch.Tensor, y: torch.Tensor, bought: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The loss of the "new to you" ranking: the labels in the history pushed out of reach, the target's
    other labels as the truth."""
    return loss_fn(logits.masked_fill(bought, -1.0e4), y * (~bought).float(), config.optim.loss)


def build_start(
    baseline: Baseline, schema: FeatureSchema, config: TrainConfig, pool_hist: torch.Tensor
) -> BaselineStart:
    """The graph's copy of `baseline`: its spec, its extras (ItemKNN's similarity) and, for TIFU-KNN, the
    neighbour pool's own vectors computed by the start itself from `pool_hist` [P, S, L]."""
    start = BaselineStart(baseline.start(), schema.n_labels, schema.max_sessions)
    baseline.configure_start(start)
    if start.k > 0:
        with torch.no_grad():
            own = [start.own(history_entries(h.long(), schema.n_labels)) for h in pool_hist.split(256)]
        start.set_pool(torch.cat(own))
    return start


def build_model(
    schema: FeatureSchema,
    vocab: Vocabulary,
    config: TrainConfig,
    *,
    targets: Sequence[Sequence[int]],
    start_from: Baseline | None = None,
    pool_hist: torch.Tensor | None = None,
    label_gap: Sequence[float] | None = None,
    explore_map: torch.Tensor | None = None,
) -> WideAndDeep:
    """A fresh model of config.model.mode. Started at a baseline, it ranks exactly as that baseline: the
    bias is the baseline's popularity tie-breaker (training/start.py; G-Pop itself) and every other
    contribution, the deep output included, is 0. Otherwise the bias starts at each label's log-odds
    among `targets`. `label_gap`: each label's population purchase cycle in days (training/cycles.py);
    `explore_map`: EASE's label-label map for the "new to you" term, whose weight starts at 0 (chosen on
    validation after training: training/explore.py)."""
    seed_everything(config.seed)
    start = None
    if start_from is not None:
        start = build_start(
            start_from, schema, config, pool_hist if pool_hist is not None else torch.empty(0)
        )
    model = WideAndDeep(schema, vocab.label_clac1, config.model, start, label_gap)
    if explore_map is not None:
        model.wide.set_explore_map(explore_map)
    with torch.no_grad():
        if start_from is not None:
            model.wide.bias.copy_(start_from.start().bias(torch.from_numpy(start_from.popularity)))
            model.deep.zero_output()
        else:
            freq = multi_hot(targets, vocab.n_labels).mean(0).clamp(1e-4, 1 - 1e-4)
            bias = model.wide.bias if model.use_wide else model.deep.client_out.bias
            bias.copy_(torch.log(freq) - torch.log1p(-freq))  # epoch 1 starts from G-Pop
    return model


def param_groups(model: WideAndDeep, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups. Adam moves each weight by about lr per step whatever its gradient, so
    weights of one label each (the wide part's per-label weights, the client tower's output) would drown a
    start's few shared weights: with a start, those learn at lr x rest_lr_scale, the start's weights at
    lr, and the deep part's shared weights (embeddings, hidden layers, the candidate scorer) at
    lr x deep_lr_scale. Without a start, the wide part learns at lr."""
    optim = config.optim
    start, deep = model.wide.start, model.deep
    per_label = {id(p) for p in deep.client_out.parameters()}
    shared_deep = [p for p in deep.parameters() if id(p) not in per_label]
    groups = [{"params": shared_deep, "lr": optim.lr * optim.deep_lr_scale}]
    if start is None:
        return [{"params": [*model.wide.parameters(), *deep.client_out.parameters()]}, *groups]
    own = {id(p) for p in start.parameters()}
    rest = [p for p in model.wide.parameters() if id(p) not in own] + list(deep.client_out.parameters())
    return [
        {"params": list(start.parameters())},
        {"params": rest, "lr": optim.lr * optim.rest_lr_scale},
        *groups,
    ]


def precompute_features(model: WideAndDeep, split: EncodedSplit) -> HistoryFeatures:
    """Every example's `HistoryFeatures`, computed once: they hold no trainable weight, so each epoch would
    compute the same again. Each batch's are written into tensors of the split's size as they come (joining
    the batches at the end held every feature twice: 1.2 GB more at the lpoint preset's peak)."""
    n, out = len(split.examples), None
    with torch.no_grad():
        for start in range(0, n, FEATURE_BATCH):
            b = ModelInputs(*(t[start : start + FEATURE_BATCH] for t in split.inputs))
            own_row = split.exclude[start : start + FEATURE_BATCH]
            f = model.features(b.hist.long(), b.ago, b.gender, b.age, own_row)
            out = _map(lambda t: t.new_empty((n, *t.shape[1:])), f) if out is None else out
            for into, part in zip(_tensors(out), _tensors(f), strict=True):
                into[start : start + part.shape[0]] = part
    if out is None:
        raise ValueError("no examples to compute features of")
    return out


def _map(fn: Callable[[torch.Tensor], torch.Tensor], f: Any) -> Any:
    """`fn` of every tensor of a (nested) NamedTuple of tensors, in the same structure."""
    return fn(f) if isinstance(f, torch.Tensor) else type(f)(*(_map(fn, t) for t in f))


def _tensors(f: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) NamedTuple of tensors, in field order."""
    return [f] if isinstance(f, torch.Tensor) else [t for part in f for t in _tensors(part)]


def _rows(f: Any, idx: torch.Tensor) -> Any:
    """The rows `idx` of every tensor of a (nested) NamedTuple."""
    return _map(lambda t: t[idx], f)


def run_epoch(
    model: WideAndDeep,
    optimizer: torch.optim.Optimizer,
    train: EncodedSplit,
    features: HistoryFeatures,
    *,
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    """One pass over the shuffled examples (`features`: theirs, precomputed); the mean batch loss."""
    model.train()
    targets = train.examples.targets
    order = torch.randperm(len(targets), generator=generator)
    n_labels, total = model.wide.bias.shape[0], 0.0
    for start in range(0, len(targets), config.optim.batch_size):
        idx = order[start : start + config.optim.batch_size]
        batch, f = ModelInputs(*(t[idx] for t in train.inputs)), _rows(features, idx)
        y = multi_hot([targets[i] for i in idx.tolist()], n_labels)
        logits = model.logits(f, batch.gender, batch.age, batch.doc_vec)
        loss = loss_fn(logits, y, config.optim.loss)
        if config.optim.explore_weight > 0:
            loss = loss + config.optim.explore_weight * explore_loss(logits, y, f.counts > 0, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / max(len(targets), 1)


def valid_ndcg(model: WideAndDeep, valid: EncodedSplit, features: HistoryFeatures) -> float:
    """Validation NDCG@10 from the split's precomputed features."""
    model.eval()
    inputs, out = valid.inputs, []
    with torch.inference_mode():
        for start in range(0, len(valid.examples), FEATURE_BATCH):
            rows = torch.arange(start, min(start + FEATURE_BATCH, len(valid.examples)))
            f = _rows(features, rows)
            out.append(model.logits(f, inputs.gender[rows], inputs.age[rows], inputs.doc_vec[rows]).numpy())
    return mean_ndcg(np.concatenate(out), [set(t) for t in valid.examples.targets])


def train_model(
    model: WideAndDeep, config: TrainConfig, *, train: EncodedSplit, valid: EncodedSplit
) -> TrainResult:
    """Train `model`; stop after `patience` epochs without a better valid NDCG@10 and keep the best epoch's
    weights. A started model's untrained state is scored as epoch 0, so early stopping can keep it."""
    torch.set_num_threads(config.torch_threads)
    torch.set_flush_denormal(True)  # tiny decayed weights turn denormal, and x86 is slow on those
    optim = config.optim
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=optim.lr, weight_decay=optim.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    result, best_state, started = TrainResult(model), copy.deepcopy(model.state_dict()), time.perf_counter()
    train_features, valid_features = precompute_features(model, train), precompute_features(model, valid)
    if model.wide.start is not None:
        result.best_valid_ndcg = valid_ndcg(model, valid, valid_features)
        result.curve.append({"epoch": 0, "loss": float("nan"), "valid_ndcg@10": result.best_valid_ndcg})
    mode = config.model.mode
    bar = tqdm(range(1, optim.max_epochs + 1), desc=f"train {mode}", unit="epoch", leave=False)
    for epoch in bar:
        loss = run_epoch(model, optimizer, train, train_features, config=config, generator=generator)
        ndcg = valid_ndcg(model, valid, valid_features)
        result.curve.append({"epoch": epoch, "loss": loss, "valid_ndcg@10": ndcg})
        bar.set_postfix(loss=f"{loss:.4f}", valid_ndcg10=f"{ndcg:.4f}", best=f"{result.best_valid_ndcg:.4f}")
        if ndcg > result.best_valid_ndcg:
            result.best_epoch, result.best_valid_ndcg = epoch, ndcg
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= optim.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    epochs = sum(1 for row in result.curve if row["epoch"] > 0)
    result.examples_per_s = len(train.examples) * epochs / max(result.seconds, 1e-9)
    log.info("%s: best valid NDCG@10 %.4f at epoch %d, %.1f s", mode, result.best_valid_ndcg,
             result.best_epoch, result.seconds)  # fmt: skip
    return result
