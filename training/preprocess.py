"""The seed's preprocessing rules, the funnel, and the next-session split -> `training.dataset.ProcessedData`.

Rules, in the seed's order, each with its threshold in `PreprocessConfig` and each switchable off:
1. drop Product rows with HITS_SEQ == 1 (the seed judged them outliers);
2. merge into one row per session (CLNT_ID, SESS_ID): its CLAC3 labels, SESS_SEQ, gender and age;
3. drop clients without gender, or without age;
4. keep sessions with >= `min_session_items` items;
5. keep clients with >= `min_client_sessions` sessions, and only their `max_client_sessions` most recent
   (highest SESS_SEQ, ties by SESS_ID); None keeps all history.

"Items" are distinct CLAC3 labels everywhere: a session buying two products of the same sub-category holds
one item, because the model predicts labels, not products. A label is a CLAC3 name; when Master lists the same
CLAC3 name under several CLAC1 parents, the label's parent is the CLAC1 with the most Master products under
that name (ties: the first name in sort order), and a warning says how many names were merged.

The split needs a context, a valid and a test session, so clients with fewer than 3 sessions are always
dropped (the funnel says so when rule 5 is off). Vocabularies are built over all kept sessions; nothing here
computes a statistic over valid or test targets.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from training.dataset import ProcessedData, Vocabulary
from training.errors import ConfigError
from training.folders import replace_folder
from training.load import Tables, load_tables
from training.schema import AGES, GENDERS

log = logging.getLogger(__name__)

MIN_SPLIT_SESSIONS = 3  # context + valid + test


@dataclass(frozen=True)
class PreprocessConfig:
    """One preprocessing profile: thresholds and switches of the seed's rules."""

    profile: str
    drop_first_hit: bool = True  # rule 1; public data sets have no hit numbers
    require_gender: bool = True  # rule 3
    require_age: bool = True  # rule 3
    min_session_items: int | None = 2  # rule 4, distinct CLAC3 labels; None = off
    min_client_sessions: int | None = 10  # rule 5; None = off (the split's minimum of 3 still holds)
    max_client_sessions: int | None = 10  # rule 5, the seed's cap; None = all history
    max_orphan_share: float = 0.01  # Product rows with unknown PD_C or session: fail past this share

    def __post_init__(self) -> None:
        if self.min_session_items is not None and self.min_session_items < 1:
            raise ConfigError(f"min_session_items must be >= 1 or None (got {self.min_session_items})")
        for name in ("min_client_sessions", "max_client_sessions"):
            value = getattr(self, name)
            if value is not None and value < MIN_SPLIT_SESSIONS:
                raise ConfigError(
                    f"{name} must be >= {MIN_SPLIT_SESSIONS} or None (got {value}): "
                    "the split needs a context, a valid and a test session"
                )
        if not 0.0 <= self.max_orphan_share <= 1.0:
            raise ConfigError(f"max_orphan_share must be within [0, 1] (got {self.max_orphan_share})")


PROFILES = {
    "lpoint": PreprocessConfig("lpoint"),
    "completejourney-cap10": PreprocessConfig(
        "completejourney-cap10", drop_first_hit=False, require_gender=False
    ),
    "completejourney-all": PreprocessConfig(
        "completejourney-all", drop_first_hit=False, require_gender=False, max_client_sessions=None
    ),
}


def get_profile(name: str) -> PreprocessConfig:
    """The named profile's config; an unknown name is a ConfigError."""
    if name not in PROFILES:
        raise ConfigError(f"unknown preprocessing profile {name!r}; expected one of {', '.join(PROFILES)}")
    return PROFILES[name]


def load_profile_tables(data_dir: Path, *, profile: str = "lpoint", encoding: str | None = None) -> Tables:
    """Load and validate an L.POINT folder with the named profile's demands (HITS_SEQ, orphan share)."""
    config = get_profile(profile)
    return load_tables(
        data_dir, encoding=encoding, max_orphan_share=config.max_orphan_share, need_hits=config.drop_first_hit
    )


def load_and_preprocess(
    data_dir: Path, *, profile: str = "lpoint", encoding: str | None = None
) -> ProcessedData:
    """Load and validate an L.POINT folder, apply the profile's rules, log the funnel."""
    return preprocess(load_profile_tables(data_dir, profile=profile, encoding=encoding), get_profile(profile))


def run_preprocess(
    data_dir: Path, out_dir: Path, *, profile: str = "lpoint", encoding: str | None = None
) -> ProcessedData:
    """load_and_preprocess, then write the processed folder atomically (all of it or nothing)."""
    data = load_and_preprocess(data_dir, profile=profile, encoding=encoding)
    replace_folder(out_dir, data.save)
    log.info("processed data set written to %s", out_dir)
    return data


def preprocess(tables: Tables, config: PreprocessConfig) -> ProcessedData:
    """Apply the rules to validated tables and split each client's sessions for next-session prediction."""
    funnel = Funnel()
    # Product comes sorted by SESS_KEY (hence by CLNT_ID): per-session work and distinct counts are scans.
    rows = tables.product
    funnel.add_rows("loaded", rows)
    if config.drop_first_hit:
        rows = rows.filter(pl.col("HITS_SEQ") != 1)
        funnel.add_rows("1. drop HITS_SEQ == 1", rows)
    product_labels, labels = _label_names(tables.master)
    rows = rows.join(product_labels, on="PD_C", maintain_order="left").select(
        pl.col("SESS_KEY").set_sorted(), pl.col("CLNT_ID").set_sorted(), "tmp_label"
    )
    sessions = _merge(rows, tables.custom)
    funnel.add("2. merge into sessions", sessions)
    sessions = _require_demographics(sessions, config, funnel)
    if config.min_session_items is not None:
        sessions = sessions.filter(pl.col("n_items") >= config.min_session_items)
        funnel.add(f"4. sessions with >= {config.min_session_items} items", sessions)
    sessions = _keep_clients(sessions.join(tables.session.drop("CLNT_ID"), on="SESS_KEY"), config, funnel)
    funnel.log()
    if sessions.is_empty():
        raise ConfigError(
            f"no client is left after the {config.profile!r} profile's rules (see the funnel above); "
            "expected a larger data set or lower thresholds"
        )
    kept = rows.filter(pl.col("SESS_KEY").is_in(sessions["SESS_KEY"].implode()))
    vocab, remap = _vocabulary(kept, labels)
    return ProcessedData(
        vocab=vocab,
        clients=_clients(sessions),
        sessions=_split(sessions, kept, remap),
        funnel=funnel.steps,
        config=dataclasses.asdict(config),
    )


class Funnel:
    """Rows, sessions and clients left after each rule."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def add_rows(self, step: str, rows: pl.DataFrame) -> None:
        """Counts over Product rows sorted by SESS_KEY: a session or client starts where its key changes."""
        self._append(step, rows.height, _distinct_sorted(rows["SESS_KEY"]), _distinct_sorted(rows["CLNT_ID"]))

    def add(self, step: str, sessions: pl.DataFrame) -> None:
        """Counts over the one-row-per-session table."""
        rows, clients = sessions.select(pl.col("n_rows").sum(), pl.col("CLNT_ID").n_unique()).row(0)
        self._append(step, rows or 0, sessions.height, clients)

    def _append(self, step: str, rows: int, sessions: int, clients: int) -> None:
        self.steps.append({"step": step, "rows": rows, "sessions": sessions, "clients": clients})

    def log(self) -> None:
        log.info("preprocessing funnel (rows / sessions / clients left):")
        for step in self.steps:
            log.info("  %-45s %10d %10d %9d", step["step"], step["rows"], step["sessions"], step["clients"])


def _distinct_sorted(values: pl.Series) -> int:
    return 0 if values.is_empty() else int(values.rle_id().max()) + 1  # type: ignore[arg-type]


def _label_names(master: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(PD_C -> temporary label id) and (temporary id, CLAC3_NM, CLAC1_NM parent), one per CLAC3 name."""
    counts = master.group_by("CLAC3_NM", "CLAC1_NM").len()
    labels = (
        counts.sort(["CLAC3_NM", "len", "CLAC1_NM"], descending=[False, True, False])
        .unique("CLAC3_NM", keep="first", maintain_order=True)
        .with_row_index("tmp_label")
        .select(pl.col("tmp_label").cast(pl.Int32), "CLAC3_NM", "CLAC1_NM")
    )
    if counts.height > labels.height:
        multi = counts.filter(pl.len().over("CLAC3_NM") > 1)["CLAC3_NM"].n_unique()
        log.warning(
            "Master.csv: %d CLAC3 names appear under several CLAC1 parents; each is one label under "
            "its most frequent parent",
            multi,
        )
    product_labels = master.join(labels, on="CLAC3_NM").select("PD_C", "tmp_label")
    return product_labels, labels


def _merge(rows: pl.DataFrame, custom: pl.DataFrame) -> pl.DataFrame:
    """One row per session: CLNT_ID, n_rows, n_items (distinct labels), gender and age (null if unknown).

    Session's own columns (SESS_ID, SESS_SEQ, SESS_DT) join later, on the far fewer sessions left by rule 4.
    """
    grouped = rows.group_by("SESS_KEY").agg(
        pl.col("CLNT_ID").first(), n_rows=pl.len(), n_items=pl.col("tmp_label").n_unique()
    )
    return grouped.join(custom, on="CLNT_ID", how="left")


def _require_demographics(sessions: pl.DataFrame, config: PreprocessConfig, funnel: Funnel) -> pl.DataFrame:
    if config.require_gender:
        sessions = sessions.filter(pl.col("CLNT_GENDER").is_not_null())
        funnel.add("3. clients with a gender", sessions)
    if config.require_age:
        sessions = sessions.filter(pl.col("CLNT_AGE").is_not_null())
        funnel.add("3. clients with an age", sessions)
    return sessions


def _keep_clients(sessions: pl.DataFrame, config: PreprocessConfig, funnel: Funnel) -> pl.DataFrame:
    """Rule 5 (and the split's minimum); orders sessions by client, then SESS_SEQ, then SESS_ID."""
    minimum = max(config.min_client_sessions or 0, MIN_SPLIT_SESSIONS)
    sessions = sessions.sort("CLNT_ID", "SESS_SEQ", "SESS_ID").filter(pl.len().over("CLNT_ID") >= minimum)
    step = f"5. clients with >= {minimum} sessions"
    funnel.add(step if config.min_client_sessions is not None else f"{step} (split minimum)", sessions)
    if config.max_client_sessions is not None:
        cap = config.max_client_sessions
        # pl.len() is unsigned: cast before subtracting, or short histories wrap around
        recent = pl.int_range(pl.len()).over("CLNT_ID") >= pl.len().over("CLNT_ID").cast(pl.Int64) - cap
        sessions = sessions.filter(recent)
        funnel.add(f"5. each client's {cap} most recent sessions", sessions)
    return sessions


def _vocabulary(rows: pl.DataFrame, labels: pl.DataFrame) -> tuple[Vocabulary, pl.DataFrame]:
    """Labels present in kept rows, ordered by (CLAC1, CLAC3) name; and temporary id -> final id."""
    used = rows["tmp_label"].unique().implode()
    present = labels.filter(pl.col("tmp_label").is_in(used)).sort("CLAC1_NM", "CLAC3_NM")
    clac1 = sorted(set(present["CLAC1_NM"]))
    clac1_id = {name: i for i, name in enumerate(clac1)}
    vocab = Vocabulary(
        labels=present["CLAC3_NM"].to_list(),
        label_clac1=[clac1_id[p] for p in present["CLAC1_NM"]],
        clac1=clac1,
        genders=["?", *GENDERS],
        ages=[0, *AGES],
    )
    remap = present.select("tmp_label", label=pl.int_range(pl.len(), dtype=pl.Int32))
    return vocab, remap


def demographic_codes() -> tuple[pl.Expr, pl.Expr]:
    """CLNT_GENDER and CLNT_AGE as vocabulary indices (Int16 `gender`, `age`; 0 = unknown)."""
    genders = {g: i + 1 for i, g in enumerate(GENDERS)}
    ages = {a: i + 1 for i, a in enumerate(AGES)}
    return (
        pl.col("CLNT_GENDER").replace_strict(genders, default=0, return_dtype=pl.Int16).alias("gender"),
        pl.col("CLNT_AGE").replace_strict(ages, default=0, return_dtype=pl.Int16).alias("age"),
    )


def _clients(sessions: pl.DataFrame) -> pl.DataFrame:
    return (
        sessions.group_by("CLNT_ID")
        .agg(pl.col("CLNT_GENDER", "CLNT_AGE").first())
        .sort("CLNT_ID")
        .select("CLNT_ID", *demographic_codes())
    )


def _split(sessions: pl.DataFrame, rows: pl.DataFrame, remap: pl.DataFrame) -> pl.DataFrame:
    """Sessions with final label ids (sorted, distinct), position and split; by CLNT_ID, then position."""
    labels = (
        rows.join(remap, on="tmp_label")
        .group_by("SESS_KEY")
        .agg(pl.col("label").unique().sort().alias("labels"))
    )
    position = pl.int_range(pl.len(), dtype=pl.Int32).over("CLNT_ID")
    count = pl.len().over("CLNT_ID").cast(pl.Int32)
    split = (
        pl.when(position == count - 1)
        .then(pl.lit("test"))
        .when(position == count - 2)
        .then(pl.lit("valid"))
        .when(position == 0)
        .then(pl.lit("context"))
        .otherwise(pl.lit("train"))
    )
    return sessions.join(labels, on="SESS_KEY", maintain_order="left").select(
        "CLNT_ID",
        "SESS_ID",
        "SESS_SEQ",
        "SESS_DT",
        position.alias("position"),
        "labels",
        split.alias("split"),
    )
