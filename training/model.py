"""WideAndDeep: one logit per CLAC3 label for a client's next session (Cheng et al., 2016).

The wide part is a linear model over features computed here from the raw ids (see `wide_inputs`), so the
TorchScript graph takes exactly what `FeatureBuilder` produces and serving cannot drift from training.
"""

from collections.abc import Sequence
from typing import Final

import torch
from torch import nn

from training.features import FeatureSchema

# Per-session decays of the decayed counts: 0.5 looks at the last session or two (what is due now),
# 0.8 at the whole kept history. The first one also feeds the co-purchase map.
DECAYS = (0.5, 0.8)
N_REPEAT = 4 + len(DECAYS)  # log1p(count), share, recency, in newest session, decayed counts


class WideAndDeep(nn.Module):
    """logits [B, N] = wide(hist, gender, age) + deep(hist, gender, age, doc_vec); `mode` drops a part."""

    use_wide: Final[bool]
    use_deep: Final[bool]
    use_label_emb: Final[bool]
    n_ages: Final[int]
    max_sessions: Final[int]
    label_clac1: torch.Tensor  # buffers, typed for mypy: [N, C] one-hot CLAC1 of each label
    pair_mask: torch.Tensor  # [C, C] strict upper triangle: each unordered pair once
    sessions_ago: torch.Tensor  # [S] S-1 ... 0
    decay: torch.Tensor  # [S, len(DECAYS)]
    n_neighbours: Final[int]
    tifu_group_size: Final[int]
    tifu_within: Final[float]
    tifu_across: Final[float]
    pool: torch.Tensor  # [M, N] `pool_vector`s of the training clients (empty if unused)
    pool_decay: torch.Tensor  # [S] neighbour_decay ** sessions ago

    def __init__(
        self,
        schema: FeatureSchema,
        label_clac1: Sequence[int],
        *,
        mode: str = "wide_deep",
        hidden: Sequence[int] = (512, 256, 128, 64),
        dropout: float = 0.5,
        demo_dim: int = 8,
        label_emb_dim: int = 32,
        cross_rank: int = 8,
        copurchase_rank: int = 32,
        neighbours: int = 0,
        neighbour_decay: float = 0.9,
        tifu: tuple[int, float, float] = (0, 1.0, 1.0),
    ) -> None:
        """`tifu`: (group_size, within, across) of TIFU-KNN's history vector (group_size 0: off). On, the
        wide part gains that vector as a feature, and the neighbour feature becomes TIFU-KNN's: the
        unweighted mean of the `neighbours` Euclidean-nearest pool vectors."""
        super().__init__()
        n, c, a, s = schema.n_labels, schema.n_clac1, schema.n_ages, schema.max_sessions
        self.use_wide, self.use_deep = mode in ("wide_deep", "wide"), mode in ("wide_deep", "deep")
        self.use_label_emb = label_emb_dim > 0
        self.n_ages, self.max_sessions = a, s
        self.register_buffer("label_clac1", nn.functional.one_hot(torch.tensor(list(label_clac1)), c).float())
        self.register_buffer("pair_mask", torch.ones(c, c).triu(diagonal=1))
        ago = torch.arange(s - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("sessions_ago", ago)
        self.register_buffer("decay", torch.tensor(DECAYS).view(1, -1) ** ago.view(-1, 1))
        self.n_neighbours = neighbours
        self.tifu_group_size, self.tifu_within, self.tifu_across = tifu
        self.register_buffer("pool", torch.zeros(0, n))  # filled by set_pool before training
        self.register_buffer("pool_decay", neighbour_decay**ago)
        # Wide: zero-initialised like any linear model; low-rank factors start with one random side.
        self.bias = nn.Parameter(torch.zeros(n))
        self.clac1_weight = nn.Parameter(torch.zeros(c, n))
        self.demo_cross_emb = nn.Parameter(torch.randn(schema.n_genders * a * c, cross_rank) * 0.01)
        self.demo_cross_out = nn.Parameter(torch.zeros(cross_rank, n))
        self.pair_emb = nn.Parameter(torch.randn(c * c, a * cross_rank) * 0.01)  # [pair, age x rank]
        self.pair_out = nn.Parameter(torch.zeros(cross_rank, n))
        self.repeat_shared = nn.Parameter(torch.zeros(N_REPEAT))
        self.repeat_label = nn.Parameter(torch.zeros(n, N_REPEAT))
        self.co_in = nn.Parameter(torch.randn(n, copurchase_rank) * 0.01)
        self.co_out = nn.Parameter(torch.zeros(copurchase_rank, n))
        # Deep
        self.gender_emb = nn.Embedding(schema.n_genders, demo_dim)
        self.age_emb = nn.Embedding(a, demo_dim)
        self.label_emb = nn.Parameter(torch.randn(n, max(label_emb_dim, 1)) * 0.1)
        width = 2 * demo_dim + schema.doc_dim + (label_emb_dim if self.use_label_emb else 0)
        layers: list[nn.Module] = []
        for size in hidden:
            linear = nn.Linear(width, size)
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # He init, as the seed
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, n)
        self.repeat_gate = nn.Linear(width, N_REPEAT)
        # Wide neighbour weight, created last and from zeros: a model without neighbours keeps the parameter
        # order and random draws it had before the feature existed.
        self.neighbour_shared = nn.Parameter(torch.zeros(1))
        self.neighbour_label = nn.Parameter(torch.zeros(n))
        # TIFU weights (wide: shared + per-label; deep: a per-client re-weighting of the own and neighbour
        # vectors), last and from zeros for the same reason.
        self.tifu_shared = nn.Parameter(torch.zeros(1))
        self.tifu_label = nn.Parameter(torch.zeros(n))
        self.tifu_gate_weight = nn.Parameter(torch.zeros(width, 2))
        self.tifu_gate_bias = nn.Parameter(torch.zeros(2))

    def presence(self, hist: torch.Tensor) -> torch.Tensor:
        """[B, S, N] 1 where session s of the history holds label n."""
        n = self.label_clac1.shape[0]
        presence = torch.zeros(hist.shape[0], hist.shape[1], n, dtype=torch.float32, device=hist.device)
        return presence.scatter_add_(2, hist.clamp(min=0), (hist >= 0).float()).clamp(max=1.0)

    @torch.jit.export
    def history_vector(self, hist: torch.Tensor) -> torch.Tensor:
        """[B, N] TIFU-style vector: sum over sessions holding n of neighbour_decay^(sessions ago), L2 = 1."""
        vector = torch.einsum("bsn,s->bn", self.presence(hist), self.pool_decay)
        return nn.functional.normalize(vector, dim=1)

    @torch.jit.export
    def tifu_vector(self, hist: torch.Tensor) -> torch.Tensor:
        """[B, N] TIFU-KNN's user vector (Hu et al., 2020; training/knn_baselines.tifu_vectors): the valid
        sessions cut into groups of `tifu_group_size` counted from the newest (the oldest one may be
        partial), a session weighing within^(place in its group) / (its group's size), a group
        across^(groups ago), averaged over the groups."""
        size = self.tifu_group_size
        valid = (hist >= 0).any(2)
        n = valid.sum(1, keepdim=True)  # [B, 1]; the valid sessions are the newest n (right-aligned)
        ago = self.sessions_ago.long().unsqueeze(0)  # [1, S]
        group, place = ago // size, ago % size
        n_groups = (n + size - 1) // size
        last = n_groups - 1
        group_len = torch.where(group == last, n - last * size, torch.full_like(group, size))
        weight = (
            self.tifu_within ** place.float()
            * self.tifu_across ** group.float()
            / group_len.clamp(min=1).float()
            / n_groups.clamp(min=1).float()
        )
        return torch.einsum("bsn,bs->bn", self.presence(hist), weight * valid.float())

    @torch.jit.export
    def pool_vector(self, hist: torch.Tensor) -> torch.Tensor:
        """[B, N] the vector neighbours are found by: `tifu_vector` if TIFU is on, else `history_vector`."""
        return self.tifu_vector(hist) if self.tifu_group_size > 0 else self.history_vector(hist)

    def set_pool(self, hist: torch.Tensor) -> None:
        """Store the neighbour pool: `pool_vector` of each training client's pre-validation history."""
        if len(hist):
            with torch.no_grad():
                self.pool = torch.cat([self.pool_vector(h.long()) for h in hist.split(256)])

    @torch.jit.export
    def neighbour_score(self, hist: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N] cosine-weighted mean of the pool vectors of the `n_neighbours` most similar pool rows,
        scaled to a row maximum of 1 (with TIFU on: `tifu_neighbour_mean`); pool row exclude[b] (-1:
        none) is never b's neighbour."""
        batch, m = hist.shape[0], self.pool.shape[0]
        k = min(self.n_neighbours, m)
        if k == 0:
            return torch.zeros(batch, self.bias.shape[0], device=hist.device)
        if self.tifu_group_size > 0:
            return self.tifu_neighbour_mean(self.tifu_vector(hist), exclude)
        sim = self.history_vector(hist) @ self.pool.t()
        if exclude is not None:
            sim = sim.masked_fill(self.own_row(exclude, m) > 0, -1.0)  # below any cosine of vectors >= 0
        top, rows = sim.topk(k, dim=1)
        # A dense [B, M] weight matrix makes the mean one matmul instead of a [B, k, N] gather.
        weights = torch.zeros(batch, m, device=hist.device).scatter_(1, rows, top.clamp(min=0.0))
        score = weights @ self.pool / weights.sum(1, keepdim=True).clamp(min=1e-12)
        return score / score.amax(1, keepdim=True).clamp(min=1e-12)

    def own_row(self, exclude: torch.Tensor, m: int) -> torch.Tensor:
        """[B, M] 1 at pool row exclude[b] (none where exclude[b] is -1)."""
        own = torch.zeros(exclude.shape[0], m, device=exclude.device)
        return own.scatter_(1, exclude.clamp(min=0).unsqueeze(1), (exclude >= 0).float().unsqueeze(1))

    def tifu_neighbour_mean(self, query: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
        """[B, N] TIFU-KNN's neighbour vector of `tifu_vector`s `query`: the unweighted mean of the pool
        vectors of the `n_neighbours` Euclidean-nearest pool rows (at most M - 1, as the baseline), own
        row excluded."""
        m = self.pool.shape[0]
        k = min(self.n_neighbours, m - 1)
        if k <= 0:
            return torch.zeros_like(query)
        dist = (query**2).sum(1, keepdim=True) + (self.pool**2).sum(1) - 2.0 * query @ self.pool.t()
        if exclude is not None:
            dist = dist.masked_fill(self.own_row(exclude, m) > 0, float("inf"))
        rows = dist.topk(k, dim=1, largest=False).indices
        average = torch.zeros(query.shape[0], m, device=query.device).scatter_(1, rows, 1.0 / k)
        return average @ self.pool

    @torch.jit.export
    def wide_inputs(
        self,
        hist: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The wide part's features from raw ids (exported so tests can check them against plain Python).

        count [B, N]: sessions holding label n. repeat [B, N, N_REPEAT]: log1p(count), count over the number
        of non-empty sessions, 1/(1 + sessions since n's newest session) (0 if never), n in the newest
        session (0/1), then per d in DECAYS the sum over sessions holding n of d^(sessions ago).
        clac1 [B, C]: multi-hot. demo_cross [B, C]: the id (gender*A + age)*C + c of each CLAC1 c's cross,
        active where clac1 is 1. pair [B, C*C]: CLAC1 pairs
        i < j at index i*C + j (crossed with age through the age-indexed weight in `wide`).
        neighbour [B, N] (only if n_neighbours > 0): `neighbour_score`. tifu [B, N] (only if TIFU is on):
        `tifu_vector`.
        """
        valid = hist >= 0
        presence = self.presence(hist)
        count = presence.sum(1)
        n_sessions = valid.any(2).sum(1).clamp(min=1).float()
        newest = (presence * (self.max_sessions - self.sessions_ago).view(1, -1, 1)).amax(1)
        recency = torch.where(newest > 0, 1.0 / (1.0 + self.max_sessions - newest), torch.zeros_like(newest))
        decayed = torch.einsum("bsn,sk->bnk", presence, self.decay)
        share = count / n_sessions.unsqueeze(1)
        basic = torch.stack([torch.log1p(count), share, recency, presence[:, -1, :]], dim=-1)
        repeat = torch.cat([basic, decayed], dim=-1)
        clac1 = (count @ self.label_clac1).clamp(max=1.0)
        n_clac1 = clac1.shape[1]
        demo_cross = ((gender * self.n_ages + age) * n_clac1).unsqueeze(1) + torch.arange(
            n_clac1, device=hist.device
        )
        pair = (clac1.unsqueeze(2) * clac1.unsqueeze(1) * self.pair_mask).flatten(1)
        f = {"count": count, "repeat": repeat, "clac1": clac1, "demo_cross": demo_cross, "pair": pair}
        if self.tifu_group_size > 0:
            f["tifu"] = self.tifu_vector(hist)
            if self.n_neighbours > 0:
                f["neighbour"] = self.tifu_neighbour_mean(f["tifu"], exclude)
        elif self.n_neighbours > 0:
            f["neighbour"] = self.neighbour_score(hist, exclude)
        return f

    def wide(self, f: dict[str, torch.Tensor], age: torch.Tensor) -> torch.Tensor:
        repeat, pair = f["repeat"], f["pair"]
        # Every age's pair embedding at once, then each row's age block: cheaper than gathering per row.
        pair_all = (pair @ self.pair_emb).view(pair.shape[0], self.n_ages, -1)
        pair_z = pair_all[torch.arange(pair.shape[0], device=pair.device), age]
        pair_z = pair_z / pair.sum(1, keepdim=True).clamp(min=1.0).sqrt()
        # A bag over the active CLAC1 crosses (a dense one-hot product would cost B x G*A*C x rank).
        demo = nn.functional.embedding_bag(
            f["demo_cross"], self.demo_cross_emb, per_sample_weights=f["clac1"], mode="sum"
        )
        logits = (
            self.bias
            + f["clac1"] @ self.clac1_weight
            + demo @ self.demo_cross_out
            + pair_z @ self.pair_out
            + (repeat * (self.repeat_shared + self.repeat_label)).sum(-1)
            + (repeat[:, :, 4] @ self.co_in) @ self.co_out
        )
        if self.n_neighbours > 0:
            logits = logits + f["neighbour"] * (self.neighbour_shared + self.neighbour_label)
        if self.tifu_group_size > 0:
            logits = logits + f["tifu"] * (self.tifu_shared + self.tifu_label)
        return logits

    def deep(
        self, f: dict[str, torch.Tensor], gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> torch.Tensor:
        """MLP over the demographics, doc_vec and the mean label embedding -> a logit per label, plus a
        per-client re-weighting of the repeat features (the deep part decides which repeats are due)."""
        inputs = [self.gender_emb(gender), self.age_emb(age), doc_vec]
        if self.use_label_emb:
            count = f["count"]
            inputs.append(count @ self.label_emb / count.sum(1, keepdim=True).clamp(min=1.0))
        h = self.mlp(torch.cat(inputs, dim=1))
        logits = self.out(h) + (f["repeat"] * self.repeat_gate(h).unsqueeze(1)).sum(-1)
        if self.tifu_group_size > 0:
            gate = h @ self.tifu_gate_weight + self.tifu_gate_bias  # [B, 2]: own, neighbours
            logits = logits + f["tifu"] * gate[:, :1]
            if self.n_neighbours > 0:
                logits = logits + f["neighbour"] * gate[:, 1:]
        return logits

    @torch.jit.export
    def parts(
        self,
        hist: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(wide, deep) logits [B, N] each; a dropped part (see `mode`) is all zeros. `exclude` [B]: the
        neighbour pool row of each example's own client, or -1 (serving passes nothing)."""
        batch, n = hist.shape[0], self.bias.shape[0]
        zeros = torch.zeros(batch, n, dtype=torch.float32, device=hist.device)
        f = self.wide_inputs(hist, gender, age, exclude)
        wide = self.wide(f, age) if self.use_wide else zeros
        deep = self.deep(f, gender, age, doc_vec) if self.use_deep else zeros
        return wide, deep

    def forward(
        self,
        hist: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        wide, deep = self.parts(hist, gender, age, doc_vec, exclude)
        return wide + deep
