"""The training loop: mini-batches, AdamW, BCE (or listwise softmax) loss, early stopping on valid NDCG@10."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.config import TrainConfig
from training.dataset import Vocabulary
from training.evaluate import model_rankings
from training.features import FeatureSchema, ModelInputs
from training.metrics import mean_metric, ndcg_at_k
from training.model import WideAndDeep

log = logging.getLogger(__name__)
LAMBDA_CANDIDATES = 50  # the lambda loss ranks each row's top 50: the top 10 and what may enter it
TIE_EPS = 1e-5  # the TIFU start's popularity tie-breaker: float32 logits near 1 resolve ~1e-7
TIFU_WEIGHTS = ("tifu_shared", "tifu_label", "neighbour_shared", "neighbour_label")


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


def build_model(schema: FeatureSchema, vocab: Vocabulary, config: TrainConfig, *, mode: str) -> WideAndDeep:
    return WideAndDeep(
        schema,
        vocab.label_clac1,
        mode=mode,
        hidden=config.hidden,
        dropout=config.dropout,
        demo_dim=config.demo_dim,
        label_emb_dim=config.label_emb_dim,
        cross_rank=config.cross_rank,
        copurchase_rank=config.copurchase_rank,
        neighbours=config.neighbours,
        neighbour_decay=config.neighbour_decay,
        tifu=(config.tifu_group_size, config.tifu_within, config.tifu_across),
    )


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


def init_label_bias(
    model: WideAndDeep, targets: Sequence[Sequence[int]], n_labels: int, *, scale: float = 1.0
) -> None:
    """Start the output bias at `scale` times each label's log-odds among the targets (1: epoch 1 starts
    from G-Pop)."""
    freq = multi_hot(targets, n_labels).mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        (model.bias if model.use_wide else model.out.bias).copy_(
            scale * (torch.log(freq) - torch.log1p(-freq))
        )


def init_repeat_weight(model: WideAndDeep, value: float, *, neighbour: float = 0.0) -> None:
    """Start the shared weight of log1p(own count) at `value`: with the G-Pop bias, epoch 1 is near P-Pop;
    and the neighbour feature's shared weight at `neighbour`."""
    if model.use_wide:
        with torch.no_grad():
            model.repeat_shared[0] = value
            model.neighbour_shared[0] = neighbour if model.n_neighbours > 0 else 0.0


def init_tifu_start(model: WideAndDeep, config: TrainConfig, pool: torch.Tensor | None) -> None:
    """Start the wide part at TIFU-KNN's ranking: scale * (alpha * own + (1 - alpha) * neighbours) plus a
    bias of TIE_EPS * G-Pop (the baseline's tie-breaker: label counts over the pool's sessions); every
    other contribution, the deep part's output and gates included, starts at 0."""
    n = model.bias.shape[0]
    popularity = torch.zeros(n)
    if pool is not None:
        with torch.no_grad():
            for h in pool.split(256):
                popularity += model.presence(h.long()).sum((0, 1))
    with torch.no_grad():
        model.bias.copy_(TIE_EPS * popularity / popularity.max().clamp(min=1.0))
        model.tifu_shared.fill_(config.tifu_scale * config.tifu_alpha)
        model.neighbour_shared.fill_(config.tifu_scale * (1.0 - config.tifu_alpha))
        for weight in (model.out.weight, model.out.bias, model.repeat_gate.weight, model.repeat_gate.bias):
            weight.zero_()


def param_groups(model: WideAndDeep, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups: with the TIFU start (TIFU on, a wide part), every parameter but the TIFU
    weights learns at `rest_lr_scale` times the learning rate (Adam moves each weight by about lr per
    step whatever its fan-in, so a 64-wide output layer moves the logits far more than a shared weight)."""
    if config.tifu_group_size == 0 or not model.use_wide:
        return [{"params": list(model.parameters())}]
    named = dict(model.named_parameters())
    rest = [p for name, p in named.items() if name not in TIFU_WEIGHTS]
    return [
        {"params": [named[name] for name in TIFU_WEIGHTS]},
        {"params": rest, "lr": config.lr * config.rest_lr_scale},
    ]


def run_epoch(
    model: WideAndDeep,
    optimizer: torch.optim.Optimizer,
    inputs: ModelInputs,
    targets: Sequence[Sequence[int]],
    *,
    config: TrainConfig,
    generator: torch.Generator,
) -> float:
    """One pass over the shuffled examples; the mean batch loss."""
    model.train()
    order = torch.randperm(len(targets), generator=generator)
    n_labels, total = model.bias.shape[0], 0.0
    for start in range(0, len(targets), config.batch_size):
        idx = order[start : start + config.batch_size]
        hist, gender, age, doc_vec = (t[idx] for t in inputs[:4])
        exclude = None if inputs.exclude is None else inputs.exclude[idx]
        y = multi_hot([targets[i] for i in idx.tolist()], n_labels)
        loss = loss_fn(model(hist.long(), gender, age, doc_vec, exclude), y, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / max(len(targets), 1)


def train_model(
    schema: FeatureSchema,
    vocab: Vocabulary,
    config: TrainConfig,
    *,
    train: tuple[ModelInputs, Sequence[Sequence[int]]],
    valid: tuple[ModelInputs, Sequence[Sequence[int]]],
    mode: str,
    pool: torch.Tensor | None = None,
) -> TrainResult:
    """Train one model of `mode`; stop after `patience` epochs without a better valid NDCG@10. `pool`:
    the `hist` tensor of the neighbour pool's clients (used if config.neighbours > 0)."""
    seed_everything(config.seed)
    torch.set_num_threads(config.torch_threads)
    torch.set_flush_denormal(True)  # tiny decayed weights turn denormal, and x86 is slow on those
    model = build_model(schema, vocab, config, mode=mode)
    init_label_bias(model, train[1], vocab.n_labels, scale=config.bias_init)
    if pool is not None and config.neighbours > 0:
        model.set_pool(pool)
    init_repeat_weight(model, config.repeat_init, neighbour=config.neighbour_init)
    if config.tifu_group_size > 0 and model.use_wide:
        init_tifu_start(model, config, pool)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    truths = [set(t) for t in valid[1]]
    result, best_state, started = TrainResult(model), copy.deepcopy(model.state_dict()), time.perf_counter()
    if config.tifu_group_size > 0 and model.use_wide:  # a start worth keeping: early stopping may choose it
        result.best_valid_ndcg = mean_metric(ndcg_at_k, model_rankings(model, valid[0], 10), truths, 10)
        result.curve.append({"epoch": 0, "loss": float("nan"), "valid_ndcg@10": result.best_valid_ndcg})
    bar = tqdm(range(1, config.max_epochs + 1), desc=f"train {mode}", unit="epoch", leave=False)
    for epoch in bar:
        loss = run_epoch(model, optimizer, *train, config=config, generator=generator)
        ndcg = mean_metric(ndcg_at_k, model_rankings(model, valid[0], 10), truths, 10)
        result.curve.append({"epoch": epoch, "loss": loss, "valid_ndcg@10": ndcg})
        bar.set_postfix(loss=f"{loss:.4f}", valid_ndcg10=f"{ndcg:.4f}", best=f"{result.best_valid_ndcg:.4f}")
        if ndcg > result.best_valid_ndcg:
            result.best_epoch, result.best_valid_ndcg = epoch, ndcg
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - result.best_epoch >= config.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    result.examples_per_s = len(train[1]) * len(result.curve) / max(result.seconds, 1e-9)
    log.info(
        "%s: best valid NDCG@10 %.4f at epoch %d, %.1f s",
        mode,
        result.best_valid_ndcg,
        result.best_epoch,
        result.seconds,
    )
    return result
