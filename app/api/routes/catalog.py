"""What the model knows: labels, clients and the model card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import RecommenderDep
from app.api.errors import error_responses
from app.recommender import Recommender
from app.schemas import (
    ClientDetail,
    ClientsPage,
    ClientSummary,
    LabelEntry,
    LabelGroup,
    LabelsResponse,
    ModelCard,
    SessionLabel,
    model_method,
    trained_on,
)

router = APIRouter(tags=["catalog"])


def labels_response(recommender: Recommender) -> LabelsResponse:
    vocab = recommender.vocab
    groups = [LabelGroup(clac1=name, labels=[]) for name in vocab.clac1]
    for label_id, (name, clac1) in enumerate(zip(vocab.labels, vocab.label_clac1, strict=True)):
        groups[clac1].labels.append(LabelEntry(id=label_id, name=name))
    return LabelsResponse(n_labels=vocab.n_labels, groups=[group for group in groups if group.labels])


def clients_page(recommender: Recommender, *, limit: int, offset: int) -> ClientsPage:
    rows = recommender.clients(limit=limit, offset=offset)
    return ClientsPage(
        total=recommender.n_clients,
        limit=limit,
        offset=offset,
        clients=[ClientSummary(client_id=cid, sessions=n) for cid, n in rows],
    )


def client_detail(recommender: Recommender, client_id: int) -> ClientDetail:
    profile = recommender.client(client_id)
    vocab = recommender.vocab
    sessions = [
        [SessionLabel(label=vocab.labels[i], clac1=vocab.clac1[vocab.label_clac1[i]]) for i in session]
        for session in profile.sessions
    ]
    return ClientDetail(client_id=client_id, gender=profile.gender, age=profile.age, sessions=sessions)


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
    "/clients", summary="Known client IDs with their session counts", responses=error_responses(422, 503)
)
async def clients(
    recommender: RecommenderDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, description="rows to skip")] = 0,
) -> ClientsPage:
    """One page of the loaded client table, in table order."""
    return clients_page(recommender, limit=limit, offset=offset)


@router.get(
    "/clients/{client_id}",
    summary="A client's demographics and sessions",
    responses=error_responses(404, 422, 503),
)
async def client(
    client_id: Annotated[int, Path(description="CLNT_ID of a client in the loaded table")],
    recommender: RecommenderDep,
) -> ClientDetail:
    """The client's gender, age and kept sessions (oldest first) with each label's top category."""
    return client_detail(recommender, client_id)


@router.get(
    "/model",
    summary="The loaded model's card: version, data, metrics vs baselines",
    responses=error_responses(503),
)
async def model(recommender: RecommenderDep) -> ModelCard:
    """Metadata of the loaded artifact set: when and on what it was trained, and how well it ranks."""
    return model_card(recommender)
