"""A baseline's ranking inside the graph: where the wide part starts (and what it keeps learning from).

Every baseline of training/baselines.py is a weighted sum over the client's past baskets, optionally mixed
with its nearest neighbours' sums (TIFU-KNN) or passed through a label-label similarity (ItemKNN). A
`StartSpec` says which, with the baseline's validated hyperparameters; `BaselineStart` computes it from the
model's raw `hist`. The functions here are the one definition of that arithmetic: the baselines call them
too, so the untrained model ranks exactly as the baseline it starts from (tests pin it).
"""

from dataclasses import asdict, dataclass
from typing import Any, Final, NamedTuple

import torch
from torch import nn

SCALE = 10.0  # the start's logit scale: it matters to the lambda and softmax losses (5 and 20 gave the same
# validation NDCG@10 on The Complete Journey), and, in float32, to which popularity ties resolve
# The start breaks ties by popularity, as a baseline should: bias = SCALE x tie x popularity / its maximum.
# In float32 the tie must be large enough to resolve and small enough never to reorder two distinct sums.
TIE_COUNTS = 1e-2  # P-Pop's sums are session counts / n, at least 1 / max_sessions apart (up to 100 sessions)
TIE_CONTINUOUS = 1e-5  # decayed, similarity- or neighbour-weighted sums: gaps can be small


class Entries(NamedTuple):
    """A batch's history as its distinct (row, session, label) entries, in (row, session, label) order: a
    session holds a few labels of the N, so every per-label sum runs over these, not over [B, S, N]."""

    row: torch.Tensor  # [E] int64
    session: torch.Tensor  # [E] int64, the session's slot: right-aligned, S - 1 is the newest
    label: torch.Tensor  # [E] int64
    slot: torch.Tensor  # [E] int64, row * N + label: where the entry lands in a flattened [B, N]
    n_sessions: torch.Tensor  # [B] int64, the row's non-empty sessions
    n_rows: int  # B


def history_entries(hist: torch.Tensor, n_labels: int) -> Entries:
    """The `Entries` of `hist` [B, S, L] (label ids, PAD -1); a label twice in a session counts once."""
    n_rows, max_sessions = hist.shape[0], hist.shape[1]
    place = torch.arange(n_rows * max_sessions, device=hist.device).view(n_rows, max_sessions, 1)
    listed = hist >= 0
    key = torch.unique((place * n_labels + hist)[listed], sorted=True)
    label = key % n_labels
    row_session = torch.div(key, n_labels, rounding_mode="floor")
    row = torch.div(row_session, max_sessions, rounding_mode="floor")
    slot = row * n_labels + label
    return Entries(row, row_session % max_sessions, label, slot, listed.any(2).sum(1), n_rows)


def tifu_weights(
    ago: torch.Tensor, n_baskets: torch.Tensor, group_size: int, within: float, across: float
) -> torch.Tensor:
    """TIFU-KNN's weight (Hu et al., SIGIR 2020) of a basket `ago` baskets before the newest in a history
    of `n_baskets` (broadcast together): the baskets are cut into groups of `group_size` counted from the
    newest (the oldest group may be partial); a basket weighs within^(place in its group) / (its group's
    size), its group across^(groups ago), and the groups are averaged. group_size 1 and within 1 give
    recency-weighted P-Pop (across^ago / n); across 1 too gives P-Pop's session counts / n."""
    group, place = ago // group_size, ago % group_size
    n_groups = (n_baskets + group_size - 1) // group_size
    last = n_groups - 1
    group_len = torch.where(group == last, n_baskets - last * group_size, torch.full_like(group, group_size))
    return (
        torch.pow(torch.full_like(place, within, dtype=torch.float64), place).float()
        * torch.pow(torch.full_like(group, across, dtype=torch.float64), group).float()
        / group_len.clamp(min=1).float()
        / n_groups.clamp(min=1).float()
    )


def nearest(
    query: torch.Tensor, pool: torch.Tensor, pool_sq: torch.Tensor, k: int, exclude: torch.Tensor | None
) -> torch.Tensor:
    """[B, k] the pool rows Euclidean-nearest to each query row, nearest first;
    pool row exclude[b] (-1: none) is never b's neighbour."""
    dist = (query**2).sum(1, keepdim=True) + pool_sq.unsqueeze(0) - 2.0 * query @ pool.t()
    if exclude is not None:
        own = torch.zeros_like(dist, dtype=torch.bool)
        own.scatter_(1, exclude.clamp(min=0).unsqueeze(1), (exclude >= 0).unsqueeze(1))
        dist = dist.masked_fill(own, float("inf"))
    return dist.topk(k, dim=1, largest=False, sorted=True).indices


def neighbour_mean(pool: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """[B, N] the unweighted mean of the pool vectors at `rows` [B, k] (a bag of rows: no [B, k, N])."""
    if rows.shape[1] == 0:
        return torch.zeros(rows.shape[0], pool.shape[1], dtype=pool.dtype, device=pool.device)
    return nn.functional.embedding_bag(rows, pool, mode="mean")


@dataclass(frozen=True)
class StartSpec:
    """How the graph reproduces one baseline's ranking: own x SCALE x alpha + neighbours x SCALE x
    (1 - alpha) + SCALE x `popularity` x G-Pop / its maximum, where own is the TIFU-weighted basket sum
    (or, `binary`, whether the history holds the label) through the label similarity for ItemKNN and EASE,
    and neighbours TIFU-KNN's neighbour mean."""

    baseline: str
    group_size: int = 1
    within: float = 1.0
    across: float = 1.0
    neighbours: int = 0  # k of TIFU-KNN's neighbour mean; 0 = none
    alpha: float = 1.0
    item_similarity: bool = False
    binary: bool = False  # own: whether the history holds each label (EASE), not the weighted sum
    popularity: float = TIE_CONTINUOUS  # the tie-breaker's weight (1 for G-Pop itself)

    def weights(self) -> tuple[float, float]:
        """The start weights of the own and the neighbour feature."""
        return (
            (SCALE * self.alpha, SCALE * (1.0 - self.alpha)) if self.neighbours else (SCALE * self.alpha, 0.0)
        )

    def bias(self, popularity: torch.Tensor) -> torch.Tensor:
        """float32 [N] the start's bias from G-Pop's session counts."""
        popularity = popularity.float()
        return SCALE * self.popularity * popularity / popularity.max().clamp(min=1.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StartFeatures(NamedTuple):
    """The start's two per-label features of a batch."""

    own: torch.Tensor  # [B, N]
    neighbours: torch.Tensor  # [B, N] (zeros without neighbours)


class BaselineStart(nn.Module):
    """The baseline of a `StartSpec`, computed from the history's `Entries`, with trainable weights:
    own x (own_shared + own_label) + neighbours x (neighbour_shared + neighbour_label), started at
    `StartSpec.weights`. Neighbours are searched in a fixed pool of training clients'
    own vectors (at most `StartConfig.neighbour_pool` rows), so a request's cost does not grow with the
    number of clients."""

    group_size: Final[int]
    within: Final[float]
    across: Final[float]
    k: Final[int]
    use_similarity: Final[bool]
    binary: Final[bool]
    sessions_ago: torch.Tensor  # [S] long, S-1 ... 0
    pool: torch.Tensor  # [P, N] own vectors of the pool clients
    pool_sq: torch.Tensor  # [P] their squared norms, computed once
    similarity: torch.Tensor  # [N, N] label-label cosine (ItemKNN), else [0, 0]

    def __init__(self, spec: StartSpec, n_labels: int, max_sessions: int) -> None:
        super().__init__()
        self.group_size, self.within, self.across = spec.group_size, spec.within, spec.across
        self.k, self.use_similarity, self.binary = spec.neighbours, spec.item_similarity, spec.binary
        self.register_buffer("sessions_ago", torch.arange(max_sessions - 1, -1, -1))
        self.register_buffer("pool", torch.zeros(0, n_labels))
        self.register_buffer("pool_sq", torch.zeros(0))
        self.register_buffer("similarity", torch.zeros(0, 0))
        own, near = spec.weights()
        self.own_shared = nn.Parameter(torch.full((1,), own))
        self.own_label = nn.Parameter(torch.zeros(n_labels))
        self.neighbour_shared = nn.Parameter(torch.full((1,), near))
        self.neighbour_label = nn.Parameter(torch.zeros(n_labels))

    def own(self, entries: Entries) -> torch.Tensor:
        """[B, N] the TIFU-weighted sum of the history's baskets (`tifu_weights`), or 1 where it is
        positive if `binary`, through the label similarity if set. Sessions are right-aligned, so a row's
        baskets are its newest n_sessions."""
        n_labels = self.own_label.shape[0]
        weight = tifu_weights(
            self.sessions_ago[entries.session], entries.n_sessions[entries.row], self.group_size, self.within,
            self.across,
        )  # fmt: skip
        vector = torch.zeros(entries.n_rows * n_labels, device=weight.device).index_add_(
            0, entries.slot, weight
        )
        vector = vector.view(entries.n_rows, n_labels)
        if self.binary:
            vector = (vector > 0).float()
        return vector @ self.similarity if self.use_similarity else vector

    def set_pool(self, own: torch.Tensor) -> None:
        """Store the neighbour pool: `own` vectors [P, N] of the pool clients' pre-validation histories."""
        self.pool = own.float().contiguous()
        self.pool_sq = (self.pool**2).sum(1)

    def set_similarity(self, similarity: torch.Tensor) -> None:
        self.similarity = similarity.float().contiguous()

    def forward(self, entries: Entries, exclude: torch.Tensor | None) -> StartFeatures:
        """The features of a batch; `exclude` [B]: each example's own pool row, or -1 (training only)."""
        own = self.own(entries)
        k = min(self.k, self.pool.shape[0] - 1)
        if k <= 0:
            return StartFeatures(own, torch.zeros_like(own))
        rows = nearest(own, self.pool, self.pool_sq, k, exclude)
        return StartFeatures(own, neighbour_mean(self.pool, rows))

    def terms(self, features: StartFeatures) -> tuple[torch.Tensor, torch.Tensor]:
        """(own, neighbours) contributions [B, N] to the logits."""
        return (
            features.own * (self.own_shared + self.own_label),
            features.neighbours * (self.neighbour_shared + self.neighbour_label),
        )


def start_logits(features: StartFeatures, spec: StartSpec, popularity: torch.Tensor) -> torch.Tensor:
    """float32 [B, N] the untrained start's logits, in the graph's order of operations (bias, then the own
    term, then the neighbour term; every other contribution is 0): what the baselines score, so the model
    started at one ranks exactly as it does."""
    own, near = spec.weights()
    return (spec.bias(popularity) + features.own * own) + features.neighbours * near
