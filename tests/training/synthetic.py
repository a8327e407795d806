"""A tiny in-memory ProcessedData with learnable structure, for tests that must not depend on the CSV steps.

Each client re-buys a few favourite labels (re-purchase), favourites come in co-purchased pairs, and the
favourites' CLAC1 depends on gender (demographic signal): a model should beat G-Pop on it.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from training.config import TrainConfig
from training.dataset import CLIENTS_SCHEMA, SESSIONS_SCHEMA, SPLITS, ProcessedData, Vocabulary
from training.doc2vec import Doc2VecEncoder, train_doc2vec

CLAC1 = ["식품", "패션 잡화", "생활/건강", "화장품"]  # with a space and a slash: names must stay one token


def make_vocab(labels_per_clac1: int = 6) -> Vocabulary:
    labels = [f"{c} 품목{j}" for c in CLAC1 for j in range(labels_per_clac1)]
    return Vocabulary(
        labels=labels, label_clac1=[i // labels_per_clac1 for i in range(len(labels))], clac1=CLAC1
    )


def make_processed(n_clients: int = 60, n_sessions: int = 10, seed: int = 0) -> ProcessedData:
    """`n_clients` clients with `n_sessions` sessions each (position 0 context, last two valid/test)."""
    rng = np.random.default_rng(seed)
    vocab = make_vocab()
    n = vocab.n_labels
    clients, sessions = [], []
    for c in range(n_clients):
        gender = 1 + c % 2
        pool = np.arange(n)[np.array(vocab.label_clac1) % 2 == gender - 1]
        favourites = rng.choice(pool, size=2, replace=False)
        partners = (favourites + 1) % n  # each favourite's co-purchased label
        clients.append({"CLNT_ID": 1000 + c, "gender": gender, "age": 2 + c % 5})
        for position in range(n_sessions):
            basket = set(rng.choice(n, size=2, replace=False).tolist())
            for fav, partner in zip(favourites, partners, strict=True):
                if rng.random() < 0.7:
                    basket |= {int(fav), int(partner)}
            split = SPLITS[0] if position == 0 else SPLITS[max(1, 3 - (n_sessions - 1 - position))]
            sessions.append(
                {
                    "CLNT_ID": 1000 + c,
                    "SESS_ID": position + 1,
                    "SESS_SEQ": position + 1,
                    "SESS_DT": None,
                    "position": position,
                    "labels": sorted(basket),
                    "split": split,
                }
            )
    return ProcessedData(
        vocab=vocab,
        clients=pl.DataFrame(clients, schema=CLIENTS_SCHEMA),
        sessions=pl.DataFrame(sessions, schema=SESSIONS_SCHEMA),
        funnel=[
            {"step": "synthetic", "rows": len(sessions), "sessions": len(sessions), "clients": n_clients}
        ],
        config={"profile": "synthetic"},
    )


def tiny_config(**sections: dict[str, object]) -> TrainConfig:
    """A config that trains the synthetic set in about a second on one thread; `sections` update it,
    e.g. tiny_config(optim={"loss": "bce"})."""
    base: dict[str, dict[str, object]] = {
        "data": {"max_sessions": 6, "max_labels": 8},
        "doc2vec": {"vector_size": 8, "epochs": 5, "infer_epochs": 5},
        "model": {"hidden": (32, 16), "label_emb_dim": 8, "cross_rank": 2, "copurchase_rank": 4},
        "optim": {"max_epochs": 4, "patience": 2},
    }
    values: dict[str, object] = {"threads": 1}
    for name in set(base) | set(sections):
        values[name] = base.get(name, {}) | sections.get(name, {})
    return TrainConfig.model_validate(values)


def tiny_encoder(data: ProcessedData, config: TrainConfig) -> Doc2VecEncoder:
    sessions = [s for _, _, _, history, _ in data.client_histories() for s in history[:-2]]
    model = train_doc2vec(sessions, data.vocab.labels, config)
    return Doc2VecEncoder(model, data.vocab.labels, epochs=config.doc2vec.infer_epochs, seed=config.seed)
