"""Request and response models of the API; api/openapi.py fills their examples from the loaded model."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.db.tables import SESSION_ID_LEN
from app.explain import TERMS, LabelExplanation
from app.filters import Filters
from app.products import MAX_PRODUCTS, RankedProduct
from app.recommender import ScoredLabel

Label = Annotated[str, Field(min_length=1, max_length=100, description="a CLAC3 label name")]
Category = Annotated[str, Field(min_length=1, max_length=50, description="a CLAC1 top category name")]
# Names one filter of GET /recommend may list: the three lists at their longest (4-byte characters,
# percent-encoded) stay under uvicorn's 64 kB request line, beyond which it answers a bare 400.
MAX_QUERY_VALUES = 20
FILTER_DOCS = {
    "exclude_bought": "leave out labels of the scored history (and basket): a 'new to you' ranking",
    "clac1": "only labels of these top categories (CLAC1); repeatable",
    "exclude_clac1": "no label of these top categories (CLAC1); repeatable",
    "exclude": "no label of these names (CLAC3); repeatable",
}
MAX_CLIENT_ID = 2**63 - 1  # a signed 64-bit integer, as the database stores it
MAX_PRODUCT = 2**63 - 1
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_text(value: Any) -> Any:
    """Only YYYY-MM-DD text is a date here (pydantic would also read numbers as Unix times)."""
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[
    dt.date, BeforeValidator(_iso_date_text), WithJsonSchema({"type": "string", "format": "date"})
]
ProductCode = Annotated[StrictInt, Field(ge=0, le=MAX_PRODUCT, description="a PD_C product code")]


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. unknown_client, validation_error")
    message: str = Field(description="one sentence for people")
    details: Any = Field(default=None, description="structured context: offending fields, suggestions")


class ErrorResponse(BaseModel):
    """The one shape of every error the service returns."""

    error: ErrorDetail


PRODUCTS_DOC = (
    f"products to add to each label, 0..{MAX_PRODUCTS}: the client's own in that label first (their "
    "purchases weighted by recency, in days where dates exist), then best sellers of their gender x age "
    "segment, then the label's best sellers"
)


class Product(BaseModel):
    pd_c: int = Field(description="product code (PD_C)")
    name: str | None = Field(description="product name (PD_NM); null when the data has none")
    brand: str | None = Field(description="brand (PD_BRA_NM); null when the data has none")
    source: Literal["bought", "segment", "label"] = Field(
        description="bought: the client bought it before; segment: a best seller with clients of the same "
        "gender and age; label: one of the label's best sellers"
    )
    sessions: int = Field(description="the client's sessions that bought it (0 unless bought)")
    days_ago: int | None = Field(
        description="days from the client's last purchase of it to the end of the data (null: not bought, "
        "or the data has no dates)"
    )
    score: float = Field(
        description="the label's score x the product's share of the label for this client: products of "
        "several labels sort by it"
    )

    @classmethod
    def from_ranked(cls, item: RankedProduct) -> Product:
        return cls(
            pd_c=item.pd_c,
            name=item.name,
            brand=item.brand,
            source=item.source,
            sessions=item.sessions,
            days_ago=item.days_ago,
            score=item.score,
        )


EXPLAIN_DOC = (
    "explain each label: its logit as additive contributions of the model's parts, which sum to it, and a "
    "reason in words"
)


class CopurchaseSource(BaseModel):
    label: str | None = Field(description="a label of the scored history; null: the other ones together")
    value: float = Field(description="what it adds to the label's co-purchase term")


class Contribution(BaseModel):
    term: str = Field(description=f"the model's name of the part: {', '.join(TERMS)} or deep")
    family: str = Field(description="the part in words")
    value: float = Field(description="what the part adds to the label's logit")
    sources: list[CopurchaseSource] | None = Field(
        default=None,
        description="copurchase only: the history labels adding most to it (absolute value), then the "
        "others as one; they sum to the term",
    )


class Explanation(BaseModel):
    logit: float = Field(description="the model's logit of the label (score = sigmoid(logit))")
    contributions: list[Contribution] = Field(
        description="every part of the model, largest absolute value first; they sum to the logit"
    )

    @classmethod
    def of(cls, item: LabelExplanation) -> Explanation:
        return cls(
            logit=item.logit,
            contributions=[
                Contribution(
                    term=c.term,
                    family=c.family,
                    value=c.value,
                    sources=[CopurchaseSource(label=s.label, value=s.value) for s in c.sources]
                    if c.term == "copurchase"
                    else None,
                )
                for c in item.contributions
            ],
        )


class Recommendation(BaseModel):
    rank: int = Field(description="1 = best")
    label: str = Field(description="CLAC3 label")
    clac1: str = Field(description="the label's top category")
    score: float = Field(description="predicted probability that the next session holds the label")
    bought_before: bool = Field(description="the label is in the history (or basket) that was scored")
    products: list[Product] | None = Field(
        default=None, description="the label's products, best first, when asked for (products=N)"
    )
    reason: str | None = Field(
        default=None,
        description='why, in words, from the largest contributions (explain=true), e.g. "bought in 7 of '
        'your last 10 sessions, last 12 days ago"',
    )
    explanation: Explanation | None = Field(
        default=None, description="the label's logit as contributions of the model's parts (explain=true)"
    )

    @classmethod
    def from_scored(
        cls,
        item: ScoredLabel,
        products: list[RankedProduct] | None = None,
        explanation: LabelExplanation | None = None,
    ) -> Recommendation:
        return cls(
            rank=item.rank,
            label=item.label,
            clac1=item.clac1,
            score=item.score,
            bought_before=item.bought_before,
            products=None if products is None else [Product.from_ranked(p) for p in products],
            reason=None if explanation is None else explanation.reason,
            explanation=None if explanation is None else Explanation.of(explanation),
        )


class TrainedOn(BaseModel):
    summary: str | None = Field(
        default=None, description="clients, examples, profile and data folder in words"
    )
    source: str | None = Field(default=None, description="the data folder or data set name")
    profile: str | None = Field(default=None, description="the preprocessing profile")
    fingerprint: str | None = Field(default=None, description="hash of the input files")


class ModelInfo(BaseModel):
    version: str
    created_at: str
    trained_on: TrainedOn
    metrics: dict[str, float] = Field(description="the model's metrics @10 on the held-out test sessions")


class RecommendResponse(BaseModel):
    client_id: int | None = Field(description="null for POST /score")
    k: int
    recommendations: list[Recommendation] = Field(description="k labels, or all that the filters left")
    candidates: int = Field(description="labels left after the filters (the label count without filters)")
    notice: str | None = Field(
        default=None, description="why fewer than k labels came back: the filters left fewer"
    )
    as_of: dt.date | None = Field(
        default=None, description="the reference date of the ranking's calendar features (null: none)"
    )
    model: ModelInfo


class FilterFields(BaseModel):
    """Filters on a ranking (POST /score's body, bounded by its size limit; GET /recommend takes the same
    as query parameters)."""

    exclude_bought: StrictBool = Field(default=False, description=FILTER_DOCS["exclude_bought"])
    clac1: list[Category] = Field(default=[], description=FILTER_DOCS["clac1"])
    exclude_clac1: list[Category] = Field(default=[], description=FILTER_DOCS["exclude_clac1"])
    exclude: list[Label] = Field(default=[], description=FILTER_DOCS["exclude"])

    def filters(self) -> Filters:
        return Filters.of(
            exclude_bought=self.exclude_bought,
            clac1=self.clac1,
            exclude_clac1=self.exclude_clac1,
            exclude=self.exclude,
        )


def _names(description: str) -> Any:
    """A repeatable query parameter of names: None when absent."""
    return Field(default=None, max_length=MAX_QUERY_VALUES, description=description)


class RecommendQuery(BaseModel):
    """GET /recommend's query parameters (read as one model: app/api/query_model.py)."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(default=10, ge=1, description="how many labels, 1..min(max_k, label count)")
    exclude_bought: bool = Field(default=False, description=FILTER_DOCS["exclude_bought"])
    clac1: list[Category] | None = _names(FILTER_DOCS["clac1"])
    exclude_clac1: list[Category] | None = _names(FILTER_DOCS["exclude_clac1"])
    exclude: list[Label] | None = _names(FILTER_DOCS["exclude"])
    products: int = Field(default=0, ge=0, le=MAX_PRODUCTS, description=PRODUCTS_DOC)
    exclude_bought_products: bool = Field(
        default=False, description="leave the client's own products out of the product lists"
    )
    explain: bool = Field(default=False, description=EXPLAIN_DOC)
    date: IsoDate | None = Field(
        default=None,
        description="rank as of this date, YYYY-MM-DD (sessions after it are left out); default: today by "
        "the service's clock (UTC)",
    )


class ScoreRequest(FilterFields):
    """A custom basket and/or history and/or demographics (at least one of them), and optional filters."""

    model_config = ConfigDict(extra="forbid")

    basket: list[Label] = Field(default=[], description="labels of the current session (scored as newest)")
    history: list[list[Label]] = Field(default=[], description="earlier sessions, oldest first")
    gender: Literal["F", "M"] | None = None
    age: StrictInt | None = Field(default=None, description="age by decade: 10, 20, ..., 80")
    dates: list[IsoDate] | None = Field(
        default=None,
        description="one date per non-empty session (history, then basket), oldest first: the model then "
        "sees how many days ago each label was bought and whether it is due; without them, sessions only",
    )
    date: IsoDate | None = Field(
        default=None, description="the date to rank for (default: the newest of `dates`)"
    )
    k: StrictInt = Field(default=10, description="how many labels to return, 1..min(max_k, label count)")
    products: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_PRODUCTS,
        description=f"products to add to each label, 0..{MAX_PRODUCTS}: best sellers of the gender x age "
        "segment in that label, then the label's best sellers (a basket names labels, not products)",
    )
    explain: StrictBool = Field(default=False, description=EXPLAIN_DOC)


class LabelEntry(BaseModel):
    id: int
    name: str


class LabelGroup(BaseModel):
    clac1: str
    labels: list[LabelEntry]


class LabelsResponse(BaseModel):
    n_labels: int
    groups: list[LabelGroup] = Field(description="labels grouped by top category (CLAC1)")


class ClientSummary(BaseModel):
    client_id: int
    sessions: int = Field(description="number of kept sessions")


class ClientsPage(BaseModel):
    total: int
    limit: int
    offset: int
    clients: list[ClientSummary]


class SessionLabel(BaseModel):
    label: str
    clac1: str | None = Field(description="the label's top category; null if the loaded model lacks it")


class SessionIn(BaseModel):
    """A session to record: its ID (the idempotency key), its date, and its labels or its products."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["labels"]}, {"required": ["products"]}]},
    )

    session_id: str = Field(
        min_length=1,
        max_length=SESSION_ID_LEN,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="the caller's ID of the session, unique per client: the same ID and body again is "
        "answered with the stored session (200), another body with 409",
    )
    date: IsoDate = Field(description="the session's date, YYYY-MM-DD, today at the latest")
    labels: Annotated[list[Label], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        default=None, description="the CLAC3 labels bought (or give products)"
    )
    products: Annotated[list[ProductCode], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        default=None, description="the PD_C codes bought, mapped to labels (or give labels)"
    )

    @field_validator("labels", "products", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:  # left out is fine; null is not (the schema has no null)
            raise ValueError("give a list, or leave the field out")
        return value

    @model_validator(mode="after")
    def _labels_or_products(self) -> SessionIn:
        if (self.labels is None) == (self.products is None):
            raise ValueError("give either labels or products, not both")
        return self


class RecordedSessionOut(BaseModel):
    session_id: str
    date: dt.date
    labels: list[SessionLabel]
    products: list[int] | None = Field(description="the PD_C codes sent, if the session was sent as such")
    recorded_at: dt.datetime


class DemographicsIn(BaseModel):
    """A client's gender and age; null (or left out): not set, so the training data's value holds
    (unknown for a client the training data lacks)."""

    model_config = ConfigDict(extra="forbid")

    gender: Literal["F", "M"] | None = None
    age: StrictInt | None = Field(default=None, description="age by decade: 10, 20, ..., 80")


class ClientDetail(BaseModel):
    client_id: int
    gender: str = Field(description='"F", "M" or "?" when unknown; a recorded value wins')
    age: int = Field(description="age by decade; 0 when unknown; a recorded value wins")
    in_training: bool = Field(description="the client is in the loaded model's training data")
    sessions: list[list[SessionLabel]] = Field(description="the training data's kept sessions, oldest first")
    recorded_sessions: list[RecordedSessionOut] = Field(
        description="sessions recorded through the API, oldest first (by date, then as recorded)"
    )


class ModelCard(BaseModel):
    """The artifact set's metadata, without file hashes."""

    version: str
    created_at: str
    trained_on: TrainedOn
    model_method: str = Field(description="the model's key in `metrics`; the other keys are baselines")
    n_labels: int
    n_clients: int
    metrics: dict[str, Any] = Field(
        description="{split: {method: {metric: value}}}: the model, its ablations and every baseline"
    )
    card: dict[str, Any] = Field(
        description="per split, the best baseline and the model's paired per-client difference of NDCG@10 "
        "to it (mean, se, z, ratio); where training started and whether the start was kept"
    )
    funnel: list[dict[str, Any]] = Field(
        description="rows, sessions and clients after each preprocessing rule"
    )
    config: dict[str, Any]
    feature_schema: dict[str, Any]
    library_versions: dict[str, str]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    version: str


def model_method(metadata: dict[str, Any]) -> str:
    """The exported model's key in metadata["metrics"][split] (the others: ablations and baselines)."""
    return str(metadata["card"]["model"])


def trained_on(metadata: dict[str, Any]) -> TrainedOn:
    data = metadata.get("data") or {}
    return TrainedOn(
        summary=metadata.get("trained_on"),
        source=data.get("source"),
        profile=data.get("profile"),
        fingerprint=data.get("fingerprint"),
    )


def model_info(metadata: dict[str, Any]) -> ModelInfo:
    """The short model description attached to every ranking (GET /model has every metric)."""
    test_metrics = metadata.get("metrics", {}).get("test", {}).get(model_method(metadata), {})
    return ModelInfo(
        version=str(metadata["version"]),
        created_at=str(metadata["created_at"]),
        trained_on=trained_on(metadata),
        metrics={name: float(value) for name, value in test_metrics.items() if name.endswith("@10")},
    )
