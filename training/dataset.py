"""The processed data set: the contract between preprocessing and everything after it.

`wdrec preprocess` writes it, `wdrec train` reads it, and the artifacts carry its vocabulary.

Layout on disk (a folder):
    vocab.json        the Vocabulary below
    clients.parquet   CLNT_ID (i64), gender (i16, index into vocab.genders), age (i16, index into vocab.ages)
    sessions.parquet  one row per kept session, ordered by CLNT_ID then position:
                      CLNT_ID (i64), SESS_ID (i64), SESS_SEQ (i64), SESS_DT (i64 YYYYMMDD, null if unknown),
                      position (i32, 0 = oldest kept session of the client),
                      labels (list[i32]: the session's distinct CLAC3 label ids, sorted ascending),
                      split (str: one of SPLITS)
    funnel.json       list of {"step", "rows", "sessions", "clients"} after each preprocessing rule
    config.json       the PreprocessConfig used (profile, thresholds, switches)

The learning task is next-session prediction: the target of an example is session t of a client, its
input is sessions 0..t-1 plus the demographics. Per client with n kept sessions: position n-1 is "test",
n-2 is "valid", 1..n-3 are "train", and 0 is "context" (history only, never a target).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

SPLITS = ("context", "train", "valid", "test")
UNKNOWN = 0  # index 0 of vocab.genders and vocab.ages: missing or not required by the profile
CLIENTS_SCHEMA = {"CLNT_ID": pl.Int64, "gender": pl.Int16, "age": pl.Int16}
SESSIONS_SCHEMA = {
    "CLNT_ID": pl.Int64,
    "SESS_ID": pl.Int64,
    "SESS_SEQ": pl.Int64,
    "SESS_DT": pl.Int64,
    "position": pl.Int32,
    "labels": pl.List(pl.Int32),
    "split": pl.String,
}


@dataclass(frozen=True)
class Vocabulary:
    """Label ids and demographic codes shared by training, the artifacts and serving."""

    labels: list[str]  # CLAC3 names; a label's id is its index
    label_clac1: list[int]  # CLAC1 id of each label
    clac1: list[str]  # CLAC1 names; a CLAC1 id is its index
    genders: list[str] = field(default_factory=lambda: ["?", "F", "M"])  # index 0 = unknown
    ages: list[int] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50, 60, 70, 80])  # 0 = unknown

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": [
                {
                    "id": i,
                    "name": name,
                    "clac1": self.clac1[self.label_clac1[i]],
                    "clac1_id": self.label_clac1[i],
                }
                for i, name in enumerate(self.labels)
            ],
            "clac1": self.clac1,
            "genders": self.genders,
            "ages": self.ages,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocabulary:
        labels = sorted(data["labels"], key=lambda item: item["id"])
        return cls(
            labels=[item["name"] for item in labels],
            label_clac1=[item["clac1_id"] for item in labels],
            clac1=list(data["clac1"]),
            genders=list(data["genders"]),
            ages=[int(a) for a in data["ages"]],
        )


@dataclass(frozen=True)
class ProcessedData:
    """Everything the model step needs, in memory."""

    vocab: Vocabulary
    clients: pl.DataFrame
    sessions: pl.DataFrame
    funnel: list[dict[str, Any]]
    config: dict[str, Any]

    def save(self, out_dir: Path) -> None:
        """Write the folder layout described in the module docstring (the caller handles atomicity)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "vocab.json").write_text(json.dumps(self.vocab.to_json(), ensure_ascii=False, indent=1))
        self.clients.write_parquet(out_dir / "clients.parquet")
        self.sessions.write_parquet(out_dir / "sessions.parquet")
        (out_dir / "funnel.json").write_text(json.dumps(self.funnel, indent=1))
        (out_dir / "config.json").write_text(json.dumps(self.config, indent=1))

    @classmethod
    def load(cls, in_dir: Path) -> ProcessedData:
        return cls(
            vocab=Vocabulary.from_json(json.loads((in_dir / "vocab.json").read_text())),
            clients=pl.read_parquet(in_dir / "clients.parquet"),
            sessions=pl.read_parquet(in_dir / "sessions.parquet"),
            funnel=json.loads((in_dir / "funnel.json").read_text()),
            config=json.loads((in_dir / "config.json").read_text()),
        )

    def client_days(self) -> dict[int, list[int | None]]:
        """Per client, each kept session's date as a day number (days since 1970-01-01; None if unknown),
        oldest first like `client_histories`."""
        day = pl.col("SESS_DT").cast(pl.String).str.strptime(pl.Date, "%Y%m%d", strict=False).cast(pl.Int32)
        grouped = (
            self.sessions.sort("CLNT_ID", "position")
            .group_by("CLNT_ID", maintain_order=True)
            .agg(day.alias("days"))
        )
        return {clnt_id: list(days) for clnt_id, days in grouped.iter_rows()}

    def client_histories(self) -> Iterator[tuple[int, int, int, list[list[int]], list[str]]]:
        """Yield (CLNT_ID, gender, age, sessions as label-id lists oldest first, split of each session)."""
        demo = {
            row[0]: (row[1], row[2]) for row in self.clients.select("CLNT_ID", "gender", "age").iter_rows()
        }
        grouped = (
            self.sessions.sort("CLNT_ID", "position")
            .group_by("CLNT_ID", maintain_order=True)
            .agg(pl.col("labels"), pl.col("split"))
        )
        for clnt_id, labels, splits in grouped.iter_rows():
            gender, age = demo[clnt_id]
            yield clnt_id, gender, age, [list(s) for s in labels], list(splits)
