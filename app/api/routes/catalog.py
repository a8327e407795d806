"""What the model knows: labels and the model card (clients: routes/clients.py)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RecommenderDep
from app.api.errors import error_responses
from app.recommender import Recommender
from app.schemas import LabelEntry, LabelGroup, LabelsResponse, ModelCard, model_method, trained_on

router = APIRouter(tags=["catalog"])


def labels_response(recommender: Recommender) -> LabelsResponse:
    vocab = recommender.vocab
    groups = [LabelGroup(clac1=name, labels=[]) for name in vocab.clac1]
    for label_id, (name, clac1) in enumerate(zip(vocab.labels, vocab.label_clac1, strict=True)):
        groups[clac1].labels.append(LabelEntry(id=label_id, name=name))
    return LabelsResponse(n_labels=vocab.n_labels, groups=[group for group in groups if group.labels])


def model_card(recommender: Recommender) -> ModelCard:
    meta = recommender.metadata
    return ModelCard(
        version=str(meta["version"]),
        created_at=str(meta["created_at"]),
        trained_on=trained_on(meta),
        model_method=model_method(meta),
        n_labels=recommender.vocab.n_labels,
        n_clients=recommender.n_clients,
        metrics=meta.get("metrics", {}),
        card=meta.get("card", {}),
        funnel=meta.get("funnel", []),
        config=meta.get("config", {}),
        feature_schema=meta.get("feature_schema", {}),
        library_versions={name: str(v) for name, v in meta.get("library_versions", {}).items()},
    )


@router.get(
    "/labels", summary="The label vocabulary, grouped by top category", responses=error_responses(503)
)
async def labels(recommender: RecommenderDep) -> LabelsResponse:
    """Every CLAC3 label the model scores, grouped by CLAC1: the names POST /score accepts."""
    return labels_response(recommender)


@router.get(
    "/model",
    summary="The loaded model's card: version, data, metrics vs baselines",
    responses=error_responses(503),
)
async def model(recommender: RecommenderDep) -> ModelCard:
    """Metadata of the loaded artifact set: when and on what it was trained, and how well it ranks."""
    return model_card(recommender)
