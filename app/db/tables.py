"""The database's tables, as SQLAlchemy Core: what the store reads and writes (migrations/ creates them).

`clients.revision` goes up by one with every write for the client, in the same transaction: any reader,
in any process, can tell from it whether what it computed for the client is still current. `rankings` holds
each client's scores as computed off the request path (app/rankings.py), stamped with that revision.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

SESSION_ID_LEN = 64

metadata = MetaData()

clients = Table(
    "clients",
    metadata,
    Column("client_id", BigInteger, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
    Column("gender", String(1)),  # None: not set through the API
    Column("age", SmallInteger),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    # SQLite's rowid alias must be INTEGER; the id orders a client's sessions of one date as recorded.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("client_id", BigInteger, ForeignKey("clients.client_id"), nullable=False),
    Column("session_id", String(SESSION_ID_LEN), nullable=False),
    Column("session_date", Date, nullable=False),
    Column("labels", JSON, nullable=False),  # CLAC3 names: stable across model versions, unlike ids
    # The PD_C codes sent, or SQL NULL when labels were sent (rows written as JSON 'null' before read the
    # same): a ranking's read decodes no JSON for it.
    Column("products", JSON(none_as_null=True)),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("client_id", "session_id", name="uq_sessions_client_session"),
)

rankings = Table(
    "rankings",
    metadata,
    # No foreign key: a client known only to the training data has a ranking and no clients row.
    Column("client_id", BigInteger, primary_key=True, autoincrement=False),
    Column("version", String, nullable=False),  # the model version that scored it
    Column("as_of", Date, nullable=False),  # the reference date of its calendar features
    Column("revision", BigInteger, nullable=False),  # the client's revision it was computed from (0: none)
    Column("scores", LargeBinary, nullable=False),  # float32 [labels]: every label's probability
    # Label ids (StoredRanking.label_dtype): the ranked order, and the labels of the history it scored.
    Column("order", LargeBinary, nullable=False),
    Column("bought", LargeBinary, nullable=False),
)
