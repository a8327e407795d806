"""The training configuration: one dataclass, loaded from a JSON file plus `KEY=VALUE` overrides."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import ConfigError

MODES = ("wide_deep", "wide", "deep")
LOSSES = ("bce", "softmax", "lambda")


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of `wdrec train`; the defaults train the default generated set in minutes on 2 cores."""

    seed: int = 42  # seeds numpy, torch and gensim: same data + config -> same metrics
    threads: int = 1  # torch intra-op threads, 0 = os.cpu_count(). Ops here are small (batch x labels), and
    # on a busy 2-core machine 2 threads ran an epoch 7x slower than 1 (36 s vs 5 s): threads spin-wait

    # Features
    max_sessions: int = 10  # S: the seed keeps each client's 10 most recent sessions
    max_labels: int = 32  # L: distinct CLAC3 labels kept per session; real baskets rarely hold more

    # Doc2Vec
    d2v_dm: int = 0  # 0 = PV-DBOW. Measured on the default set (deep-only model, valid NDCG@10): PV-DM 0.265,
    # PV-DBOW 0.263, a tie, but PV-DM's training + inference took 2.7x longer (65 s vs 24 s)
    d2v_vector_size: int = 32  # small: the wide part carries the repeats, the vector only the "taste"
    d2v_epochs: int = 20  # gensim's usual 10-20; sessions are short documents
    d2v_window: int = 5  # only PV-DM uses it; a basket has no word order anyway
    d2v_negative: int = 5  # negative sampling, gensim's default
    d2v_infer_epochs: int = 20  # fixed, so inference is reproducible and as converged as training

    # Model
    mode: str = "wide_deep"  # one of MODES; "wide" and "deep" are the ablations
    hidden: tuple[int, ...] = (512, 256, 128, 64)  # the seed's MLP
    dropout: float = 0.5  # valid NDCG@10 0.270 vs 0.268 at the seed's 0.3 (keep probability 0.7)
    demo_dim: int = 8  # gender and age embeddings: a handful of codes each
    label_emb_dim: int = 32  # mean label embedding of the history fed to the deep part; 0 = off
    cross_rank: int = 8  # rank of the cross weights (CLAC1 x gender x age, CLAC1 pair x age): dense ones
    # (G*A*C or C*C*A rows by N labels) overfit ~8k training targets within two epochs
    copurchase_rank: int = 32  # rank of the label -> label co-purchase map
    repeat_init: float = 0.0  # start value of the shared weight of log1p(own count): > 0 starts the wide
    # part at P-Pop's order (the G-Pop bias breaks ties); The Complete Journey cap10: 2.0 gave valid NDCG@10
    # 0.2863 vs 0.2818 from 0 (results/completejourney.md)
    neighbours: int = 0  # k of the in-graph user-KNN feature (0 = off): the k training clients whose
    # decayed history vectors are most cosine-similar vote for labels, as in TIFU-KNN (Hu et al., 2020)
    neighbour_decay: float = 0.9  # per-session decay of those history vectors
    neighbour_init: float = 1.0  # start value of the neighbour feature's shared wide weight
    tifu_group_size: int = 0  # TIFU-KNN in the wide part (0 = off): its own-history vector as a feature and
    # its neighbour rule for the neighbour feature (k = `neighbours`), with its group size, within-group
    # and across-group decays (training/knn_baselines.py). On, the model starts exactly at TIFU-KNN's
    # ranking (every other part from 0) and validation also scores that start as "epoch 0"
    tifu_within: float = 1.0
    tifu_across: float = 1.0
    tifu_alpha: float = 0.5  # TIFU-KNN's own-vs-neighbours mix: weights start at scale * (alpha, 1 - alpha)
    tifu_scale: float = 10.0  # the TIFU start's logit scale (matters to the softmax and lambda losses)
    rest_lr_scale: float = 1.0  # with the TIFU start: the learning rate of every weight but TIFU's, times lr
    bias_init: float = 1.0  # the output bias starts at this times each label's G-Pop log-odds: with
    # neighbours, 0 lets the neighbours' personal popularity replace the global one (see completejourney.md)

    # Optimisation
    loss: str = "bce"  # one of LOSSES: "bce" per label (the seed), "softmax" listwise over labels
    lr: float = 1e-3  # AdamW; 3e-3 overfits by epoch 3, the seed's 1e-4 needs hundreds of epochs
    weight_decay: float = 1e-4  # AdamW's decoupled decay; mild, the wide part is sparse
    batch_size: int = 256  # the seed's
    max_epochs: int = 30  # an upper bound: early stopping ends runs well before
    patience: int = 3  # epochs without a better valid NDCG@10 before stopping
    ablations: bool = True  # also train wide-only and deep-only models for the report

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, MODES)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("d2v_dm", self.d2v_dm, (0, 1))
        positive = ("max_sessions", "max_labels", "d2v_vector_size", "d2v_epochs", "d2v_infer_epochs")
        for name in (*positive, "batch_size", "max_epochs", "patience", "lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config {name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config dropout must be in [0, 1), got {self.dropout!r}")
        if self.neighbours < 0 or not 0.0 < self.neighbour_decay <= 1.0:
            raise ConfigError("config neighbours must be >= 0 and neighbour_decay in (0, 1]")
        if self.tifu_group_size < 0 or not (0.0 < self.tifu_within <= 1.0 and 0.0 < self.tifu_across <= 1.0):
            raise ConfigError("config tifu_group_size must be >= 0 and tifu_within, tifu_across in (0, 1]")
        if not 0.0 <= self.tifu_alpha <= 1.0 or self.rest_lr_scale < 0:
            raise ConfigError("config tifu_alpha must be in [0, 1] and rest_lr_scale >= 0")
        if self.threads < 0 or any(h <= 0 for h in self.hidden):
            raise ConfigError("config threads must be >= 0 and every hidden size > 0")

    @property
    def torch_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config {name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    """Check `value` against the type of field `name`; ints are accepted for floats, lists for tuples."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise ConfigError(f"unknown config key {name!r}; known: {', '.join(sorted(fields))}")
    default = fields[name].default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"config {name} expects {type(default).__name__}, got {value!r}")
    return value


def _parse_override(item: str) -> tuple[str, Any]:
    """`KEY=VALUE`: VALUE is read as JSON (numbers, true/false, [lists]) and otherwise as a bare string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def load_config(config_file: Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """The defaults, updated by `config_file` (a JSON object) and then by each `KEY=VALUE` override."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {config_file} must hold a JSON object")
        values.update(loaded)
    values.update(_parse_override(item) for item in overrides)
    return TrainConfig(**{name: _coerce(name, value) for name, value in values.items()})
