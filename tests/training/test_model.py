import math
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.synthetic import hist_baskets
from training.artifacts import script_model
from training.config import TrainConfig
from training.errors import ConfigError
from training.features import PAD, FeatureSchema
from training.knn_baselines import neighbour_mean, neighbour_order, tifu_vectors
from training.model import DECAYS, WideAndDeep
from training.train import init_label_bias

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
GENDER, AGE = torch.tensor([1, 2]), torch.tensor([3, 0])


def make_model(mode: str = "wide_deep") -> WideAndDeep:
    torch.manual_seed(0)
    model = WideAndDeep(
        SCHEMA, LABEL_CLAC1, mode=mode, hidden=(16, 8), label_emb_dim=4, cross_rank=2, copurchase_rank=3
    )
    with torch.no_grad():  # non-zero wide weights so every wide term shows in the output
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def reference_wide_inputs(hist: list[list[list[int]]], gender: int, age: int) -> dict[str, list[float]]:
    """Plain-Python version of WideAndDeep.wide_inputs for one example."""
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
    logits = make_model(mode)(HIST, GENDER, AGE, torch.randn(2, 5))
    assert logits.shape == (2, 7)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_wide_inputs_equal_plain_python_reference() -> None:
    features = make_model().wide_inputs(HIST, GENDER, AGE)
    for b in range(2):
        expected = reference_wide_inputs(HIST[b].tolist(), int(GENDER[b]), int(AGE[b]))
        for name, values in expected.items():
            assert features[name][b].flatten().tolist() == pytest.approx(values, abs=1e-6), name


def test_parts_sum_to_forward_and_ablations_zero_a_part() -> None:
    doc = torch.randn(2, 5)
    model = make_model()
    wide, deep = model.parts(HIST, GENDER, AGE, doc)
    assert torch.allclose(wide + deep, model(HIST, GENDER, AGE, doc))
    assert not torch.all(wide == 0) and not torch.all(deep == 0)
    assert torch.all(make_model("wide").parts(HIST, GENDER, AGE, doc)[1] == 0)
    assert torch.all(make_model("deep").parts(HIST, GENDER, AGE, doc)[0] == 0)


def test_repeat_weight_raises_a_rebought_label() -> None:
    model = make_model("wide")
    doc = torch.zeros(2, 5)
    before = model(HIST, GENDER, AGE, doc)[0, 0] - model(HIST, GENDER, AGE, doc)[1, 0]
    with torch.no_grad():
        model.repeat_shared[0] += 1.0  # log1p(count) weight: label 0 was bought in 2 sessions
    after = model(HIST, GENDER, AGE, doc)[0, 0] - model(HIST, GENDER, AGE, doc)[1, 0]
    assert float((after - before).detach()) == pytest.approx(math.log1p(2), abs=1e-5)


def test_torchscript_round_trip_equals_eager_without_the_project(tmp_path: Path) -> None:
    model, doc = make_model(), torch.randn(2, 5)
    script_model(model).save(str(tmp_path / "model.pt"))
    torch.save(
        {"inputs": (HIST, GENDER, AGE, doc), "expected": model(HIST, GENDER, AGE, doc)}, tmp_path / "case.pt"
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
        wide, deep = model.parts(*case["inputs"])
        assert torch.allclose(logits, case["expected"], atol=1e-6), (logits, case["expected"])
        assert torch.allclose(wide + deep, logits, atol=1e-6)
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


# A hand-made neighbour pool: four clients' histories, each with a distinct cosine to HIST[0].
POOL_HIST = torch.tensor(
    [
        [[PAD, PAD, PAD], [PAD, PAD, PAD], [0, 1, PAD], [2, PAD, PAD]],
        [[PAD, PAD, PAD], [0, 3, PAD], [4, 5, PAD], [0, 3, 4]],
        [[PAD, PAD, PAD], [PAD, PAD, PAD], [PAD, PAD, PAD], [6, 5, PAD]],
        [[1, PAD, PAD], [1, 2, PAD], [0, PAD, PAD], [2, 6, PAD]],
    ]
)


def neighbour_model(k: int, decay: float = 0.7) -> WideAndDeep:
    model = WideAndDeep(
        SCHEMA, LABEL_CLAC1, hidden=(8,), label_emb_dim=0, neighbours=k, neighbour_decay=decay
    )
    model.set_pool(POOL_HIST)
    return model.eval()


def reference_neighbour_score(hist: list[list[int]], k: int, decay: float, exclude: int) -> np.ndarray:
    """Plain-numpy WideAndDeep.neighbour_score for one example."""

    def vector(h: list[list[int]]) -> np.ndarray:
        v = np.zeros(len(LABEL_CLAC1))
        for j, session in enumerate(h):
            for label in {i for i in session if i != PAD}:
                v[label] += decay ** (len(h) - 1 - j)
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else v

    pool = np.stack([vector(h) for h in POOL_HIST.tolist()])
    sims = pool @ vector(hist)
    if exclude >= 0:
        sims[exclude] = -np.inf
    top = np.argsort(-sims, kind="stable")[:k]
    weights = np.clip(sims[top], 0.0, None)
    score = weights @ pool[top] / weights.sum()
    return score / score.max()


@pytest.mark.parametrize(("k", "exclude"), [(1, [-1, -1]), (2, [-1, -1]), (2, [1, -1]), (3, [3, 0])])
def test_neighbour_score_equals_numpy_reference(k: int, exclude: list[int]) -> None:
    model = neighbour_model(k)
    got = model.neighbour_score(HIST, torch.tensor(exclude))
    expected = reference_neighbour_score(HIST[0].tolist(), k, 0.7, exclude[0])
    assert got[0].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert torch.all(got[1] == 0)  # no history: no similar client, no neighbour vote


def test_neighbour_score_excludes_own_client() -> None:
    model = neighbour_model(1)
    own = POOL_HIST[1:2]  # pool client 1's own history: without exclusion, it is its own nearest neighbour
    pool_row = model.pool[1] / model.pool[1].max()
    assert torch.allclose(model.neighbour_score(own)[0], pool_row)
    excluded = model.neighbour_score(own, torch.tensor([1]))[0]
    assert not torch.allclose(excluded, pool_row)
    expected = reference_neighbour_score(own[0].tolist(), 1, 0.7, 1)
    assert excluded.tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_neighbour_feature_is_off_by_default_and_scripted_with_exclude() -> None:
    assert make_model().pool.shape == (0, 7)
    assert "neighbour" not in make_model().wide_inputs(HIST, GENDER, AGE)
    model, doc, exclude = neighbour_model(2), torch.randn(2, 5), torch.tensor([1, -1])
    with torch.no_grad():
        model.neighbour_shared.fill_(2.0)
    scripted = script_model(model)
    assert torch.allclose(scripted(HIST, GENDER, AGE, doc, exclude), model(HIST, GENDER, AGE, doc, exclude))
    assert torch.allclose(scripted(HIST, GENDER, AGE, doc), model(HIST, GENDER, AGE, doc))
    assert not torch.allclose(scripted(HIST, GENDER, AGE, doc, exclude), scripted(HIST, GENDER, AGE, doc))


def test_neighbour_config_rejects_bad_values_and_bias_init_scales_the_start() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(neighbours=-1)
    with pytest.raises(ConfigError):
        TrainConfig(neighbour_decay=0.0)
    model, targets = neighbour_model(1), [[0], [0, 1], [2]]
    init_label_bias(model, targets, 7, scale=0.5)
    assert model.bias[0].item() == pytest.approx(0.5 * math.log((2 / 3) / (1 / 3)), abs=1e-5)
    init_label_bias(model, targets, 7, scale=0.0)
    assert torch.all(model.bias == 0)


def tifu_model(k: int, tifu: tuple[int, float, float]) -> WideAndDeep:
    model = WideAndDeep(SCHEMA, LABEL_CLAC1, hidden=(8,), label_emb_dim=0, neighbours=k, tifu=tifu)
    model.set_pool(POOL_HIST)
    return model.eval()


@pytest.mark.parametrize("tifu", [(1, 1.0, 0.9), (2, 0.8, 0.6), (3, 0.9, 1.0), (4, 0.5, 0.5)])
def test_tifu_vector_equals_knn_baseline(tifu: tuple[int, float, float]) -> None:
    model = tifu_model(2, tifu)
    size, within, across = tifu
    for hist in (HIST, POOL_HIST):
        baskets = hist_baskets(hist, len(LABEL_CLAC1))
        expected = tifu_vectors(baskets, group_size=size, within=within, across=across)
        assert model.tifu_vector(hist).numpy() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("k", "exclude"), [(1, [-1, -1]), (2, [0, -1]), (3, [3, 2])])
def test_tifu_neighbour_feature_equals_knn_baseline(k: int, exclude: list[int]) -> None:
    model = tifu_model(k, (2, 0.8, 0.6))
    f = model.wide_inputs(HIST, GENDER, AGE, torch.tensor(exclude))
    pool = tifu_vectors(hist_baskets(POOL_HIST, len(LABEL_CLAC1)), group_size=2, within=0.8, across=0.6)
    query = tifu_vectors(hist_baskets(HIST, len(LABEL_CLAC1)), group_size=2, within=0.8, across=0.6)
    expected = neighbour_mean(pool, neighbour_order(query, pool, np.asarray(exclude)), k)
    assert f["neighbour"].numpy() == pytest.approx(expected, abs=1e-6)
    assert f["tifu"].numpy() == pytest.approx(query, abs=1e-6)


def test_tifu_model_is_scripted_with_and_without_exclude() -> None:
    model, doc, exclude = tifu_model(2, (2, 0.8, 0.6)), torch.randn(2, 5), torch.tensor([1, -1])
    with torch.no_grad():
        model.tifu_shared.fill_(3.0)
        model.neighbour_shared.fill_(2.0)
        model.tifu_gate_bias.fill_(0.5)
    scripted = script_model(model)
    for args in ((HIST, GENDER, AGE, doc, exclude), (HIST, GENDER, AGE, doc)):
        assert torch.allclose(scripted(*args), model(*args), atol=1e-6)
    assert not torch.allclose(scripted(HIST, GENDER, AGE, doc, exclude), scripted(HIST, GENDER, AGE, doc))


def test_tifu_is_off_by_default_and_its_weights_then_change_nothing() -> None:
    model, doc = make_model(), torch.randn(2, 5)
    assert "tifu" not in model.wide_inputs(HIST, GENDER, AGE)
    before = model(HIST, GENDER, AGE, doc)
    with torch.no_grad():
        model.tifu_shared.fill_(5.0)
        model.tifu_gate_bias.fill_(5.0)
    assert torch.equal(model(HIST, GENDER, AGE, doc), before)
