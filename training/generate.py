"""The embedded synthetic data set: four CSV files in the L.POINT layout, same seed -> same bytes.

The simulated behaviour is meant to be learnable but not trivial, so that a model has something real to find:
- every label (CLAC3) has a gender tilt, an age peak and a base popularity; a client's taste is the
  demographic group's preference (a smooth gender/age part plus a per-group preference of each label),
  a few favourite top categories (CLAC1), and a low-rank personal part:
  a client latent vector (its mean set by gender and age) times each label's latent vector, so labels the
  client bought predict labels it never bought (what a model of the whole history can learn and per-label
  repeat counts cannot); label vectors change with age (anchors at 30, 40 and 50, decades in between),
  so what a history says about the next basket depends on the client's age: a non-linear interaction;
- a session's basket has a random size; each slot is drawn, without replacement, from three weighted sources:
  re-purchase (the label's own rate times a timing boost that peaks when the label is due: each label has its
  own purchase cycle in days, one to ten weeks, and the boost peaks when that many days have passed since
  the client last bought it), co-purchase (labels form groups of four across CLAC1s: buying A makes
  the other three likely next session) and the taste (so demographics predict new-to-client labels);
- tastes drift: each session a client may swap a favourite CLAC1, and its latent vector moves a little.
Global popularity is flattened on purpose, so G-Pop stays a weak recommender.

The first product row (HITS_SEQ == 1) of every session is an impulse item drawn from global popularity:
the seed drops those rows as outliers, and here they are.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from training.errors import ConfigError

log = logging.getLogger(__name__)

# (CLAC1 name, kind, gender tilt (+ = F), age peak, re-purchase rate)
CLAC1_TABLE: tuple[tuple[str, str, float, int, float], ...] = (
    ("여성의류", "fashion", 1.5, 30, 0.10),
    ("남성의류", "fashion", -1.5, 40, 0.08),
    ("속옷/양말/홈웨어", "fashion", 0.5, 30, 0.20),
    ("패션잡화", "fashion", 0.8, 20, 0.06),
    ("유아동의류", "kids", 0.8, 30, 0.12),
    ("출산/육아용품", "kids", 1.2, 30, 0.35),
    ("완구", "kids", 0.6, 30, 0.10),
    ("화장품/뷰티케어", "beauty", 1.5, 30, 0.30),
    ("퍼스널케어", "beauty", 0.5, 40, 0.35),
    ("건강식품", "food", 0.0, 60, 0.30),
    ("축산물", "food", 0.3, 50, 0.35),
    ("수산물", "food", 0.3, 50, 0.30),
    ("과일", "food", 0.5, 50, 0.35),
    ("채소", "food", 0.6, 50, 0.40),
    ("냉장식품", "food", 0.4, 40, 0.40),
    ("냉동식품", "food", 0.0, 30, 0.35),
    ("가공식품", "food", 0.2, 40, 0.35),
    ("음료", "food", -0.2, 30, 0.40),
    ("과자", "food", 0.3, 20, 0.35),
    ("세제/위생", "home", 0.5, 40, 0.30),
    ("주방잡화", "home", 0.8, 40, 0.12),
    ("식기/조리기구", "home", 1.0, 50, 0.06),
    ("침구/수예", "home", 1.0, 40, 0.05),
    ("인테리어/조명", "home", 0.7, 30, 0.05),
    ("가구", "home", 0.5, 40, 0.02),
    ("생활/주방가전", "electronics", 0.3, 40, 0.03),
    ("계절가전", "electronics", 0.0, 40, 0.02),
    ("냉장/세탁가전", "electronics", 0.0, 50, 0.02),
    ("영상/음향가전", "electronics", -1.0, 30, 0.02),
    ("컴퓨터", "electronics", -1.2, 20, 0.03),
    ("모바일", "electronics", -0.5, 20, 0.05),
    ("스포츠패션", "sports", -0.3, 30, 0.06),
    ("아웃도어/레저", "sports", -0.6, 50, 0.05),
    ("구기/필드스포츠", "sports", -1.2, 40, 0.05),
    ("시즌스포츠", "sports", -0.5, 30, 0.03),
    ("문구/사무용품", "hobby", 0.0, 20, 0.10),
    ("원예/애완", "hobby", 0.3, 40, 0.25),
    ("자동차용품", "hobby", -1.5, 40, 0.08),
)
# Per kind: CLAC2 words (four are picked per CLAC1) and CLAC3 words (three or four per CLAC2).
KIND_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fashion": (("상의", "하의", "아우터", "원피스/세트", "액세서리"), ("베이직", "캐주얼", "포멀", "시즌")),
    "food": (("신선", "간편식", "선물세트", "대용량", "유기농"), ("국산", "수입", "소포장", "프리미엄")),
    "beauty": (("스킨케어", "메이크업", "헤어", "바디", "향수"), ("기초", "기능성", "리필", "기획,세트")),
    "home": (("수납", "청소", "욕실", "주방", "장식"), ("기본형", "대형", "소형", "세트")),
    "electronics": (
        ("본체", "주변기기", "소모품", "액세서리", "스마트기기"),
        ("보급형", "고급형", "미니", "리퍼"),
    ),
    "kids": (("신생아", "유아", "아동", "놀이", "외출"), ("남아", "여아", "공용", "세트")),
    "sports": (("의류", "신발", "용품", "보호대", "가방"), ("입문", "전문가", "여성용", "남성용")),
    "hobby": (("기본", "소모품", "관리용품", "장식", "전문"), ("일반", "고급", "대용량", "세트")),
}
BRANDS = ("롯데", "해피홈", "데일리", "그린팜", "베이직스", "오늘의", "한결", "무지개", "바른", "클린")
OPTIONS = ("", "색상:블랙", "색상:화이트", "사이즈:M", "사이즈:L", "용량:500ml", "1+1")
DEVICES = ("desktop", "mobile", "tablet")
ZONES = (
    ("서울", "서울"),
    ("경기", "수원시"),
    ("경기", "성남시"),
    ("부산", "부산"),
    ("인천", "인천"),
    ("대구", "대구"),
)
AGES = np.arange(10, 90, 10)
DAY0 = np.datetime64("2018-04-01")
N_DAYS = 183  # 2018-04-01 .. 2018-09-30
GROUP_SIZE = 4  # labels per co-purchase group
# A basket slot is filled from three sources, weighted: re-purchase (label rate x timing), co-purchase
# (partners of last session's labels) and taste (a distribution summing to 1). Tuned so that on the default
# preset, after the seed's rules, about 37% of labels are re-purchases and the top 10 labels hold ~12%.
REPEAT_WEIGHT = 0.6
CO_PURCHASE_WEIGHT = 0.05
CYCLE_DAYS = 7.0  # a label's cycle is a whole number of weeks
CYCLE_WIDTH = 0.35  # how sharply re-purchase peaks when due, relative to the cycle (0.35: +-35% of it)
RECENCY_FLOOR = 0.05  # what is left of the timing boost away from the peak
DEMO_QUIRK = 0.7  # log-weight std of a label's own preference per (gender, age)
TASTE_RANK = 8  # rank of the personal taste: client latent x label latent
TASTE_SCALE = 1.5  # log-weight of one standard deviation of the personal taste
TASTE_DEMO_SHARE = 0.3  # share of the client latent's variance set by gender and age
TASTE_DRIFT = 0.05  # per session, the share of the latent's variance renewed
FAVOURITE_BOOST = 1.0  # log-weight added to labels of a client's favourite CLAC1s
MAX_BASKET = 12
MASTER_COLUMNS = ("PD_C", "PD_NM", "CLAC1_NM", "CLAC2_NM", "CLAC3_NM")


@dataclass(frozen=True)
class Preset:
    """Scale and behaviour knobs of one generated data set."""

    clients: int
    products_per_label: int
    sessions_mean: float  # sessions per client: 1 + negative binomial with this mean overall
    sessions_shape: float  # negative binomial shape: lower = heavier tail
    basket_mean: float  # labels per session (besides the impulse row): min_basket + Poisson
    min_basket: int
    custom_share: float = 0.9  # clients with a Custom row; the rest are non-members
    female_share: float = 0.85  # L.POINT: about 571k F against 101k M
    drift: float = 0.04  # chance per session that a client swaps one favourite CLAC1
    basket_activity: float = 0.0  # basket size grows as (sessions / mean sessions) ** this
    chunk_clients: int = 20_000  # bounds memory: the simulation holds chunk x labels matrices


PRESETS = {
    # Enough sessions per client that about half the members pass the seed's filters.
    "default": Preset(
        clients=2000,
        products_per_label=6,
        sessions_mean=16.0,
        sessions_shape=2.0,
        basket_mean=4.0,
        min_basket=1,
    ),
    # The original's scale: ~740k clients (~670k in Custom), ~2.7M sessions, ~5M product rows.
    "lpoint": Preset(
        clients=740_000,
        products_per_label=1600,
        sessions_mean=3.6,
        sessions_shape=0.6,
        basket_mean=0.68,
        min_basket=0,
        basket_activity=1.0,  # heavy users fill bigger baskets, so some clients pass the seed's filters
    ),
}
# Age mix of L.POINT members: mostly 30s and 40s.
AGE_SHARES = np.array([0.02, 0.15, 0.38, 0.28, 0.11, 0.04, 0.015, 0.005])
# Age-dependent tastes are anchored at three ages; a decade's weights interpolate the two nearest anchors.
AGE_ANCHORS = np.array([30, 40, 50])  # where most members are
AGE_WEIGHTS = np.stack(
    [np.interp(AGES, AGE_ANCHORS, np.eye(len(AGE_ANCHORS))[a]) for a in range(len(AGE_ANCHORS))], 1
)


@dataclass(frozen=True)
class World:
    """The category tree and everything fixed about labels."""

    master: pl.DataFrame  # MASTER_COLUMNS + brand, price; label k owns prod_count[k] rows from prod_start[k]
    label_clac1: np.ndarray  # CLAC1 index of each label
    prod_start: np.ndarray  # first Master row of each label
    prod_count: np.ndarray
    demo_logit: np.ndarray  # [2 genders * 8 ages, labels]: log preference of each demographic group
    clac1_logit: np.ndarray  # [2 genders * 8 ages, CLAC1s]: the same, summed over each CLAC1's labels
    repeat_rate: np.ndarray  # per label
    cycle: np.ndarray  # per label: days after a purchase when re-purchase peaks
    label_factors: np.ndarray  # [3 age anchors, labels, TASTE_RANK]: the label side of the personal taste
    age_weights: np.ndarray  # [8 ages, 3 anchors]: how each decade interpolates the anchors
    demo_factors: np.ndarray  # [2 genders * 8 ages, TASTE_RANK]: mean client latent of each group
    partners: np.ndarray  # [GROUP_SIZE - 1, labels]: each row a permutation, the co-purchase partners
    popularity: np.ndarray  # global label distribution of impulse (HITS_SEQ == 1) items


def generate(out_dir: Path, *, clients: int = 2000, seed: int = 42, preset: str = "default") -> None:
    """Write Product.csv, Session.csv, Custom.csv and Master.csv into out_dir (UTF-8).

    The 'lpoint' preset fixes its own client count; `clients` applies to the default preset.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    if clients < 1:
        raise ConfigError(f"clients must be >= 1 (got {clients})")
    spec = PRESETS[preset]
    if preset == "default":
        spec = dataclasses.replace(spec, clients=clients)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = build_world(np.random.default_rng([seed, 0]), products_per_label=spec.products_per_label)
    world.master.select(MASTER_COLUMNS).write_csv(out_dir / "Master.csv")
    ids = np.random.default_rng([seed, 1]).choice(10 * spec.clients, spec.clients, replace=False) + 1
    with (
        (out_dir / "Product.csv").open("wb") as product,
        (out_dir / "Session.csv").open("wb") as session,
        (out_dir / "Custom.csv").open("wb") as custom,
    ):
        for index, start in enumerate(range(0, spec.clients, spec.chunk_clients)):
            rng = np.random.default_rng([seed, 2, index])
            chunk = _simulate_chunk(rng, world, spec, ids[start : start + spec.chunk_clients])
            for frame, handle in zip(chunk, (product, session, custom), strict=True):
                frame.write_csv(handle, include_header=index == 0)
    log.info("generated %s clients (%s preset, seed %s) into %s", spec.clients, preset, seed, out_dir)


def build_world(rng: np.random.Generator, *, products_per_label: int) -> World:
    """The category tree, the products and the label attributes behind the simulated tastes."""
    names, label_clac1 = _category_tree(rng)
    n_labels = len(names)
    tilt = np.array([CLAC1_TABLE[c][2] for c in label_clac1]) + rng.normal(0, 0.5, n_labels)
    peak = np.array([CLAC1_TABLE[c][3] for c in label_clac1]) + rng.normal(0, 10, n_labels)
    rate = np.array([CLAC1_TABLE[c][4] for c in label_clac1])
    repeat_rate = np.clip(0.6 * rate * rng.lognormal(0, 0.5, n_labels), 0.005, 0.6)
    base = rng.normal(0, 0.5, n_labels)  # mild: popularity alone should not carry the ranking
    genders = np.repeat([1.0, -1.0], len(AGES))[:, None]
    ages = np.tile(AGES, 2)[:, None]
    # Plus a per-(gender, age) preference of each label: more than a few crosses of top categories can hold.
    quirk = rng.normal(0, DEMO_QUIRK, (2 * len(AGES), n_labels))
    demo_logit = base + 1.2 * genders * tilt - ((ages - peak) / 15.0) ** 2 + quirk
    groups = rng.permutation(n_labels - n_labels % GROUP_SIZE).reshape(-1, GROUP_SIZE)
    partners = np.tile(np.arange(n_labels), (GROUP_SIZE - 1, 1))
    for shift in range(1, GROUP_SIZE):
        partners[shift - 1, groups] = np.roll(groups, -shift, axis=1)
    popularity = np.exp(base) / np.exp(base).sum()
    # Labels bought often come back soon: a week for the most frequent, up to ten weeks for the rarest.
    cycle = CYCLE_DAYS * np.clip(np.round(1.0 / (4.0 * repeat_rate) + rng.normal(0, 0.7, n_labels)), 1, 10)
    label_factors = rng.normal(0, 1 / np.sqrt(TASTE_RANK), (len(AGE_ANCHORS), n_labels, TASTE_RANK))
    demo_factors = _demographic_factors(rng)
    counts = rng.integers(max(1, products_per_label // 2), products_per_label * 3 // 2 + 1, n_labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    master = _master_table(rng, names, counts)
    clac1 = np.array(label_clac1)
    clac1_logit = np.stack(
        [np.logaddexp.reduce(demo_logit[:, clac1 == c], axis=1) for c in range(len(CLAC1_TABLE))], axis=1
    )
    return World(
        master,
        clac1,
        starts,
        counts,
        demo_logit,
        clac1_logit,
        repeat_rate,
        cycle,
        label_factors,
        AGE_WEIGHTS,
        demo_factors,
        partners,
        popularity,
    )


def _demographic_factors(rng: np.random.Generator) -> np.ndarray:
    """Mean client latent per (gender, age): a gender vector plus an age vector varying smoothly by decade."""
    gender = rng.normal(0, 1, (2, 1, TASTE_RANK))
    age = (AGE_WEIGHTS @ rng.normal(0, 1, (len(AGE_ANCHORS), TASTE_RANK)))[None]
    return ((gender + age) * np.sqrt(TASTE_DEMO_SHARE / 2)).reshape(-1, TASTE_RANK)


def _category_tree(rng: np.random.Generator) -> tuple[list[tuple[str, str, str]], list[int]]:
    """(CLAC1, CLAC2, CLAC3) names of every label and each label's CLAC1 index."""
    names: list[tuple[str, str, str]] = []
    label_clac1: list[int] = []
    for c1, (clac1, kind, *_) in enumerate(CLAC1_TABLE):
        clac2_words, clac3_words = KIND_WORDS[kind]
        for w2 in rng.choice(clac2_words, 4, replace=False):
            clac2 = f"{clac1} {w2}"
            for w3 in rng.choice(clac3_words, int(rng.integers(3, 5)), replace=False):
                names.append((clac1, clac2, f"{clac2} {w3}"))
                label_clac1.append(c1)
    return names, label_clac1


def _master_table(
    rng: np.random.Generator, names: list[tuple[str, str, str]], counts: np.ndarray
) -> pl.DataFrame:
    """One row per product: codes sorted, names '<brand> <CLAC3> <n>호'."""
    n = int(counts.sum())
    label = np.repeat(np.arange(len(names)), counts)
    serial = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    frame = pl.DataFrame(
        {
            "PD_C": np.sort(rng.choice(10 * n, n, replace=False)) + 1,
            "brand": pl.Series(BRANDS)[rng.integers(0, len(BRANDS), n)],
            "serial": serial,
            "CLAC1_NM": pl.Series([t[0] for t in names])[label],
            "CLAC2_NM": pl.Series([t[1] for t in names])[label],
            "CLAC3_NM": pl.Series([t[2] for t in names])[label],
        }
    )
    pd_nm = pl.format("{} {} {}호", "brand", "CLAC3_NM", "serial").alias("PD_NM")
    price = (rng.lognormal(9.5, 1.0, n).clip(1000, 900_000) // 100 * 100).astype(np.int64)
    return frame.select("PD_C", pd_nm, "CLAC1_NM", "CLAC2_NM", "CLAC3_NM", "brand", price=price)


def _simulate_chunk(
    rng: np.random.Generator, world: World, spec: Preset, ids: np.ndarray
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Product, Session and Custom rows of one chunk of clients."""
    n = len(ids)
    female = rng.random(n) < spec.female_share
    age = rng.choice(len(AGES), n, p=AGE_SHARES / AGE_SHARES.sum())
    group = np.where(female, 0, len(AGES)) + age
    p = spec.sessions_shape / (spec.sessions_shape + spec.sessions_mean - 1)
    n_sessions = 1 + rng.negative_binomial(spec.sessions_shape, p, n)
    days = _session_days(rng, n_sessions)
    baskets = _simulate_baskets(rng, world, spec, group=group, n_sessions=n_sessions, days=days)
    sessions = _session_table(rng, ids, n_sessions, days)
    products = _product_table(rng, world, sessions, baskets, n_sessions=n_sessions)
    member = rng.random(n) < spec.custom_share
    custom = pl.DataFrame(
        {
            "CLNT_ID": ids[member],
            "CLNT_GENDER": np.where(female[member], "F", "M"),
            "CLNT_AGE": AGES[age[member]],
        }
    ).sort("CLNT_ID")
    return products, sessions.drop("client"), custom


def _simulate_baskets(
    rng: np.random.Generator,
    world: World,
    spec: Preset,
    *,
    group: np.ndarray,
    n_sessions: np.ndarray,
    days: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(client index, session index, label) of every label bought, session by session; `days` holds each
    session's day (clients in order, each client's sessions in order)."""
    first = np.concatenate([[0], np.cumsum(n_sessions)[:-1]]).astype(np.int64)
    order = np.argsort(-n_sessions, kind="stable")  # active clients at step t are a prefix
    first = first[order]
    group, counts = group[order], n_sessions[order]
    n, n_labels = len(order), len(world.repeat_rate)
    latent = _client_latent(rng, world, group)
    favourites = _gumbel_top(rng, world.clac1_logit[group], 3)
    # Heavy users (many sessions) also buy more per session when basket_activity > 0; the weights average
    # to 1 over sessions, so the expected number of product rows does not move.
    activity = (counts / counts.mean()) ** spec.basket_activity
    basket_rate = (
        (spec.basket_mean - spec.min_basket) * activity * counts.sum() / max((activity * counts).sum(), 1)
    )
    last = np.full((n, n_labels), -1, dtype=np.int32)
    prev = np.zeros((n, n_labels), dtype=bool)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for t in range(int(counts.max(initial=0))):
        active = int((counts > t).sum())
        logits = (
            world.demo_logit[group[:active]]
            + TASTE_SCALE * _personal_taste(world, latent[:active], group[:active])
            + FAVOURITE_BOOST * _favourite_mask(favourites[:active])[:, world.label_clac1]
        ).astype(np.float32)
        now = days[first[:active] + t]
        weights = _choice_weights(world, logits, last=last[:active], prev=prev[:active], now=now)
        size = np.minimum(spec.min_basket + rng.poisson(basket_rate[:active]), MAX_BASKET)
        picks = _gumbel_top(rng, np.log(weights), int(size.max(initial=0)))
        rows, slots = np.nonzero(np.arange(picks.shape[1]) < size[:, None])
        basket = np.zeros((active, n_labels), dtype=bool)
        basket[rows, picks[rows, slots]] = True
        last[:active][basket] = np.broadcast_to(now[:, None], basket.shape)[basket]
        prev[:active] = basket
        drifting = np.nonzero(rng.random(active) < spec.drift)[0]
        slot = rng.integers(0, favourites.shape[1], len(drifting))
        favourites[drifting, slot] = _gumbel_top(rng, world.clac1_logit[group[drifting]], 1)[:, 0]
        # Renew a share of the personal deviation: the latent wanders around the group's mean.
        mean = world.demo_factors[group[:active]]
        fresh = _client_latent(rng, world, group[:active]) - mean
        latent[:active] = (
            mean + np.sqrt(1 - TASTE_DRIFT) * (latent[:active] - mean) + np.sqrt(TASTE_DRIFT) * fresh
        )
        out.append((order[rows], np.full(len(rows), t), picks[rows, slots]))
    return tuple(np.concatenate([o[i] for o in out]) if out else np.zeros(0, np.int64) for i in range(3))  # type: ignore[return-value]


def _client_latent(rng: np.random.Generator, world: World, group: np.ndarray) -> np.ndarray:
    """Fresh client latents: the group's mean plus personal noise, unit variance per dimension overall."""
    noise = rng.normal(0, np.sqrt(1 - TASTE_DEMO_SHARE), (len(group), TASTE_RANK))
    return world.demo_factors[group] + noise


def _personal_taste(world: World, latent: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Client latent x label latent, the label latents of the client's age: [clients, labels]."""
    weights = world.age_weights[group % len(AGES)]
    return sum((latent * weights[:, a, None]) @ factors.T for a, factors in enumerate(world.label_factors))


def _choice_weights(
    world: World, logits: np.ndarray, *, last: np.ndarray, prev: np.ndarray, now: np.ndarray
) -> np.ndarray:
    """How likely each label fills a basket slot on day `now` (per client): re-purchase + co-purchase +
    taste (unnormalised); `last`: the day each label was last bought (-1: never)."""
    since = (now[:, None] - last).astype(np.float32)
    due = np.exp(-(((since / world.cycle[None, :] - 1.0) / CYCLE_WIDTH) ** 2))
    timing = np.where(last >= 0, RECENCY_FLOOR + due, 0.0)
    pulls = np.zeros(prev.shape, dtype=np.float32)
    for partner in world.partners:
        pulls[:, partner] += prev
    taste = np.exp(logits - logits.max(axis=1, keepdims=True))
    taste /= taste.sum(axis=1, keepdims=True)
    return REPEAT_WEIGHT * world.repeat_rate[None, :] * timing + CO_PURCHASE_WEIGHT * pulls + taste + 1e-9


def _favourite_mask(favourites: np.ndarray) -> np.ndarray:
    mask = np.zeros((len(favourites), len(CLAC1_TABLE)), dtype=np.float32)
    np.put_along_axis(mask, favourites, 1.0, axis=1)
    return mask


def _gumbel_top(rng: np.random.Generator, logits: np.ndarray, k: int) -> np.ndarray:
    """k distinct column indices per row, drawn without replacement with probabilities softmax(logits)."""
    if k == 0:
        return np.zeros((len(logits), 0), dtype=np.int64)
    noisy = logits - np.log(-np.log(rng.random(logits.shape, dtype=np.float32) + 1e-12) + 1e-12)
    top = np.argpartition(-noisy, k - 1, axis=1)[:, :k]
    rank = np.argsort(-np.take_along_axis(noisy, top, axis=1), axis=1)
    return np.take_along_axis(top, rank, axis=1)


def _segment_cumsum(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting at each segment (segments of the given sizes, in order)."""
    total = np.cumsum(values)
    ends = np.cumsum(sizes)
    offsets = np.repeat(np.concatenate([[0], total[ends[:-1] - 1]]) if len(sizes) else total[:0], sizes)
    return total - offsets


def _thousands(column: str) -> pl.Expr:
    """An integer column as text with a thousands separator ('39,000'), as in the L.POINT export."""
    col = pl.col(column)
    grouped = pl.format("{},{}", col // 1000, (col % 1000).cast(pl.String).str.zfill(3))
    return pl.when(col >= 1000).then(grouped).otherwise(col.cast(pl.String))


def _session_days(rng: np.random.Generator, n_sessions: np.ndarray) -> np.ndarray:
    """Each session's day (0 = DAY0), clients in order, sorted within each client."""
    client = np.repeat(np.arange(len(n_sessions)), n_sessions)
    days = rng.integers(0, N_DAYS, int(n_sessions.sum()))
    return days[np.lexsort((days, client))]


def _session_table(
    rng: np.random.Generator, ids: np.ndarray, n_sessions: np.ndarray, days: np.ndarray
) -> pl.DataFrame:
    """One row per session, in each client's order: SESS_SEQ and SESS_DT (`days`) grow, SESS_ID is per
    client."""
    total = int(n_sessions.sum())
    client = np.repeat(np.arange(len(ids)), n_sessions)
    zone = rng.integers(0, len(ZONES), len(ids))[client]
    frame = pl.DataFrame(
        {
            "client": client,
            "CLNT_ID": ids[client],
            "SESS_ID": _segment_cumsum(rng.integers(1, 4000, total), n_sessions) + 1000,
            "SESS_SEQ": _segment_cumsum(rng.geometric(0.5, total), n_sessions),
            "SESS_DT": (DAY0 + days).astype("datetime64[D]"),
            "TOT_PAG_VIEW_CT": rng.integers(1, 200, total).astype(np.float64),
            "hr": rng.integers(10, 6000, total),
            "DVC_CTG_NM": pl.Series(DEVICES)[rng.choice(3, total, p=[0.25, 0.7, 0.05])],
            "ZON_NM": pl.Series([z for z, _ in ZONES])[zone],
            "CITY_NM": pl.Series([c for _, c in ZONES])[zone],
        }
    )
    return frame.with_columns(
        pl.col("SESS_DT").dt.strftime("%Y%m%d").cast(pl.Int64), _thousands("hr").alias("TOT_SESS_HR_V")
    ).select(
        "client",
        "CLNT_ID",
        "SESS_ID",
        "SESS_SEQ",
        "SESS_DT",
        "TOT_PAG_VIEW_CT",
        "TOT_SESS_HR_V",
        "DVC_CTG_NM",
        "ZON_NM",
        "CITY_NM",
    )


def _product_table(
    rng: np.random.Generator,
    world: World,
    sessions: pl.DataFrame,
    baskets: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    n_sessions: np.ndarray,
) -> pl.DataFrame:
    """Product rows: an impulse item first (HITS_SEQ 1), then one or two products per basket label."""
    client, step, label = baskets
    first = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
    copies = 1 + (rng.random(len(label)) < 0.3)
    n_total = len(sessions)
    session = np.concatenate([np.arange(n_total), np.repeat(first[client] + step, copies)])
    labels = np.concatenate(
        [rng.choice(len(world.popularity), n_total, p=world.popularity), np.repeat(label, copies)]
    )
    impulse = np.arange(len(session)) < n_total
    order = np.lexsort((rng.random(len(session)), ~impulse, session))
    session, labels = session[order], labels[order]
    hits = _segment_cumsum(
        np.where(impulse[order], 1, rng.geometric(0.4, len(session))), np.bincount(session)
    )
    product = world.prod_start[labels] + (world.prod_count[labels] * rng.random(len(labels)) ** 2).astype(
        np.int64
    )
    catalogue = world.master.select("PD_C", "brand", "price")[product]
    quantity = rng.choice(3, len(product), p=[0.8, 0.15, 0.05]) + 1
    frame = pl.DataFrame(
        {
            "CLNT_ID": sessions["CLNT_ID"].to_numpy()[session],
            "SESS_ID": sessions["SESS_ID"].to_numpy()[session],
            "HITS_SEQ": hits,
            "PD_C": catalogue["PD_C"],
            "PD_ADD_NM": pl.Series(OPTIONS)[rng.integers(0, len(OPTIONS), len(product))],
            "PD_BRA_NM": catalogue["brand"],
            "amount": catalogue["price"] * quantity,
            "PD_BUY_CT": quantity,
        }
    )
    return frame.with_columns(_thousands("amount").alias("PD_BUY_AM")).select(
        "CLNT_ID", "SESS_ID", "HITS_SEQ", "PD_C", "PD_ADD_NM", "PD_BRA_NM", "PD_BUY_AM", "PD_BUY_CT"
    )
