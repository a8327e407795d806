"""The training configuration: nested pydantic models, read from a JSON file, a named preset and overrides.

`wdrec train` starts from the defaults below (the recipe chosen on validation, see results/), then applies
`--preset NAME` (training/presets/NAME.json), then `--config FILE`, then each `--set section.key=value`.
Every value is checked by pydantic: ranges, choices, and the cross-field rules in `TrainConfig`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.errors import ConfigError

PRESETS_DIR = Path(__file__).parent / "presets"
Mode = Literal["wide_deep", "wide", "deep"]
Loss = Literal["bce", "softmax", "lambda"]
StartBaseline = Literal["auto", "none", "G-Pop", "P-Pop", "P-Pop (recency)", "ItemKNN", "TIFU-KNN", "EASE"]


class Section(BaseModel):
    """A config section: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(Section):
    """What the model sees of each history, and which targets it trains on."""

    max_sessions: int = Field(10, gt=0)  # S: the seed keeps each client's 10 most recent sessions
    max_labels: int = Field(128, gt=0)  # L: distinct CLAC3 labels kept per session; 32 cut 8% of The
    # Complete Journey's baskets, 128 none (a slot costs memory only where baskets are that large)
    train_targets_per_client: int | None = Field(None, gt=0)  # each client's newest N training targets;
    # None = all. Long histories have dozens of targets per client, and old ones say least about the next


class Doc2VecConfig(Section):
    """gensim Doc2Vec over sessions as documents of CLAC3 names (training/doc2vec.py)."""

    dm: Literal[0, 1] = 0  # PV-DBOW. On the default set (deep-only model, valid NDCG@10): PV-DM 0.265,
    # PV-DBOW 0.263, a tie, but PV-DM's training + inference took 2.7x longer (65 s vs 24 s)
    vector_size: int = Field(32, gt=0)  # small: the wide part carries the repeats, the vector the "taste"
    epochs: int = Field(20, gt=0)  # gensim's usual 10-20; sessions are short documents
    window: int = Field(5, gt=0)  # only PV-DM uses it; a basket has no word order anyway
    negative: int = Field(5, ge=0)  # negative sampling, gensim's default
    infer_epochs: int = Field(20, gt=0)  # fixed, so inference is reproducible and as converged as training


class ModelConfig(Section):
    """The Wide & Deep network (training/model.py)."""

    mode: Mode = "wide_deep"  # "wide" and "deep" are the ablations
    hidden: tuple[int, ...] = (64, 32)  # the per-candidate MLP: it runs once per (client, label) pair,
    # so it is narrow (the seed's 512-256-128-64 ran once per client)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    deep_candidates: int = Field(100, gt=0)  # labels per client the deep part's candidate scorer sees:
    # the best so far and the history's; it costs candidates x hidden per client, not labels x hidden
    # (200 ranked The Complete Journey no better, and trained and served slower: README, Results)
    demo_dim: int = Field(8, gt=0)  # gender and age embeddings: a handful of codes each
    label_emb_dim: int = Field(16, gt=0)  # a label's embedding in the deep part (the candidate, and the
    # history's mean as the client's taste)
    cross_rank: int = Field(8, gt=0)  # rank of the cross weights (CLAC1 x gender x age, CLAC1 pair x age):
    # dense ones (G*A*C or C*C*A rows by N labels) overfit ~8k training targets within two epochs
    copurchase_rank: int = Field(32, gt=0)  # rank of the label -> label co-purchase map

    @field_validator("hidden")
    @classmethod
    def _hidden_positive(cls, hidden: tuple[int, ...]) -> tuple[int, ...]:
        if not hidden or any(size <= 0 for size in hidden):
            raise ValueError("must list one or more positive layer sizes")
        return hidden


class StartConfig(Section):
    """Where the wide part starts: at a baseline's ranking, computed inside the graph (training/start.py)."""

    baseline: StartBaseline = "auto"  # "auto": the baseline with the best validation NDCG@10; "none":
    # every weight from its usual init. On The Complete Journey, training from scratch stayed below
    # P-Pop; started at TIFU-KNN it ends above it (results/completejourney.md)
    neighbour_pool: int = Field(1000, gt=0)  # at most this many clients' vectors in the graph (a seeded
    # sample beyond): a request's neighbour search costs pool x labels whatever the client count, and
    # model.pt stays ~10 MB (results/neighbours.md)


class OptimConfig(Section):
    """The training loop (training/train.py)."""

    loss: Loss = "lambda"  # LambdaRank over each row's top 50: the BCE and softmax losses drifted away
    # from the start on The Complete Journey; "bce" per label is the seed's
    lr: float = Field(1e-2, gt=0.0)  # AdamW, for the start's weights (all weights without a start)
    rest_lr_scale: float = Field(1e-3, gt=0.0, le=1.0)  # with a start: every other wide weight learns at
    # lr x this. Adam moves each weight by about lr a step whatever its fan-in, so at the same rate the deep
    # output layer drowned the start (valid NDCG@10 0.2941 -> 0.2959 at 1e-3, 0.2941 kept at 1e-2)
    deep_lr_scale: float = Field(0.01, gt=0.0, le=1.0)  # the deep part's shared weights learn at lr x this.
    # Complete Journey cap10, valid NDCG@10 after one epoch from the TIFU-KNN start (0.2941): 0.01 -> 0.2955,
    # 0.03 -> 0.2937, 0.1 -> 0.2779, 0.3 -> 0.2777: a faster candidate scorer reorders the start's top 10
    explore_weight: float = Field(0.5, ge=0.0)  # adds this x the loss of the "new to you" ranking (history
    # labels removed, the target's other labels as truth). Complete Journey cap10, test "new to you" NDCG@10:
    # 0.5 -> 0.0757, 0 -> 0.0736
    weight_decay: float = Field(1e-4, ge=0.0)  # AdamW's decoupled decay; mild, the wide part is sparse
    batch_size: int = Field(256, gt=0)  # the seed's
    max_epochs: int = Field(30, gt=0)  # an upper bound: early stopping ends runs well before
    patience: int = Field(3, gt=0)  # epochs without a better valid NDCG@10 before stopping


class TrainConfig(Section):
    """Every knob of `wdrec train`; the defaults are the recipe chosen on validation (README, results/)."""

    seed: int = 42  # seeds numpy, torch and gensim: same data + config -> same metrics (README: Determinism)
    threads: int = Field(1, ge=0)  # torch intra-op threads, 0 = os.cpu_count(). Ops here are small, and on
    # a busy 2-core machine 2 threads ran an epoch 7x slower than 1 (36 s vs 5 s): threads spin-wait
    ablations: bool = True  # also train the other two modes (wide-only, deep-only) for the model card
    data: DataConfig = DataConfig()
    doc2vec: Doc2VecConfig = Doc2VecConfig()
    model: ModelConfig = ModelConfig()
    start: StartConfig = StartConfig()
    optim: OptimConfig = OptimConfig()

    @model_validator(mode="after")
    def _start_needs_wide(self) -> TrainConfig:
        if self.start.baseline != "none" and self.model.mode == "deep":
            raise ValueError(
                "start.baseline starts the wide part, which model.mode 'deep' drops: set start.baseline=none"
            )
        if self.start.baseline == "none" and self.optim.rest_lr_scale != 1.0:
            raise ValueError(
                "optim.rest_lr_scale slows every weight but the start's, and start.baseline is 'none': "
                "set optim.rest_lr_scale=1"
            )
        return self

    @property
    def torch_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    @property
    def method_name(self) -> str:
        """The trained model's name in metrics and on the model card."""
        return method_name(self.model.mode)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def with_mode(self, mode: Mode) -> TrainConfig:
        """This config for another mode (an ablation); a deep-only model has no wide part to start."""
        start = self.start if mode != "deep" else self.start.model_copy(update={"baseline": "none"})
        optim = self.optim if mode != "deep" else self.optim.model_copy(update={"rest_lr_scale": 1.0})
        model = self.model.model_copy(update={"mode": mode})
        return self.model_copy(update={"model": model, "start": start, "optim": optim})


MODE_NAMES: dict[str, str] = {"wide_deep": "Wide & Deep", "wide": "wide-only", "deep": "deep-only"}


def method_name(mode: str) -> str:
    return MODE_NAMES[mode]


def presets() -> list[str]:
    """The names of the preset files shipped in training/presets/."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must hold a JSON object")
    return loaded


def _parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=VALUE`: VALUE is read as JSON (numbers, true/false, null, [lists]), else as a string."""
    key, sep, raw = item.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or not all(path):
        raise ConfigError(f"override {item!r} is not section.key=VALUE (e.g. model.dropout=0.3)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return path, value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` merged in, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _nested(path: list[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def _describe(error: ValidationError) -> str:
    """One line: the dotted key, what is wrong, and the value given (for a single key's error)."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:
        return f"config: {message}"
    where = ".".join(str(part) for part in first["loc"])
    return f"config {where}: {message} (got {first['input']!r})"


def load_config(
    config_file: Path | None = None, overrides: Iterable[str] = (), *, preset: str | None = None
) -> TrainConfig:
    """The defaults, updated by the preset, then `config_file`, then each `section.key=VALUE` override."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in presets():
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(presets()) or 'none'}")
        values = _merge(values, _read_json(PRESETS_DIR / f"{preset}.json", "preset"))
    if config_file is not None:
        values = _merge(values, _read_json(config_file, "config file"))
    for item in overrides:
        values = _merge(values, _nested(*_parse_override(item)))
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
