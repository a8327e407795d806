"""Explanations: contributions from the exported graph that sum to its logits, and reasons in words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import pytest
import torch

from app.explain import (
    DEEP,
    TERMS,
    Contribution,
    Facts,
    HistoryFacts,
    explain_rankings,
    history_facts,
    label_facts,
    reason,
    segment,
    source_splits,
    top_companions,
)
from app.filters import Filters
from app.live import LiveClient, RecordedSession
from app.recommender import Query, Recommender, ScoredLabel
from training.artifacts import ArtifactSet
from training.model import WideTerms

TOLERANCE = 1e-5
TODAY = dt.date(2026, 12, 2)


@pytest.fixture(scope="module")
def recommender(artifacts: ArtifactSet) -> Recommender:
    return Recommender(artifacts)


def test_terms_name_exactly_the_models_wide_terms() -> None:
    missing, stale = set(WideTerms._fields) - set(TERMS), set(TERMS) - set(WideTerms._fields)
    assert not missing and not stale, (
        f"app/explain.py TERMS must name every training.model.WideTerms field: add a family and a reason "
        f"for {sorted(missing)}, remove {sorted(stale)}"
    )
    assert DEEP not in WideTerms._fields


def facts(**changes: Any) -> Facts:
    base = Facts(
        label="여성샴푸",
        clac1="화장품/뷰티케어",
        in_sessions=7,
        seen=10,
        days_ago=None,
        top_source="린스/컨디셔너",
        segment="women in their 30s",
        categories=("화장품/뷰티케어", "식품"),
    )
    return dataclasses.replace(base, **changes)


def contributions(**values: float) -> list[Contribution]:
    return [Contribution(name, name, value) for name, value in values.items()]


@pytest.mark.parametrize(
    ("values", "changes", "expected"),
    [
        ({"repeat": 2.0, "bias": -3.0}, {}, "bought in 7 of your last 10 sessions"),
        ({"repeat": 2.0}, {"days_ago": 12}, "bought in 7 of your last 10 sessions, last 12 days ago"),
        (
            {"start_own": 2.0},
            {"days_ago": 1, "in_sessions": 1, "seen": 1},
            "bought in your last session, the last one yesterday",
        ),
        ({"copurchase": 1.0, "repeat": 0.1}, {}, "often bought with 린스/컨디셔너"),
        (
            {"demo_cross": 1.0, "copurchase": 0.5},
            {},
            "popular with women in their 30s; often bought with 린스/컨디셔너",
        ),
        # Said once: the start's own term quotes the same facts as the repeat term.
        (
            {"start_own": 3.0, "repeat": 2.0, "deep": 1.0},
            {},
            "bought in 7 of your last 10 sessions; fits your profile as a whole",
        ),
        # A term without a phrase for these facts gives way to the next one.
        ({"repeat": 3.0, "bias": 1.0}, {"in_sessions": 0}, "popular with all shoppers"),
        ({"bias": -1.0, "deep": -0.5}, {}, "fits your profile as a whole"),
        ({"start_neighbours": 1.0}, {}, "bought by clients with baskets like yours"),
        ({"start_neighbours": 1.0}, {"seen": 0, "in_sessions": 0}, "popular with other clients"),
    ],
)
def test_reason_quotes_the_largest_positive_contributions(
    values: dict[str, float], changes: dict[str, Any], expected: str
) -> None:
    assert reason(contributions(**values), facts(**changes)) == expected


def test_reason_leaves_out_a_second_part_that_barely_counts() -> None:
    assert (
        reason(contributions(repeat=4.0, copurchase=0.5), facts()) == "bought in 7 of your last 10 sessions"
    )


def test_segment_in_words() -> None:
    assert [segment("F", 30), segment("M", 0), segment("?", 50), segment("?", 0)] == [
        "women in their 30s",
        "men",
        "shoppers in their 50s",
        "shoppers",
    ]


def many_queries(recommender: Recommender) -> list[Query]:
    """Every client of the table, a few of them filtered, and custom histories incl. a cold start."""
    n = recommender.n_clients
    queries = [recommender.row_query(row) for row in range(n)]
    queries += [recommender.row_query(row, Filters(exclude_bought=True)) for row in range(0, n, 10)]
    labels = recommender.vocab.labels
    queries += [
        recommender.custom_query(basket=[labels[0], labels[5]], gender="F", age=30),
        recommender.custom_query(history=[[labels[1]], [labels[1], labels[2]]], basket=[labels[3]]),
        recommender.custom_query(gender="M"),
    ]
    return queries


def test_contributions_sum_to_the_forward_logit_for_every_explained_label(recommender: Recommender) -> None:
    queries = many_queries(recommender)
    checked = 0
    for start in range(0, len(queries), 64):
        batch = queries[start : start + 64]
        rankings = [recommender.ranked(top, 10) for top in recommender.top(batch)]
        explained = explain_rankings(recommender, batch, rankings, today=TODAY)
        with torch.inference_mode():
            logits = recommender.artifacts.model(*recommender.model_inputs(batch))
        for row, (ranking, explanations) in enumerate(zip(rankings, explained, strict=True)):
            assert len(explanations) == len(ranking)
            for item, explanation in zip(ranking, explanations, strict=True):
                forward = float(logits[row, item.label_id])
                assert math.fsum(c.value for c in explanation.contributions) == pytest.approx(
                    forward, abs=TOLERANCE
                )
                assert explanation.logit == pytest.approx(forward, abs=TOLERANCE)
                assert 1 / (1 + math.exp(-explanation.logit)) == pytest.approx(item.score, abs=1e-5)
                assert {c.term for c in explanation.contributions} == {*WideTerms._fields, DEEP}
                assert explanation.reason
                checked += 1
    assert checked >= 10 * recommender.n_clients


def test_copurchase_sources_sum_to_the_copurchase_term_and_name_history_labels(
    recommender: Recommender,
) -> None:
    queries = [recommender.row_query(row) for row in range(0, recommender.n_clients, 3)]
    model, inputs = recommender.artifacts.model, recommender.model_inputs(queries)
    labels = torch.arange(recommender.vocab.n_labels).repeat(len(queries), 1)
    with torch.inference_mode():
        wide, _ = model.explain(*inputs)
        sources = model.copurchase_sources(labels, *inputs)
    assert sources.shape == (len(queries), recommender.vocab.n_labels, recommender.vocab.n_labels)
    torch.testing.assert_close(sources.sum(2), wide.copurchase, rtol=0, atol=TOLERANCE)
    assert wide.copurchase.abs().max() > 0  # a trained map: the check above is not 0 == 0
    for row, query in enumerate(queries):
        history = {
            label for session in recommender.artifacts.builder.recent(query.history) for label in session
        }
        assert set(torch.nonzero(sources[row].abs().sum(0)).flatten().tolist()) <= history


def test_copurchase_contribution_lists_its_largest_sources_then_the_rest(recommender: Recommender) -> None:
    longest = max(range(recommender.n_clients), key=lambda row: len(recommender.row_query(row).history))
    query = recommender.row_query(longest)
    ranking = recommender.rank(query)
    (explained,) = explain_rankings(recommender, [query], [ranking], today=TODAY)
    for explanation in explained:
        (term,) = [c for c in explanation.contributions if c.term == "copurchase"]
        named = [s for s in term.sources if s.label is not None]
        assert 1 <= len(named) <= 3 and all(s.label in recommender.vocab.labels for s in named)
        assert [abs(s.value) for s in named] == sorted((abs(s.value) for s in named), reverse=True)
        assert math.fsum(s.value for s in term.sources) == pytest.approx(term.value, abs=TOLERANCE)
        values = [abs(c.value) for c in explanation.contributions]
        assert values == sorted(values, reverse=True)


def test_reason_counts_sessions_and_days_from_the_dated_history(recommender: Recommender) -> None:
    client_id = recommender.client_id_at(0)
    label = recommender.client(client_id).sessions[-1].labels[0]
    name = recommender.vocab.labels[label]
    recorded = tuple(
        RecordedSession(f"s{i}", TODAY - dt.timedelta(days=days), (name,), None, dt.datetime(2026, 12, 1))
        for i, days in enumerate((30, 12))
    )
    query = recommender.client_query(client_id, live=LiveClient(client_id, 2, None, None, recorded))
    item = next(
        item for item in recommender.ranked(recommender.top([query])[0], 200) if item.label_id == label
    )
    seen = recommender.artifacts.builder.recent(query.history)
    known = label_facts(history_facts(recommender, query), item, None, today=TODAY)
    assert (known.in_sessions, known.seen, known.days_ago) == (sum(label in s for s in seen), len(seen), 12)
    assert (known.label, known.top_source, known.segment) == (
        name,
        None,
        segment(*demographics(recommender, query)),
    )
    bought = f"bought in {known.in_sessions} of your last {known.seen} sessions, last 12 days ago"
    assert reason(contributions(repeat=1.0), known) == bought
    (explained,) = explain_rankings(recommender, [query], [[item]], today=TODAY)
    largest = max(explained[0].contributions, key=lambda c: c.value)
    if largest.term in ("repeat", "start_own"):  # what the trained model weighs most for this label
        assert explained[0].reason.startswith(bought)


def demographics(recommender: Recommender, query: Query) -> tuple[str, int]:
    return recommender.vocab.genders[query.gender], recommender.vocab.ages[query.age]


def test_facts_count_only_the_sessions_the_model_sees_and_date_the_newest() -> None:
    history = HistoryFacts(
        seen=[[0, 1], [1], [2]],
        dates=[None, TODAY - dt.timedelta(days=3), None],
        segment="men",
        categories=("X",),
    )
    item = ScoredLabel(rank=1, label_id=1, label="b", clac1="X", score=0.5, bought_before=True)
    facts = label_facts(history, item, "a", today=TODAY)
    assert (facts.in_sessions, facts.seen, facts.days_ago, facts.top_source) == (2, 3, 3, "a")


def test_companion_is_another_label_and_sources_name_the_largest_then_the_rest() -> None:
    sources = torch.tensor(
        [[[0.2, 0.9, -0.1, 0.0, 0.05], [-0.2, 0.9, 0.0, 0.0, 0.0]]]
    )  # label 1's own line is the largest: a repeat, not a companion
    assert top_companions(sources, torch.tensor([[1, 1]])) == [[0, None]]
    ((first, second),) = source_splits(sources)
    assert [h for h, _ in first[0]] == [1, 0, 2] and first[1] == pytest.approx(0.05)
    assert [h for h, _ in second[0]] == [1, 0] and second[1] is None
