"""The training loop's initialisation: the P-Pop warm start of the wide part."""

from __future__ import annotations

import pytest
import torch

from training.features import PAD, FeatureSchema
from training.model import WideAndDeep
from training.train import init_repeat_weight

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
