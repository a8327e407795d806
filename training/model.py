"""WideAndDeep: one logit per CLAC3 label for a client's next session (Cheng et al., 2016), from parts.

    HistoryStats  raw ids and session dates -> named per-label and per-client features (the seed's wide
                  features, repeats, and calendar features: days since the last purchase, the purchase
                  cycle, due-ness)
    BaselineStart optional: a baseline's ranking computed in the graph (training/start.py)
    Wide          a linear model over those features: memorisation, and the part an explanation itemises
    Deep          an MLP that scores every (client, label) candidate from that pair's repeat, calendar and
                  start features, the label's embedding and the client's context (demographics, Doc2Vec,
                  the history's label embeddings): generalisation, as Cheng et al. score each impression

Every feature is computed here from what `FeatureBuilder` produces, so the exported TorchScript graph
takes raw ids and serving cannot drift from training.
"""

from collections.abc import Sequence
from typing import Final, NamedTuple

import torch
from torch import nn

from training.config import ModelConfig
from training.features import FeatureSchema
from training.start import BaselineStart, Entries, StartFeatures, history_entries

# Per-session decays of the decayed counts: 0.5 looks at the last session or two (what is due now),
# 0.8 at the whole kept history. The first one also feeds the co-purchase map.
DECAYS = (0.5, 0.8)
REPEAT_FEATURES = ("log1p_count", "share", "recency", "in_newest", *(f"decayed_{d}" for d in DECAYS))
# Per-label calendar features (all 0 in a row without dates): log1p(days since the last purchase), the
# log of due-ness (those days over the expected gap: the client's own mean gap between purchases of the
# label, shrunk towards the label's population gap `PRIOR_PURCHASES` purchases strong), how close to due
# (exp(-log(due)^2 / 2)), log1p(expected gap), and day-decayed purchase counts (sum of e^(-days / tau)).
DAY_TAUS = (14.0, 60.0)
CALENDAR_FEATURES = ("log1p_days_since", "log_due", "due_bump", "log1p_expected_gap",
                     *(f"day_decayed_{t:.0f}" for t in DAY_TAUS))  # fmt: skip
PRIOR_PURCHASES = 1.0
DUE_CLIP = 3.0  # |log due| beyond e^3 = 20x early or late says nothing more
MAX_DAYS = 365.0  # older purchases count as a year ago: a request far past the data sees what it learnt
NEVER = 1.0e4  # "days since" of a label never bought (masked out of every feature)


class HistoryFeatures(NamedTuple):
    """What the model derives from a batch's raw ids (see `HistoryStats.forward` for the formulas)."""

    counts: torch.Tensor  # [B, N] sessions holding n
    repeat: torch.Tensor  # [B, N, len(REPEAT_FEATURES)]
    calendar: torch.Tensor  # [B, N, len(CALENDAR_FEATURES)] (0 where the row has no dates)
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
    calendar: torch.Tensor  # days since, due-ness, day-decayed counts
    copurchase: torch.Tensor
    start_own: torch.Tensor
    start_neighbours: torch.Tensor
    explore: torch.Tensor  # labels new to the client: EASE's label-label map (training/explore.py)


class _Labels(NamedTuple):
    """A batch's distinct (row, label) slots, each row's labels in its history."""

    slots: torch.Tensor  # [U] int64, row * N + label, ascending
    of_entry: torch.Tensor  # [E] int64, each entry's slot in `slots`
    sessions: torch.Tensor  # [U] float, how many of the row's sessions hold the label


class HistoryStats(nn.Module):
    """Raw ids -> `HistoryFeatures` (no weights: the same features feed the wide and the deep part), every
    per-label figure reduced over the history's `Entries`."""

    n_ages: Final[int]
    max_sessions: Final[int]
    recent_column: Final[int]  # the repeat feature that feeds the co-purchase map
    label_clac1: torch.Tensor  # [N, C] one-hot CLAC1 of each label
    pair_mask: torch.Tensor  # [C, C] strict upper triangle
    never: Final[float]
    prior_purchases: Final[float]
    due_clip: Final[float]
    max_days: Final[float]
    decay: torch.Tensor  # [S, len(DECAYS)] d ** sessions ago
    label_gap: torch.Tensor  # [N] the label's population gap between purchases, in days
    day_taus: torch.Tensor  # [len(DAY_TAUS)]

    def __init__(
        self, schema: FeatureSchema, label_clac1: Sequence[int], label_gap: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        c, s = schema.n_clac1, schema.max_sessions
        self.n_ages, self.max_sessions = schema.n_ages, s
        self.never, self.prior_purchases, self.due_clip = NEVER, PRIOR_PURCHASES, DUE_CLIP
        self.max_days = MAX_DAYS
        self.recent_column = REPEAT_FEATURES.index(f"decayed_{DECAYS[0]}")
        gaps = torch.full((schema.n_labels,), 30.0) if label_gap is None else torch.tensor(list(label_gap))
        self.register_buffer("label_gap", gaps.float().clamp(min=1.0))
        self.register_buffer("day_taus", torch.tensor(DAY_TAUS))
        self.register_buffer("label_clac1", nn.functional.one_hot(torch.tensor(list(label_clac1)), c).float())
        self.register_buffer("pair_mask", torch.ones(c, c).triu(diagonal=1))
        ago = torch.arange(s - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("decay", torch.tensor(DECAYS).view(1, -1) ** ago.view(-1, 1))

    def entries(self, hist: torch.Tensor) -> Entries:
        """The `Entries` of `hist` [B, S, L] (label ids, PAD -1), over this graph's labels."""
        return history_entries(hist, self.label_clac1.shape[0])

    def spread(self, values: torch.Tensor, slots: torch.Tensor, batch: int) -> torch.Tensor:
        """[batch, N, ...]: `values` [U, ...] at the (row, label) `slots`, zeros elsewhere."""
        n, rest = self.label_clac1.shape[0], list(values.shape[1:])
        # List concatenation, not `[..., *rest]`: TorchScript has no starred expressions in lists.
        spread = torch.zeros([batch * n] + rest, device=values.device)  # noqa: RUF005
        return spread.index_copy_(0, slots, values).view([batch, n] + rest)  # noqa: RUF005

    def calendar(self, labels: _Labels, entries: Entries, ago: torch.Tensor) -> torch.Tensor:
        """`CALENDAR_FEATURES` [U, K] of the history's (row, label) slots from the days `ago` [B, S] of each
        session (see the constants): the minima and maxima exactly, each day-decayed sum adding its terms in
        session order; 0 in a row without dates."""
        n = self.label_gap.shape[0]
        dated = (ago[:, -1] >= 0)[labels.slots // n]  # FeatureBuilder dates all of a row's sessions, or none
        days = ago.clamp(min=0.0, max=self.max_days)[entries.row, entries.session]
        size = labels.slots.shape[0]
        last = torch.full([size], self.never, device=ago.device).scatter_reduce(
            0, labels.of_entry, days, "amin"
        )
        first = torch.zeros(size, device=ago.device).scatter_reduce(0, labels.of_entry, days, "amax")
        weights = torch.exp(-days.unsqueeze(1) / self.day_taus)
        decayed = torch.zeros(size, weights.shape[1], device=ago.device).index_add_(
            0, labels.of_entry, weights
        )
        repeats = (labels.sessions - 1).clamp(min=0)
        own_gap = (first - last) / repeats.clamp(min=1.0)
        gap = self.label_gap[labels.slots % n]
        expected = (repeats * own_gap + self.prior_purchases * gap) / (repeats + self.prior_purchases)
        expected = expected.clamp(min=1.0)
        log_due = torch.log((last + 1.0) / expected).clamp(-self.due_clip, self.due_clip)
        features = torch.cat(
            [
                torch.stack(
                    [torch.log1p(last), log_due, torch.exp(-0.5 * log_due * log_due), torch.log1p(expected)],
                    dim=-1,
                ),
                decayed,
            ],
            dim=-1,
        )
        return torch.where(dated.unsqueeze(1), features, torch.zeros_like(features))

    def forward(
        self, entries: Entries, ago: torch.Tensor, gender: torch.Tensor, age: torch.Tensor
    ) -> HistoryFeatures:
        """repeat per label: log1p(count), count over the non-empty sessions, 1/(1 + sessions since its
        newest session), in the newest session (0/1), then per d in DECAYS the sum over sessions holding it
        of d^(sessions ago), added in session order. Every repeat and calendar feature is computed for the
        history's (row, label) slots only (a client holds a few dozen of the N labels) and is 0 elsewhere
        in the [B, N] tensors they are scattered into."""
        n, batch = self.label_clac1.shape[0], entries.n_rows
        slots, of_entry = torch.unique(entries.slot, sorted=True, return_inverse=True)
        size = slots.shape[0]
        ones = torch.ones(entries.slot.shape[0], device=ago.device)
        labels = _Labels(slots, of_entry, torch.zeros(size, device=ago.device).index_add_(0, of_entry, ones))
        count = self.spread(labels.sessions, slots, batch)
        place = (entries.session + 1).float()  # 1-based slot of the session
        newest = torch.zeros(size, device=ago.device).scatter_reduce(0, of_entry, place, "amax")
        recency = 1.0 / (1.0 + self.max_sessions - newest)
        decayed = torch.zeros(size, self.decay.shape[1], device=ago.device)
        decayed = decayed.index_add_(0, of_entry, self.decay[entries.session])
        share = labels.sessions / entries.n_sessions[slots // n].clamp(min=1).float()
        in_newest = (newest == self.max_sessions).float()
        basic = torch.stack([torch.log1p(labels.sessions), share, recency, in_newest], dim=-1)
        repeat = torch.cat([basic, decayed], dim=-1)
        calendar = self.calendar(labels, entries, ago)
        clac1 = (count @ self.label_clac1).clamp(max=1.0)
        n_clac1 = clac1.shape[1]
        cross_base = (gender * self.n_ages + age) * n_clac1
        demo_cross = cross_base.unsqueeze(1) + torch.arange(n_clac1, device=ago.device)
        pair = (clac1.unsqueeze(2) * clac1.unsqueeze(1) * self.pair_mask).flatten(1)
        empty = torch.zeros(batch, 0, device=ago.device)
        repeat = self.spread(repeat, slots, batch)
        return HistoryFeatures(
            counts=count,
            repeat=repeat,
            calendar=self.spread(calendar, slots, batch),
            recent=repeat[:, :, self.recent_column],
            clac1=clac1,
            demo_cross=demo_cross,
            pair=pair,
            start=StartFeatures(empty, empty),
        )


class Wide(nn.Module):
    """A linear model over `HistoryFeatures`: per-label bias, CLAC1 multi-hot, the seed's crosses
    (CLAC1 x gender x age, CLAC1 pair x age, low-rank), the repeat features (a shared weight vector plus a
    per-label offset), a low-rank label -> label co-purchase map; the start's weights; and the "new to you"
    term: for each label the history lacks, EASE's score of it from the labels the history holds (a fixed
    map, each row scaled to at most 1 in size), times a weight chosen on validation after training
    (training/explore.py; 0 leaves every logit as trained)."""

    n_ages: Final[int]
    explore_map: torch.Tensor  # [N, N] EASE's label-label weights, zero diagonal; [0, 0] without one
    explore_weight: torch.Tensor  # [1]

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
        self.calendar_shared = nn.Parameter(torch.zeros(len(CALENDAR_FEATURES)))
        self.calendar_label = nn.Parameter(torch.zeros(n, len(CALENDAR_FEATURES)))
        self.co_in = nn.Parameter(torch.randn(n, config.copurchase_rank) * 0.01)
        self.co_out = nn.Parameter(torch.zeros(config.copurchase_rank, n))
        self.start = start
        self.register_buffer("explore_map", torch.zeros(0, 0))
        self.register_buffer("explore_weight", torch.zeros(1))

    def set_explore_map(self, weights: torch.Tensor) -> None:
        """Store EASE's label-label map [N, N] (the "new to you" term's weight stays as it is)."""
        self.explore_map = weights.float().contiguous()

    def explore(self, counts: torch.Tensor) -> torch.Tensor:
        """[B, N] the "new to you" term: where `counts` [B, N] is 0, the weight x EASE's score of the label
        from the labels the row holds, over the row's largest score in size; 0 elsewhere. A bag over the
        held labels' rows of the map: its cost follows the history, not N x N."""
        if self.explore_map.shape[0] == 0 or bool(self.explore_weight == 0.0):  # training: weight 0
            return torch.zeros_like(counts)
        held = counts > 0
        labels = held.nonzero()[:, 1]
        sizes = held.sum(1)
        raw = nn.functional.embedding_bag(
            labels, self.explore_map, torch.cumsum(sizes, 0) - sizes, mode="sum"
        )
        scaled = raw / raw.abs().amax(1, keepdim=True).clamp(min=1e-12)
        return (self.explore_weight * scaled).masked_fill(held, 0.0)

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
            calendar=(f.calendar * (self.calendar_shared + self.calendar_label)).sum(-1),
            copurchase=(f.recent @ self.co_in) @ self.co_out,
            start_own=own,
            start_neighbours=near,
            explore=self.explore(f.counts),
        )


def _rows(values: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """[len(flat), F]: the rows of `values` [B, N, F] at flat (row, label) slots."""
    return values.reshape(-1, values.shape[2]).index_select(0, flat)


class Deep(nn.Module):
    """Two towers, as Cheng et al.'s deep part scores each (user, app) impression:

    - the client tower: an MLP input layer over the gender and age embeddings, the Doc2Vec vector and the
      history's mean label embedding, with one output per label (the seed's network, for every label);
    - the candidate scorer: for the `candidates` labels the model ranks highest so far (the wide part plus
      the client tower, and the history's labels), an MLP (He init, ReLU, dropout) over that (client,
      label) pair's repeat, calendar and start features and the label's embedding, added to the client
      tower's hidden state. The label embedding is shared by the candidate and the client's taste, so
      labels bought together sit together: what ranks a label the client never bought.

    The deep logit of a label is its client-tower output plus, for a candidate, the scorer's output."""

    has_start: Final[bool]
    candidates: Final[int]

    def __init__(self, schema: FeatureSchema, config: ModelConfig, *, has_start: bool) -> None:
        super().__init__()
        self.has_start, self.candidates = has_start, min(config.deep_candidates, schema.n_labels)
        width, emb = config.hidden[0], config.label_emb_dim
        n_pair = len(REPEAT_FEATURES) + len(CALENDAR_FEATURES) + 2
        self.gender_emb = nn.Embedding(schema.n_genders, config.demo_dim)
        self.age_emb = nn.Embedding(schema.n_ages, config.demo_dim)
        self.label_emb = nn.Parameter(torch.randn(schema.n_labels, emb) * 0.1)
        self.context = nn.Linear(2 * config.demo_dim + schema.doc_dim + emb, width)
        self.client_out = nn.Linear(width, schema.n_labels)
        self.pair = nn.Linear(n_pair + emb, width)
        layers: list[nn.Module] = []
        for size in config.hidden[1:]:
            layers += [nn.ReLU(inplace=True), nn.Dropout(config.dropout), nn.Linear(width, size)]
            width = size
        # In place: each ReLU follows a fresh Linear output ([B, K, width]: no second copy of it).
        self.mlp = nn.Sequential(*layers, nn.ReLU(inplace=True), nn.Dropout(config.dropout))
        self.out = nn.Linear(width, 1)
        for layer in (self.context, self.pair, *[m for m in layers if isinstance(m, nn.Linear)]):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")  # He init, as the seed
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        f: HistoryFeatures,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
        wide: torch.Tensor,
    ) -> torch.Tensor:
        """The deep logits [B, N]; `wide` [B, N] is the wide part's (zeros without one): with the client
        tower's, what chooses the candidates."""
        taste = f.counts @ self.label_emb / f.counts.sum(1, keepdim=True).clamp(min=1.0)
        context = self.context(torch.cat([self.gender_emb(gender), self.age_emb(age), doc_vec, taste], dim=1))
        client = self.client_out(torch.relu(context))
        chosen = (wide + client).detach() + torch.log1p(f.counts)
        # [B, K]: a set, in no particular order (sorting it cost as much as choosing it)
        idx = chosen.topk(self.candidates, dim=1, sorted=False).indices
        batch, n = idx.shape[0], f.counts.shape[1]
        # Each family's rows taken at the candidates' flat (row, label) slots before they are joined:
        # [B x K, .], not [B, N, .] (row lookups cost half of gathers along dim 1).
        flat = (idx + torch.arange(batch, device=idx.device).unsqueeze(1) * n).view(-1)
        parts = [_rows(f.repeat, flat), _rows(f.calendar, flat)]
        if self.has_start:
            parts += [_rows(f.start.own.unsqueeze(2), flat), _rows(f.start.neighbours.unsqueeze(2), flat)]
        else:
            parts.append(torch.zeros(flat.shape[0], 2, device=idx.device))
        parts.append(nn.functional.embedding(idx.view(-1), self.label_emb))
        # The first layer as a matmul plus (its bias + the client's context) per row, added in place: faster
        # than nn.Linear's addmm, which first copies the broadcast bias into its [B x K, width] output.
        first = torch.matmul(torch.cat(parts, dim=-1), self.pair.weight.t()).view(batch, idx.shape[1], -1)
        hidden = first.add_((context + self.pair.bias).unsqueeze(1))  # the mlp's ReLU comes first
        scored = self.out(self.mlp(hidden)).squeeze(-1)
        return client.scatter_add(1, idx, scored)

    def zero_output(self) -> None:
        """Make the deep part's logits exactly 0 (what a start needs); the MLPs keep their random init."""
        with torch.no_grad():
            for layer in (self.out, self.client_out):
                layer.weight.zero_()
                layer.bias.zero_()


class WideAndDeep(nn.Module):
    """logits [B, N] = wide + deep, from (hist, ago, gender, age, doc_vec); `mode` drops a part."""

    use_wide: Final[bool]
    use_deep: Final[bool]

    def __init__(
        self,
        schema: FeatureSchema,
        label_clac1: Sequence[int],
        config: ModelConfig,
        start: BaselineStart | None = None,
        label_gap: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.use_wide, self.use_deep = (
            config.mode in ("wide_deep", "wide"),
            config.mode in ("wide_deep", "deep"),
        )
        self.stats = HistoryStats(schema, label_clac1, label_gap)
        self.wide = Wide(schema, config, start)
        self.deep = Deep(schema, config, has_start=start is not None)

    @torch.jit.export
    def features(
        self,
        hist: torch.Tensor,
        ago: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> HistoryFeatures:
        """`HistoryFeatures` of a batch; `exclude` [B] is each example's own neighbour-pool row (training
        passes it so no client is its own neighbour; serving never does)."""
        entries = self.stats.entries(hist)
        f = self.stats(entries, ago, gender, age)
        start = self.wide.start
        if start is None:
            return f
        own_and_neighbours = start(entries, exclude)  # TorchScript has no NamedTuple._replace
        return HistoryFeatures(
            f.counts, f.repeat, f.calendar, f.recent, f.clac1, f.demo_cross, f.pair, own_and_neighbours
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
            else WideTerms(zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros, zeros)
        )
        wide_logits = zeros
        for term in wide:
            wide_logits = wide_logits + term
        # The deep part chooses its candidates as it was trained to, before the "new to you" term, whose
        # weight is set after training (0 leaves this exact).
        as_trained = wide_logits - wide.explore
        deep = self.deep(f, gender, age, doc_vec, as_trained) if self.use_deep else zeros
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
        self,
        hist: torch.Tensor,
        ago: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
    ) -> tuple[WideTerms, torch.Tensor]:
        """`contributions` of the raw inputs (the serving path: no excluded neighbour row), in `forward`'s
        argument order, so `model.explain(*inputs)` itemises exactly what `model(*inputs)` sums."""
        return self.contributions(self.features(hist, ago, gender, age, None), gender, age, doc_vec)

    def forward(
        self,
        hist: torch.Tensor,
        ago: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
    ) -> torch.Tensor:
        return self.logits(self.features(hist, ago, gender, age, None), gender, age, doc_vec)

    @torch.jit.export
    def copurchase_sources(
        self,
        labels: torch.Tensor,
        hist: torch.Tensor,
        ago: torch.Tensor,
        gender: torch.Tensor,
        age: torch.Tensor,
        doc_vec: torch.Tensor,
    ) -> torch.Tensor:
        """[B, K, N]: what each history label h adds to the co-purchase term of label labels[b, k] [B, K],
        recent[b, h] x (co_in[h] . co_out[:, labels[b, k]]); summed over h, `explain`'s `copurchase` at
        those labels. Takes `forward`'s inputs after `labels`: `model.copurchase_sources(labels, *inputs)`."""
        recent = self.stats(self.stats.entries(hist), ago, gender, age).recent
        if not self.use_wide:
            return torch.zeros(labels.shape[0], labels.shape[1], recent.shape[1], device=recent.device)
        weight = torch.einsum("hr,rbk->bkh", self.wide.co_in, self.wide.co_out[:, labels])
        return recent.unsqueeze(1) * weight
