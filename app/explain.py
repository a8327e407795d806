"""Why a label is recommended: its logit as named contributions that sum to it, and a reason in words.

The numbers come only from the exported TorchScript graph: `model.explain(*inputs)` returns the wide
part's terms (`training.model.WideTerms`) and the deep logit, which sum to `model(*inputs)`, and
`model.copurchase_sources(labels, *inputs)` splits the co-purchase term by the history label it comes
from. Nothing here recomputes a feature; the facts a reason quotes (sessions holding the label, when it was
last bought) are read from the history the request already has. `TERMS` is the one place that names the
wide terms: a test checks it covers exactly `WideTerms._fields`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from app.errors import ExplanationsUnavailableError
from app.recommender import Query, Recommender, ScoredLabel, padded_to, with_pad_rows

N_SOURCES = 3  # co-purchase sources named per label; the other history labels are summed as one
SECOND_REASON_SHARE = 0.25  # a second phrase joins the reason when its term is at least this share of the
# first's: below it, the second part barely moved the logit and would only dilute the first


@dataclass(frozen=True)
class Facts:
    """What a reason may quote about one label for one query."""

    label: str
    clac1: str
    in_sessions: int  # of the sessions the model sees, those holding the label
    seen: int  # sessions the model sees (the newest max_sessions)
    days_ago: int | None  # since the newest dated session holding the label (None: no date, or never)
    top_source: str | None  # the history label adding most to the co-purchase term (if it adds)
    segment: str  # "women in their 30s", "men", "shoppers"
    categories: tuple[str, ...]  # top categories (CLAC1) of the history, most sessions first


Reason = Callable[[Facts], str | None]


@dataclass(frozen=True)
class Term:
    """How a contribution is reported: its family's name and the phrase a reason makes of it."""

    family: str
    reason: Reason


def _bought(facts: Facts) -> str | None:
    if not facts.in_sessions:
        return None
    text = (
        "bought in your last session"
        if facts.seen == 1
        else f"bought in {facts.in_sessions} of your last {facts.seen} sessions"
    )
    if facts.days_ago is None:
        return text
    when = {0: "the last one today", 1: "the last one yesterday"}
    return f"{text}, {when.get(facts.days_ago, f'last {facts.days_ago} days ago')}"


def _due(facts: Facts) -> str | None:
    return None if facts.days_ago is None else f"due again: last bought {facts.days_ago} days ago"


def _own_baskets(facts: Facts) -> str | None:
    return _bought(facts) or "like the labels in your baskets"


def _with(facts: Facts) -> str | None:
    return None if facts.top_source is None else f"often bought with {facts.top_source}"


def _neighbours(facts: Facts) -> str:
    # Without a history, the nearest clients are those who bought least: no likeness to speak of.
    return "bought by clients with baskets like yours" if facts.seen else "popular with other clients"


def _categories(facts: Facts) -> str | None:
    if facts.clac1 in facts.categories:
        return f"you often shop in {facts.clac1}"
    return None if not facts.categories else f"goes with what you buy in {facts.categories[0]}"


def _mix(facts: Facts) -> str | None:
    if len(facts.categories) < 2:
        return None
    return f"fits your mix of {' and '.join(facts.categories[:2])}"


# The wide terms of `training.model.WideTerms` by name, in words. Adding a term to the model? Add it here:
# tests/app/test_explain.py fails until every term has its family and reason.
TERMS: dict[str, Term] = {
    "bias": Term("the label's bias (its popularity)", lambda f: "popular with all shoppers"),
    "clac1": Term("top categories of your history", _categories),
    "demo_cross": Term("CLAC1 x gender x age", lambda f: f"popular with {f.segment}"),
    "pair_cross": Term("CLAC1 pair x age", _mix),
    "repeat": Term("your repeat history of the label", _bought),
    "calendar": Term("when you buy the label: days since, your usual gap, due-ness", _due),
    "copurchase": Term("co-purchase with your history's labels", _with),
    "start_own": Term("the baseline start (TIFU-KNN, P-Pop...): your own baskets", _own_baskets),
    "start_neighbours": Term("the baseline start: clients with baskets like yours", _neighbours),
    "explore": Term(
        "new to you: what shoppers buy with your labels (EASE)",
        lambda f: "new to you, bought by shoppers who buy what you buy",
    ),
}
DEEP = "deep"
DEEP_TERM = Term(
    "deep part (demographics, Doc2Vec, label embeddings)", lambda f: "fits your profile as a whole"
)


@dataclass(frozen=True)
class Source:
    """One history label's share of a co-purchase term (`label` None: the other history labels together)."""

    label: str | None
    value: float


@dataclass(frozen=True)
class Contribution:
    term: str  # a `WideTerms` field name, or "deep"
    family: str
    value: float
    sources: tuple[Source, ...] = ()  # the co-purchase term by history label


@dataclass(frozen=True)
class LabelExplanation:
    """A label's logit (the sum of the contributions), its contributions (largest first) and its reason."""

    logit: float
    contributions: tuple[Contribution, ...]
    reason: str


def utc_today() -> dt.date:
    """The date "days ago" counts back from (recorded sessions' dates are checked against UTC too)."""
    return dt.datetime.now(dt.UTC).date()


def term(name: str) -> Term:
    """The family and reason of a term; a term this service does not know (a newer model) by its name."""
    return TERMS.get(name) or (DEEP_TERM if name == DEEP else Term(name, lambda f: None))


def can_explain(recommender: Recommender) -> bool:
    """Whether the loaded model was exported with the methods explanations need."""
    model = recommender.artifacts.model
    return hasattr(model, "explain") and hasattr(model, "copurchase_sources")


def explain_rankings(
    recommender: Recommender,
    queries: Sequence[Query],
    rankings: Sequence[Sequence[ScoredLabel]],
    *,
    today: dt.date,
) -> list[list[LabelExplanation]]:
    """Each ranked label's explanation for its query, from one `explain` pass over the batch; `today`
    dates the "last bought" facts. ExplanationsUnavailableError for a model exported without them."""
    if not can_explain(recommender):
        raise ExplanationsUnavailableError(recommender.version)
    model = recommender.artifacts.model
    width = max((len(ranking) for ranking in rankings), default=0)
    if not width:
        return [[] for _ in rankings]
    labels = torch.tensor(
        [[item.label_id for item in ranking] + [0] * (width - len(ranking)) for ranking in rankings]
    )
    inputs = with_pad_rows(recommender.model_inputs(queries))
    labels = padded_to(labels, inputs.hist.shape[0])  # a row per input row: the queries', then the pads
    with torch.inference_mode():
        wide, deep = model.explain(*inputs)
        sources = model.copurchase_sources(labels, *inputs)  # [B, K, N]
        names = [*wide._fields, DEEP]
        picked = [getattr(wide, name).gather(1, labels) for name in wide._fields] + [deep.gather(1, labels)]
        logits = sum(picked[1:], picked[0])
        splits, companions = source_splits(sources), top_companions(sources, labels)
    # One conversion per batch: per-element tensor reads would cost more than the forward pass.
    values, logit_list = torch.stack(picked, dim=2).tolist(), logits.tolist()
    labels_of = recommender.vocab.labels
    explained = []
    for b, (query, ranking) in enumerate(zip(queries, rankings, strict=True)):
        history = history_facts(recommender, query)
        row = []
        for j, item in enumerate(ranking):
            named, rest = splits[b][j]
            split = tuple(Source(labels_of[h], value) for h, value in named)
            split += () if rest is None else (Source(None, rest),)
            contributions = sorted(
                (
                    Contribution(name, term(name).family, value, split if name == "copurchase" else ())
                    for name, value in zip(names, values[b][j], strict=True)
                ),
                key=lambda c: -abs(c.value),
            )
            companion = companions[b][j]
            top_source = None if companion is None else labels_of[companion]
            facts = label_facts(history, item, top_source, today=today)
            row.append(LabelExplanation(logit_list[b][j], tuple(contributions), reason(contributions, facts)))
        explained.append(row)
    return explained


Split = tuple[list[tuple[int, float]], float | None]  # named (label id, value), largest first; the rest


def source_splits(sources: torch.Tensor) -> list[list[Split]]:
    """Per [b][k] of co-purchase terms by history label [B, K, N]: the N_SOURCES labels adding most in
    absolute value (only labels adding anything), and the other labels' sum (None when there are none)."""
    n = min(N_SOURCES, sources.shape[2])
    top = sources.abs().topk(n, dim=2).indices
    ids, values = top.tolist(), sources.gather(2, top).tolist()
    counts, rests = (sources != 0).sum(2).tolist(), sources.scatter(2, top, 0.0).sum(2).tolist()
    return [
        [
            (
                list(zip(ids[b][k][:count], values[b][k][:count], strict=True)),
                rests[b][k] if count > n else None,
            )
            for k, count in enumerate(row)
        ]
        for b, row in enumerate(counts)
    ]


def top_companions(sources: torch.Tensor, labels: torch.Tensor) -> list[list[int | None]]:
    """Per [b][k]: the history label adding most to the co-purchase term of labels[b, k] [B, K], other than
    that label itself (its own line of the map is a repeat, not a companion); None if none adds."""
    value, best = sources.scatter(2, labels.unsqueeze(2), 0.0).max(2)
    return [
        [h if v > 0 else None for h, v in zip(ids, values, strict=True)]
        for ids, values in zip(best.tolist(), value.tolist(), strict=True)
    ]


def reason(contributions: Sequence[Contribution], facts: Facts) -> str:
    """One sentence from the largest positive contributions that have a phrase: the largest, and a second
    one if its term is at least SECOND_REASON_SHARE of the first's (a phrase said once)."""
    phrases: list[str] = []
    first = 0.0
    for item in sorted(contributions, key=lambda c: -c.value):
        if item.value <= 0 or (phrases and item.value < SECOND_REASON_SHARE * first):
            break
        phrase = term(item.term).reason(facts)
        if phrase is None or phrase in phrases:
            continue
        first = first or item.value
        phrases.append(phrase)
        if len(phrases) == 2:
            break
    return "; ".join(phrases) if phrases else DEEP_TERM.reason(facts) or ""


@dataclass(frozen=True)
class HistoryFacts:
    """What every label's facts share for one query: the sessions the model sees, with their dates."""

    seen: list[Sequence[int]]  # the newest max_sessions sessions' label ids, as the feature builder cuts them
    dates: list[dt.date | None]  # their dates
    segment: str
    categories: tuple[str, ...]  # top categories of `seen`, most sessions first


def history_facts(recommender: Recommender, query: Query) -> HistoryFacts:
    vocab = recommender.vocab
    seen = recommender.artifacts.builder.recent(query.history)
    per_category: dict[str, int] = {}
    for labels in seen:
        for name in sorted({vocab.clac1[vocab.label_clac1[label]] for label in labels}):
            per_category[name] = per_category.get(name, 0) + 1
    return HistoryFacts(
        seen=seen,
        dates=query.dates[len(query.days) - len(seen) :],
        segment=segment(vocab.genders[query.gender], vocab.ages[query.age]),
        categories=tuple(sorted(per_category, key=lambda name: (-per_category[name], name))),
    )


def label_facts(history: HistoryFacts, item: ScoredLabel, top_source: str | None, *, today: dt.date) -> Facts:
    """The facts of one ranked label; `top_source`: its companion (`top_companions`)."""
    holding = [date for date, ids in zip(history.dates, history.seen, strict=True) if item.label_id in ids]
    newest = holding[-1] if holding else None
    return Facts(
        label=item.label,
        clac1=item.clac1,
        in_sessions=len(holding),
        seen=len(history.seen),
        # A session may be dated up to a day ahead of UTC (app/api/routes/clients.py): today at the latest.
        days_ago=None if newest is None else max((today - newest).days, 0),
        top_source=top_source,
        segment=history.segment,
        categories=history.categories,
    )


def segment(gender: str, age: int) -> str:
    """Clients of a gender and age in words ("?" and 0 are unknown): "women in their 30s", "men"."""
    who = {"F": "women", "M": "men"}.get(gender, "shoppers")
    return f"{who} in their {age}s" if age else who
