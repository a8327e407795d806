"""WideAndDeep: one logit per CLAC3 label for a client's next session (Cheng et al., 2016), from parts.

    HistoryStats  raw ids -> named per-label and per-client features (the seed's wide features + repeats)
    BaselineStart optional: a baseline's ranking computed in the graph (training/start.py)
    Wide          a linear model over those features: memorisation, and the part an explanation itemises
    Deep          an MLP over demographics, Doc2Vec and the history's label embeddings: generalisation

Every feature is computed here from what `FeatureBuilder` produces, so the exported TorchScript graph
takes raw ids and serving cannot drift from training.
"""

from collections.abc import Sequence
from typing import Final, NamedTuple

import torch
from torch import nn

from training.config import ModelConfig
from training.features import FeatureSchema
from training.start import BaselineStart, StartFeatures
from training.start import presence as label_presence

# Per-session decays of the decayed counts: 0.5 looks at the last session or two (what is due now),
# 0.8 at the whole kept history. The first one also feeds the co-purchase map.
DECAYS = (0.5, 0.8)
REPEAT_FEATURES = ("log1p_count", "share", "recency", "in_newest", *(f"decayed_{d}" for d in DECAYS))


class HistoryFeatures(NamedTuple):
    """What the model derives from a batch's raw ids (see `HistoryStats.forward` for the formulas)."""

    presence: torch.Tensor  # [B, S, N] 1 where session s holds label n
    counts: torch.Tensor  # [B, N] sessions holding n
    repeat: torch.Tensor  # [B, N, len(REPEAT_FEATURES)]
    recent: torch.Tensor  # [B, N] the 0.5-decayed count: what the co-purchase map reads
    clac1: torch.Tensor  # [B, C] multi-hot of the history's CLAC1
    demo_cross: torch.Tensor  # [B, C] id of each CLAC1 x gender x age cross (active where clac1 is 1)
    pair: torch.Tensor  # [B, C*C] unordered CLAC1 pairs i < j at i*C + j
    start: StartFeatures  # the baseline start's own and neighbour features (empty without a start)


class WideTerms(NamedTuple):
    """The wide part's logit [B, N] as a sum of named terms: the families an explanation reports."""

    bias: torch.Tensor
    clac1: torch.Tensor
    demo_cross: torch.Tensor  # CLAC1 x gender x age
    pair_cross: torch.Tensor  # CLAC1 pair x age
    repeat: torch.Tensor
    copurchase: torch.Tensor
    start_own: torch.Tensor
    start_neighbours: torch.Tensor


class HistoryStats(nn.Module):
    """Raw ids -> `HistoryFeatures` (no weights: the same features feed the wide and the deep part)."""

    n_ages: Final[int]
    max_sessions: Final[int]
    label_clac1: torch.Tensor  # [N, C] one-hot CLAC1 of each label
    pair_mask: torch.Tensor  # [C, C] strict upper triangle
    decay: torch.Tensor  # [S, len(DECAYS)] d ** sessions ago

    def __init__(self, schema: FeatureSchema, label_clac1: Sequence[int]) -> None:
        super().__init__()
        c, s = schema.n_clac1, schema.max_sessions
        self.n_ages, self.max_sessions = schema.n_ages, s
        self.register_buffer("label_clac1", nn.functional.one_hot(torch.tensor(list(label_clac1)), c).float())
        self.register_buffer("pair_mask", torch.ones(c, c).triu(diagonal=1))
        ago = torch.arange(s - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("decay", torch.tensor(DECAYS).view(1, -1) ** ago.view(-1, 1))

    def forward(self, hist: torch.Tensor, gender: torch.Tensor, age: torch.Tensor) -> HistoryFeatures:
        """repeat per label: log1p(count), count over the non-empty sessions, 1/(1 + sessions since its
        newest session) (0 if never), in the newest session (0/1), then per d in DECAYS the sum over
        sessions holding it of d^(sessions ago)."""
        presence = label_presence(hist, self.label_clac1.shape[0])
        count = presence.sum(1)
        n_sessions = (hist >= 0).any(2).sum(1).clamp(min=1).float()
        place = torch.arange(1, self.max_sessions + 1, dtype=torch.float32, device=hist.device)
        newest = (presence * place.view(1, -1, 1)).amax(1)  # 1-based slot of the newest session holding n
        recency = torch.where(newest > 0, 1.0 / (1.0 + self.max_sessions - newest), torch.zeros_like(newest))
        decayed = torch.einsum("bsn,sk->bnk", presence, self.decay)
        share = count / n_sessions.unsqueeze(1)
        basic = torch.stack([torch.log1p(count), share, recency, presence[:, -1, :]], dim=-1)
        clac1 = (count @ self.label_clac1).clamp(max=1.0)
        n_clac1 = clac1.shape[1]
        cross_base = (gender * self.n_ages + age) * n_clac1
        demo_cross = cross_base.unsqueeze(1) + torch.arange(n_clac1, device=hist.device)
        pair = (clac1.unsqueeze(2) * clac1.unsqueeze(1) * self.pair_mask).flatten(1)
        empty = torch.zeros(hist.shape[0], 0, device=hist.device)
        return HistoryFeatures(
            presence=presence,
            counts=count,
            repeat=torch.cat([basic, decayed], dim=-1),
            recent=decayed[:, :, 0],
            clac1=clac1,
            demo_cross=demo_cross,
            pair=pair,
            start=StartFeatures(empty, empty),
        )


class Wide(nn.Module):
    """A linear model over `HistoryFeatures`: per-label bias, CLAC1 multi-hot, the seed's crosses
    (CLAC1 x gender x age, CLAC1 pair x age, low-rank), the repeat features (a shared weight vector plus a
    per-label offset), a low-rank label -> label co-purchase map; and the start's weights."""

    n_ages: Final[int]

    def __init__(self, schema: FeatureSchema, config: ModelConfig, start: BaselineStart | None) -> None:
        super().__init__()
        n, c, a, rank = schema.n_labels, schema.n_clac1, schema.n_ages, config.cross_rank
        self.n_ages = a
        # Zero-initialised like any linear model; low-rank factors start with one random side.
        self.bias = nn.Parameter(torch.zeros(n))
        self.clac1_weight = nn.Parameter(torch.zeros(c, n))
        self.demo_cross_emb = nn.Parameter(torch.randn(schema.n_genders * a * c, rank) * 0.01)
        self.demo_cross_out = nn.Parameter(torch.zeros(rank, n))
        self.pair_emb = nn.Parameter(torch.randn(c * c, a * rank) * 0.01)  # [pair, age x rank]
        self.pair_out = nn.Parameter(torch.zeros(rank, n))
        self.repeat_shared = nn.Parameter(torch.zeros(len(REPEAT_FEATURES)))
        self.repeat_label = nn.Parameter(torch.zeros(n, len(REPEAT_FEATURES)))
        self.co_in = nn.Parameter(torch.randn(n, config.copurchase_rank) * 0.01)
        self.co_out = nn.Parameter(torch.zeros(config.copurchase_rank, n))
        self.start = start

    def forward(self, f: HistoryFeatures, age: torch.Tensor) -> WideTerms:
        batch = f.pair.shape[0]
        # Every age's pair embedding at once, then each row's age block: cheaper than gathering per row.
        pair_all = (f.pair @ self.pair_emb).view(batch, self.n_ages, -1)
        pair_z = pair_all[torch.arange(batch, device=f.pair.device), age]
        pair_z = pair_z / f.pair.sum(1, keepdim=True).clamp(min=1.0).sqrt()
        # A bag over the active CLAC1 crosses (a dense one-hot product would cost B x G*A*C x rank).
        demo = nn.functional.embedding_bag(
            f.demo_cross, self.demo_cross_emb, per_sample_weights=f.clac1, mode="sum"
        )
        zeros = torch.zeros_like(f.counts)
        own, near = (zeros, zeros) if self.start is None else self.start.terms(f.start)
        return WideTerms(
            bias=self.bias.expand_as(f.counts),
            clac1=f.clac1 @ self.clac1_weight,
            demo_cross=demo @ self.demo_cross_out,
            pair_cross=pair_z @ self.pair_out,
            repeat=(f.repeat * (self.repeat_shared + self.repeat_label)).sum(-1),
            copurchase=(f.recent @ self.co_in) @ self.co_out,
            start_own=own,
            start_neighbours=near,
        )


class Deep(nn.Module):
    """MLP (He init, ReLU, dropout) over the gender and age embeddings, the Doc2Vec vector and the mean
    label embedding of the history -> a logit per label, plus a per-client gate on the repeat features and
    the start's features (the deep part decides which repeats are due for this client)."""

    use_label_emb: Final[bool]
    has_start: Final[bool]

    def __init__(self, schema: FeatureSchema, config: ModelConfig, *, has_start: bool) -> None:
        super().__init__()
        n = schema.n_labels
        self.use_label_emb, self.has_start = config.label_emb_dim > 0, has_start
        self.gender_emb = nn.Embedding(schema.n_genders, config.demo_dim)
        self.age_emb = nn.Embedding(schema.n_ages, config.demo_dim)
        self.label_emb = nn.Parameter(torch.randn(n, max(config.label_emb_dim, 1)) * 0.1)
        width = 2 * config.demo_dim + schema.doc_dim + config.label_emb_dim
        layers: list[nn.Module] = []
        for size in config.hidden:
            linear = nn.Linear(width, size)
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")  # He init, as the seed
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.ReLU(), nn.Dropout(config.dropout)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.out = nn.Linear(width, n)
        self.repeat_gate = nn.Linear(width, len(REPEAT_FEATURES))
        self.start_gate = nn.Linear(width, 2)  # own, neighbours

    def forward(
        self, f: HistoryFeatures, gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> torch.Tensor:
        inputs = [self.gender_emb(gender), self.age_emb(age), doc_vec]
        if self.use_label_emb:
            inputs.append(f.counts @ self.label_emb / f.counts.sum(1, keepdim=True).clamp(min=1.0))
        h = self.mlp(torch.cat(inputs, dim=1))
        logits = self.out(h) + (f.repeat * self.repeat_gate(h).unsqueeze(1)).sum(-1)
        if self.has_start:
            gate = self.start_gate(h)
            logits = logits + f.start.own * gate[:, :1] + f.start.neighbours * gate[:, 1:]
        return logits

    def zero_output(self) -> None:
        """Make the deep part's logits exactly 0 (what a start needs); the MLP keeps its random init."""
        with torch.no_grad():
            for layer in (self.out, self.repeat_gate, self.start_gate):
                layer.weight.zero_()
                layer.bias.zero_()


class WideAndDeep(nn.Module):
    """logits [B, N] = wide + deep, from (hist, gender, age, doc_vec); `mode` drops a part."""

    use_wide: Final[bool]
    use_deep: Final[bool]

    def __init__(
        self,
        schema: FeatureSchema,
        label_clac1: Sequence[int],
        config: ModelConfig,
        start: BaselineStart | None = None,
    ) -> None:
        super().__init__()
        self.use_wide, self.use_deep = (
            config.mode in ("wide_deep", "wide"),
            config.mode in ("wide_deep", "deep"),
        )
        self.stats = HistoryStats(schema, label_clac1)
        self.wide = Wide(schema, config, start)
        self.deep = Deep(schema, config, has_start=start is not None)

    @torch.jit.export
    def features(
        self, hist: torch.Tensor, gender: torch.Tensor, age: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> HistoryFeatures:
        """`HistoryFeatures` of a batch; `exclude` [B] is each example's own neighbour-pool row (training
        passes it so no client is its own neighbour; serving never does)."""
        f = self.stats(hist, gender, age)
        start = self.wide.start
        if start is None:
            return f
        own_and_neighbours = start(f.presence, exclude)  # TorchScript has no NamedTuple._replace
        return HistoryFeatures(
            f.presence, f.counts, f.repeat, f.recent, f.clac1, f.demo_cross, f.pair, own_and_neighbours
        )

    @torch.jit.export
    def contributions(
        self, f: HistoryFeatures, gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> tuple[WideTerms, torch.Tensor]:
        """(the wide part's terms, the deep logit), each [B, N]; they sum to the logits exactly. A part
        dropped by `mode` is all zeros."""
        zeros = torch.zeros_like(f.counts)
        wide = (
            self.wide(f, age)
            if self.use_wide
            else WideTerms(zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros)
        )
        deep = self.deep(f, gender, age, doc_vec) if self.use_deep else zeros
        return wide, deep

    @torch.jit.export
    def logits(
        self, f: HistoryFeatures, gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> torch.Tensor:
        wide, deep = self.contributions(f, gender, age, doc_vec)
        total = deep
        for term in wide:
            total = total + term
        return total

    @torch.jit.export
    def explain(
        self, hist: torch.Tensor, gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> tuple[WideTerms, torch.Tensor]:
        """`contributions` of the raw inputs (the serving path: no excluded neighbour row), in `forward`'s
        argument order, so `model.explain(*inputs)` itemises exactly what `model(*inputs)` sums."""
        return self.contributions(self.features(hist, gender, age, None), gender, age, doc_vec)

    def forward(
        self, hist: torch.Tensor, gender: torch.Tensor, age: torch.Tensor, doc_vec: torch.Tensor
    ) -> torch.Tensor:
        return self.logits(self.features(hist, gender, age, None), gender, age, doc_vec)

    @torch.jit.export
    def copurchase_sources(
        self,
        labels: torch.Tensor,
        hist: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
    ) -> torch.Tensor:
        """[B, K, N]: what each history label h adds to the co-purchase term of label labels[b, k] [B, K],
        recent[b, h] x (co_in[h] . co_out[:, labels[b, k]]); summed over h, `explain`'s `copurchase` at
        those labels. Takes `forward`'s inputs after `labels`: `model.copurchase_sources(labels, *inputs)`."""
        recent = self.stats(hist, gender, age).recent
        if not self.use_wide:
            return torch.zeros(labels.shape[0], labels.shape[1], recent.shape[1], device=recent.device)
        weight = torch.einsum("hr,rbk->bkh", self.wide.co_in, self.wide.co_out[:, labels])
        return recent.unsqueeze(1) * weight
