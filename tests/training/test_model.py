"""WideAndDeep from parts: features against plain Python, exact contributions, TorchScript, the start."""

import math
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from training.artifacts import script_model
from training.baselines import Baskets
from training.baselines.knn import tifu_vectors
from training.config import ModelConfig
from training.features import PAD, FeatureSchema
from training.model import CALENDAR_FEATURES, DAY_TAUS, DECAYS, REPEAT_FEATURES, WideAndDeep
from training.start import (
    SCALE,
    BaselineStart,
    StartSpec,
    history_entries,
    nearest,
    neighbour_mean,
    tifu_weights,
)

LABEL_CLAC1 = [0, 0, 1, 1, 2, 2, 2]  # 7 labels under 3 CLAC1
SCHEMA = FeatureSchema(
    max_sessions=4,
    max_labels=3,
    doc_dim=5,
    n_labels=7,
    n_clac1=3,
    n_genders=3,
    n_ages=9,
    d2v_infer_epochs=5,
    d2v_seed=1,
)
HIST = torch.tensor(
    [
        [[PAD, PAD, PAD], [0, 1, PAD], [2, PAD, PAD], [0, 3, 4]],  # 3 sessions, newest holds 0, 3, 4
        [[PAD, PAD, PAD], [PAD, PAD, PAD], [PAD, PAD, PAD], [PAD, PAD, PAD]],  # no history (cold start)
    ]
)
AGO = torch.tensor([[-1.0, 30.0, 14.0, 3.0], [-1.0, -1.0, -1.0, -1.0]])  # days before the reference date
GENDER, AGE = torch.tensor([1, 2]), torch.tensor([3, 0])
GAPS = [7.0, 30.0, 14.0, 60.0, 10.0, 20.0, 5.0]  # each label's population gap in days
# A hand-made neighbour pool: four clients' histories.
POOL_HIST = torch.tensor(
    [
        [[PAD, PAD, PAD], [PAD, PAD, PAD], [0, 1, PAD], [2, PAD, PAD]],
        [[PAD, PAD, PAD], [0, 3, PAD], [4, 5, PAD], [0, 3, 4]],
        [[PAD, PAD, PAD], [PAD, PAD, PAD], [PAD, PAD, PAD], [6, 5, PAD]],
        [[1, PAD, PAD], [1, 2, PAD], [0, PAD, PAD], [2, 6, PAD]],
    ]
)
TIFU = StartSpec("TIFU-KNN", group_size=2, within=0.9, across=0.7, neighbours=2, alpha=0.3)


def make_start(spec: StartSpec = TIFU) -> BaselineStart:
    start = BaselineStart(spec, 7, 4)
    with torch.no_grad():
        start.set_pool(start.own(history_entries(POOL_HIST, 7)))
    return start


def make_model(mode: str = "wide_deep", *, start: BaselineStart | None = None) -> WideAndDeep:
    torch.manual_seed(0)
    config = ModelConfig(mode=mode, hidden=(16, 8), label_emb_dim=4, cross_rank=2, copurchase_rank=3)
    model = WideAndDeep(SCHEMA, LABEL_CLAC1, config, start, GAPS)
    with torch.no_grad():  # non-zero weights everywhere, so every term shows in the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def reference_features(hist: list[list[list[int]]], gender: int, age: int) -> dict[str, list[float]]:
    """Plain-Python HistoryStats for one example."""
    s, n, c = len(hist), len(LABEL_CLAC1), 3
    nonempty = [sess for sess in hist if any(i != PAD for i in sess)]
    repeat, seen_clac1 = [], set()
    for label in range(n):
        holding = [j for j, sess in enumerate(hist) if label in sess]
        count = len(holding)
        recency = 1 / (1 + (s - 1 - max(holding))) if holding else 0.0
        decayed = [sum(d ** (s - 1 - j) for j in holding) for d in DECAYS]
        newest = 1.0 if label in hist[-1] else 0.0
        repeat += [math.log1p(count), count / max(len(nonempty), 1), recency, newest, *decayed]
        if holding:
            seen_clac1.add(LABEL_CLAC1[label])
    clac1 = [1.0 if k in seen_clac1 else 0.0 for k in range(c)]
    demo = [float((gender * 9 + age) * c + k) for k in range(c)]  # the cross ids; active where clac1 is 1
    pair = [1.0 if i < j and i in seen_clac1 and j in seen_clac1 else 0.0 for i in range(c) for j in range(c)]
    return {"repeat": repeat, "clac1": clac1, "demo_cross": demo, "pair": pair}


@pytest.mark.parametrize("mode", ["wide_deep", "wide", "deep"])
def test_forward_returns_one_logit_per_label(mode: str) -> None:
    logits = make_model(mode)(HIST, AGO, GENDER, AGE, torch.randn(2, 5))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_features_equal_plain_python_reference() -> None:
    features = make_model().features(HIST, AGO, GENDER, AGE)
    assert features.repeat.shape[-1] == len(REPEAT_FEATURES)
    for b in range(2):
        expected = reference_features(HIST[b].tolist(), int(GENDER[b]), int(AGE[b]))
        for name, values in expected.items():
            assert getattr(features, name)[b].flatten().tolist() == pytest.approx(values, abs=1e-6), name


def reference_calendar(hist: list[list[int]], ago: list[float]) -> list[float]:
    """Plain-Python calendar features of one dated example (see training/model.py's constants)."""
    out: list[float] = []
    for label in range(len(LABEL_CLAC1)):
        days = [a for sess, a in zip(hist, ago, strict=True) if label in sess]
        if not days:
            out += [0.0] * len(CALENDAR_FEATURES)
            continue
        last, repeats = min(days), len(days) - 1
        own_gap = (max(days) - last) / max(repeats, 1)
        expected = max((repeats * own_gap + 1.0 * GAPS[label]) / (repeats + 1.0), 1.0)
        log_due = min(max(math.log((last + 1) / expected), -3.0), 3.0)
        decayed = [sum(math.exp(-a / tau) for a in days) for tau in DAY_TAUS]
        out += [math.log1p(last), log_due, math.exp(-0.5 * log_due**2), math.log1p(expected), *decayed]
    return out


def test_calendar_features_equal_plain_python_and_vanish_without_dates() -> None:
    model = make_model()
    features = model.features(HIST, AGO, GENDER, AGE)
    expected = reference_calendar(HIST[0].tolist(), AGO[0].tolist())
    assert features.calendar[0].flatten().tolist() == pytest.approx(expected, abs=1e-5)
    assert features.calendar[1].abs().sum() == 0  # no history
    undated = model.features(HIST, torch.full_like(AGO, -1.0), GENDER, AGE)
    assert undated.calendar.abs().sum() == 0
    assert torch.equal(undated.repeat, features.repeat)  # the session-count features do not need dates
    later = model.features(HIST, AGO + 20.0, GENDER, AGE).calendar[0]
    assert not torch.allclose(later, features.calendar[0])  # the same history, 20 days on


def presence(hist: torch.Tensor) -> torch.Tensor:
    """[B, S, N] 1 where session s of `hist` holds label n: the dense mask the graph once reduced over."""
    out = torch.zeros(hist.shape[0], hist.shape[1], len(LABEL_CLAC1))
    return out.scatter_add_(2, hist.clamp(min=0), (hist >= 0).float()).clamp(max=1.0)


def dense_repeat(hist: torch.Tensor) -> torch.Tensor:
    """The repeat features over the dense [B, S, N] mask: how the graph computed them before it reduced over
    the history's entries."""
    pres, s = presence(hist), hist.shape[1]
    count = pres.sum(1)
    n_sessions = (hist >= 0).any(2).sum(1).clamp(min=1).float()
    newest = (pres * torch.arange(1, s + 1, dtype=torch.float32).view(1, -1, 1)).amax(1)
    recency = torch.where(newest > 0, 1.0 / (1.0 + s - newest), torch.zeros_like(newest))
    ago = torch.arange(s - 1, -1, -1, dtype=torch.float32)
    decayed = torch.einsum("bsn,sk->bnk", pres, torch.tensor(DECAYS).view(1, -1) ** ago.view(-1, 1))
    basic = torch.stack([torch.log1p(count), count / n_sessions.unsqueeze(1), recency, pres[:, -1, :]], -1)
    return torch.cat([basic, decayed], -1)


def dense_calendar(hist: torch.Tensor, ago: torch.Tensor) -> torch.Tensor:
    """The calendar features over dense [B, S, N] masks, as the graph once computed them."""
    stats = make_model().stats
    pres = presence(hist)
    bought = (pres > 0) & (ago[:, -1] >= 0).view(-1, 1, 1)
    days = ago.clamp(min=0.0, max=stats.max_days).unsqueeze(2)
    last = torch.where(bought, days, torch.full_like(pres, stats.never)).amin(1)
    first = torch.where(bought, days, torch.zeros_like(pres)).amax(1)
    repeats = (pres.sum(1) - 1).clamp(min=0)
    own_gap = (first - last) / repeats.clamp(min=1.0)
    gaps = torch.tensor(GAPS)
    expected = ((repeats * own_gap + stats.prior_purchases * gaps) / (repeats + stats.prior_purchases)).clamp(
        min=1.0
    )
    log_due = torch.log((last + 1.0) / expected).clamp(-stats.due_clip, stats.due_clip)
    decayed = torch.einsum("bsn,bsk->bnk", bought.float(), torch.exp(-days / torch.tensor(DAY_TAUS)))
    out = torch.cat(
        [
            torch.stack(
                [torch.log1p(last), log_due, torch.exp(-0.5 * log_due**2), torch.log1p(expected)], -1
            ),
            decayed,
        ],
        -1,
    )
    return out * (last < stats.never).float().unsqueeze(2)


def test_features_from_the_entries_equal_the_dense_masks_exactly() -> None:
    """Random histories (labels anywhere in a session's row, PAD between them, a label twice in a session,
    some rows undated, some empty), and a batch of PAD only: the repeat and calendar features and the start's
    own vector are the same numbers to the bit as the dense formulation."""
    generator = torch.Generator().manual_seed(0)
    n_rows = 64
    hist = torch.full((n_rows, SCHEMA.max_sessions, SCHEMA.max_labels), PAD)
    for b in range(n_rows):
        for s in range(SCHEMA.max_sessions):
            # With replacement: a label may be listed twice in a session, which counts once.
            size = int(torch.randint(0, 4, (1,), generator=generator))
            labels = torch.randint(0, len(LABEL_CLAC1), (size,), generator=generator)
            columns = torch.randperm(SCHEMA.max_labels, generator=generator)[: len(labels)]
            hist[b, s, columns] = labels
    ago = (
        torch.rand(n_rows, SCHEMA.max_sessions, generator=generator)
        .mul(400.0)
        .sort(1, descending=True)
        .values
    )
    ago[::5] = -1.0  # undated rows
    gender, age = torch.zeros(n_rows, dtype=torch.long), torch.zeros(n_rows, dtype=torch.long)
    model = make_model(start=make_start())
    features = model.features(hist, ago, gender, age)
    assert torch.equal(features.counts, presence(hist).sum(1))
    assert torch.equal(features.repeat, dense_repeat(hist))
    assert torch.equal(features.calendar, dense_calendar(hist, ago))
    start = model.wide.start
    assert start is not None
    n = (hist >= 0).any(2).sum(1, keepdim=True)
    weight = tifu_weights(start.sessions_ago.unsqueeze(0), n, start.group_size, start.within, start.across)
    valid = (presence(hist).amax(2) > 0).float()
    assert torch.equal(features.start.own, torch.einsum("bsn,bs->bn", presence(hist), weight * valid))
    empty = model.features(torch.full_like(hist, PAD), ago, gender, age)
    assert empty.repeat.abs().sum() == 0 and empty.calendar.abs().sum() == 0 and empty.counts.sum() == 0


@pytest.mark.parametrize("start", [None, "tifu"])
def test_contributions_sum_exactly_to_forward_and_ablations_zero_a_part(start: str | None) -> None:
    doc = torch.randn(2, 5)
    model = make_model(start=make_start() if start else None)
    wide, deep = model.contributions(model.features(HIST, AGO, GENDER, AGE), GENDER, AGE, doc)
    total = deep + sum(wide)
    assert torch.allclose(total, model(HIST, AGO, GENDER, AGE, doc), atol=1e-6)
    explained = model.explain(HIST, AGO, GENDER, AGE, doc)
    assert all(torch.equal(a, b) for a, b in zip(explained[0], wide, strict=True))
    assert torch.equal(explained[1], deep)
    assert all(not torch.all(term == 0) for term in wide[:7]) and not torch.all(deep == 0)
    assert (not torch.all(wide.start_own == 0)) == (start is not None)
    wide_only = make_model("wide")
    assert torch.all(
        wide_only.contributions(wide_only.features(HIST, AGO, GENDER, AGE), GENDER, AGE, doc)[1] == 0
    )
    deep_only = make_model("deep")
    assert all(
        torch.all(t == 0)
        for t in deep_only.contributions(deep_only.features(HIST, AGO, GENDER, AGE), GENDER, AGE, doc)[0]
    )


def test_repeat_weight_raises_a_rebought_label() -> None:
    model = make_model("wide")
    doc = torch.zeros(2, 5)
    before = model(HIST, AGO, GENDER, AGE, doc)[0, 0] - model(HIST, AGO, GENDER, AGE, doc)[1, 0]
    with torch.no_grad():
        model.wide.repeat_shared[0] += 1.0  # log1p(count) weight: label 0 was bought in 2 sessions
    after = model(HIST, AGO, GENDER, AGE, doc)[0, 0] - model(HIST, AGO, GENDER, AGE, doc)[1, 0]
    assert float((after - before).detach()) == pytest.approx(math.log1p(2), abs=1e-5)


def explore_map() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(7, 7).fill_diagonal_(0.0)


def test_explore_term_scores_only_the_labels_a_history_lacks() -> None:
    model = make_model("wide")
    model.wide.set_explore_map(explore_map())
    model.wide.explore_weight.fill_(0.5)
    counts = model.features(HIST, AGO, GENDER, AGE).counts
    held = counts > 0
    raw = held.float() @ explore_map()  # EASE: the labels held, each once however many sessions hold it
    expected = (0.5 * raw / raw.abs().amax(1, keepdim=True).clamp(min=1e-12)).masked_fill(held, 0.0)
    term = model.wide.explore(counts)
    assert torch.allclose(term, expected, atol=1e-6) and bool((term.abs() <= 0.5 + 1e-6).all())
    assert term[0].abs().sum() > 0 and torch.equal(term[1], torch.zeros(7))  # row 1: no history, nothing
    wide, _ = model.explain(HIST, AGO, GENDER, AGE, torch.zeros(2, 5))
    assert torch.equal(wide.explore, term)


def test_explore_weight_zero_leaves_every_logit_as_without_the_map() -> None:
    plain, mapped, doc = make_model(), make_model(), torch.randn(2, 5)
    mapped.wide.set_explore_map(explore_map())
    assert torch.equal(plain(HIST, AGO, GENDER, AGE, doc), mapped(HIST, AGO, GENDER, AGE, doc))
    mapped.wide.explore_weight.fill_(1.0)
    assert not torch.equal(plain(HIST, AGO, GENDER, AGE, doc), mapped(HIST, AGO, GENDER, AGE, doc))


def test_torchscript_round_trip_equals_eager_without_the_project(tmp_path: Path) -> None:
    model, doc = make_model(start=make_start()), torch.randn(2, 5)
    model.wide.set_explore_map(explore_map())
    model.wide.explore_weight.fill_(0.3)
    script_model(model).save(str(tmp_path / "model.pt"))
    torch.save(
        {"inputs": (HIST, AGO, GENDER, AGE, doc), "expected": model(HIST, AGO, GENDER, AGE, doc)},
        tmp_path / "case.pt",
    )
    # -I -S: no user site, no PYTHONPATH, no .pth files (so not the editable install of this project).
    code = textwrap.dedent(f"""
        import sys, warnings
        sys.path.append({sysconfig.get_paths()["purelib"]!r})
        import importlib.util
        assert importlib.util.find_spec("training") is None, "the project is importable"
        import torch
        warnings.simplefilter("ignore")
        model = torch.jit.load("model.pt")
        case = torch.load("case.pt")
        logits = model(*case["inputs"])
        wide, deep = model.explain(*case["inputs"])
        assert torch.allclose(logits, case["expected"], atol=1e-6), (logits, case["expected"])
        assert torch.allclose(sum(wide) + deep, logits, atol=1e-5)
        assert wide.start_own.abs().sum() > 0  # the start's features travel in the graph
        assert wide.explore.abs().sum() > 0  # and so do EASE's map and the explore weight
        print("ok")
    """)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def baskets_of(hist: torch.Tensor) -> Baskets:
    """The baselines' Baskets of a model `hist` tensor: its non-empty sessions, oldest first."""
    histories = [
        [[i for i in s if i != PAD] for s in sessions if any(i != PAD for i in s)]
        for sessions in hist.tolist()
    ]
    return Baskets.of(histories, 7)


@pytest.mark.parametrize("decay", [(2, 0.9, 0.7), (1, 1.0, 1.0), (3, 0.5, 0.8), (7, 1.0, 0.6)])
def test_in_graph_own_vector_equals_the_tifu_knn_baseline(decay: tuple[int, float, float]) -> None:
    group_size, within, across = decay
    start = BaselineStart(StartSpec("TIFU-KNN", group_size, within, across), 7, 4)
    expected = tifu_vectors(baskets_of(POOL_HIST), group_size=group_size, within=within, across=across)
    assert start.own(history_entries(POOL_HIST, 7)).numpy() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("k", "exclude"), [(1, [-1, -1]), (2, [1, -1]), (3, [0, 3])])
def test_in_graph_neighbour_mean_equals_plain_numpy(k: int, exclude: list[int]) -> None:
    start = make_start(StartSpec("TIFU-KNN", 2, 0.9, 0.7, neighbours=k, alpha=0.3))
    got = start(history_entries(HIST, 7), torch.tensor(exclude)).neighbours
    own = start.own(history_entries(HIST, 7)).numpy()
    pool = start.pool.numpy()
    for b in range(2):
        dist = ((pool - own[b]) ** 2).sum(1)
        if exclude[b] >= 0:
            dist[exclude[b]] = np.inf
        rows = np.argsort(dist, kind="stable")[:k]
        assert got[b].numpy() == pytest.approx(pool[rows].mean(0), abs=1e-6)
    assert nearest(torch.from_numpy(own), start.pool, start.pool_sq, 4, torch.tensor([0, 0]))[
        :, -1
    ].tolist() == [0, 0]
    assert neighbour_mean(start.pool, torch.zeros(2, 0, dtype=torch.int64)).shape == (2, 7)


def test_start_weights_begin_at_scale_times_alpha() -> None:
    start = make_start()
    assert start.own_shared.item() == pytest.approx(3.0) and start.neighbour_shared.item() == pytest.approx(
        7.0
    )
    ppop = BaselineStart(StartSpec("P-Pop"), 7, 4)
    assert (ppop.own_shared.item(), ppop.neighbour_shared.item()) == (SCALE, 0.0)
    gpop = BaselineStart(StartSpec("G-Pop", alpha=0.0, popularity=1.0), 7, 4)
    assert gpop.own_shared.item() == 0.0
