"""Every client's top k in one file (`wdrec recommend`): the rankings GET /recommend answers, in batches.

The clients are those of the training data, then those only the database has recorded; a client's history
is its training sessions then its recorded ones, read from the database batch by batch, as the API reads
them. Each batch of clients goes through `Recommender.rank_batch` (the routes' own path: the same features,
forward pass, filters and top k) on one of a scoring thread per core, then becomes rows (client_id, rank,
label, clac1, score, bought_before; with --products N, one row per product of each label: product_rank,
pd_c, product_name, brand, product_source, product_score; with --reason, each label's reason in words, as
explain=true gives it) appended, in the clients' order, to a Parquet or CSV file. Memory holds a few
batches at a time; the file is written under a temporary name beside the target and renamed over it only
when complete, so a failed run leaves the old file (or none).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute  # Table.cast imports it on its first call: here, while loading
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from app.core.config import Settings
from app.core.memory import freeze_long_lived, keep_freed_memory, peak_rss_mb
from app.explain import explain_rankings, utc_today
from app.filters import NO_FILTERS, Filters, bought_mask
from app.live import LiveClient
from app.products import RankedProduct
from app.recommender import BatchRanking, Query, Recommender
from app.store import SessionStore, open_store
from training.errors import WdrecError

logger = logging.getLogger(__name__)
T = TypeVar("T")

FORMATS = ("parquet", "csv")
BATCH_CLIENTS = 128  # clients per forward pass, a thread per core: the most clients/s (bench/batch.py)
CLIENT_HEADERS = ("CLNT_ID", "client_id")  # a clients file may start with one of these
SCHEMA = pa.schema(
    [
        ("client_id", pa.int64()),
        ("rank", pa.int32()),
        ("label", pa.string()),
        ("clac1", pa.string()),
        ("score", pa.float64()),
        ("bought_before", pa.bool_()),
    ]
)


# With --products N: one row per (label, product); a label without products keeps one row with nulls here.
PRODUCT_FIELDS = [
    pa.field("product_rank", pa.int32()),
    pa.field("pd_c", pa.int64()),
    pa.field("product_name", pa.string()),
    pa.field("brand", pa.string()),
    pa.field("product_source", pa.string()),
    pa.field("product_score", pa.float64()),
]
PRODUCT_SCHEMA = pa.schema([*SCHEMA, *PRODUCT_FIELDS])
REASON_FIELD = pa.field("reason", pa.string())  # with --reason: after the label columns


class BatchInputError(WdrecError):
    """A clients file or an output path `wdrec recommend` cannot use."""


@dataclass(frozen=True)
class Recorded:
    """The database's recorded clients for a batch job: their IDs, listed when it starts, and each batch's
    recorded states, read when that batch is ranked (one read per batch holding a recorded client)."""

    store: SessionStore
    ids: frozenset[int]

    @classmethod
    def of(cls, store: SessionStore) -> Recorded:
        return cls(store, frozenset(store.recorded_client_ids()))

    def states(self, client_ids: Sequence[int], *, newest: int, today: dt.date) -> dict[int, LiveClient]:
        """The recorded state of each of `client_ids` that has one: its newest `newest` sessions up to
        `today` (what GET /recommend reads)."""
        wanted = [client_id for client_id in client_ids if client_id in self.ids]
        return self.store.clients(wanted, newest=newest, until=today) if wanted else {}


@dataclass(frozen=True)
class BatchSummary:
    clients: int
    rows: int
    seconds: float


class _Writer(Protocol):
    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None: ...


def read_client_ids(path: Path) -> list[int]:
    """Client IDs from a file of one ID per line (an optional first line CLNT_ID or client_id; blank lines
    skipped; repeats kept once, in first-seen order); BatchInputError naming the line otherwise."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"{path}: cannot read the clients file ({exc})") from exc
    ids: dict[int, None] = {}
    for number, line in enumerate(lines, 1):
        value = line.strip()
        if not value or (number == 1 and value in CLIENT_HEADERS):
            continue
        try:
            ids[int(value)] = None
        except ValueError:
            raise BatchInputError(
                f"{path}, line {number}: not a client ID (got {value!r}); expected one whole number per line"
            ) from None
    if not ids:
        raise BatchInputError(f"{path}: no client ID in the file")
    return list(ids)


def clients_to_rank(
    recommender: Recommender,
    client_ids: Sequence[int] | None,
    source: Path | None,
    recorded: Recorded | None = None,
) -> list[int]:
    """The client IDs to rank: when `client_ids` is None, every client of the artifacts' client table, then
    the recorded clients it does not hold, by ID; else `client_ids`, BatchInputError listing those neither
    the artifacts nor the database know."""
    known = recorded.ids if recorded is not None else frozenset()
    if client_ids is None:
        table = [recommender.client_id_at(row) for row in range(recommender.n_clients)]
        return table + sorted(known.difference(table))
    unknown = [c for c in client_ids if c not in known and not recommender.knows(c)]
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise BatchInputError(
            f"{source}: {len(unknown)} client ID(s) neither in the artifacts' client table nor recorded: "
            f"{', '.join(map(str, unknown[:10]))}{more}"
        )
    return list(client_ids)


def write_recommendations(
    recommender: Recommender,
    out: Path,
    *,
    k: int = 10,
    filters: Filters = NO_FILTERS,
    clients: Sequence[int] | None = None,
    recorded: Recorded | None = None,
    fmt: str = "parquet",
    batch_size: int = BATCH_CLIENTS,
    products: int = 0,
    exclude_bought_products: bool = False,
    reason: bool = False,
    today: dt.date | None = None,
    threads: int | None = None,
) -> BatchSummary:
    """Write the top k of each of `clients` (IDs; default: every client of the artifacts and of
    `recorded`) as of `today` (default: the clock's date, UTC) to `out` atomically, from their training
    and recorded sessions, each label with up to `products` products as GET /recommend ranks them and,
    with `reason`, its reason; `threads` batches are ranked at a time (default: one per core). Returns
    what was written."""
    today = today or utc_today()
    if fmt not in FORMATS:
        raise BatchInputError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise BatchInputError(f"the batch size must be at least 1 (got {batch_size})")
    threads = threads or os.cpu_count() or 1
    if out.is_dir():
        raise BatchInputError(f"{out} is a folder; expected the path of the file to write")
    recommender.check_k(k)
    recommender.label_filter(filters)  # a conflict or an unknown name stops the run before any work
    recommender.label_products([], n=products)  # so do a bad count and a version without product tables
    clients = clients_to_rank(recommender, None, None, recorded) if clients is None else clients
    labels = pl.Series(recommender.vocab.labels, dtype=pl.String)
    clac1 = pl.Series(recommender.vocab.clac1, dtype=pl.String).gather(recommender.vocab.label_clac1)
    schema = PRODUCT_SCHEMA if products else SCHEMA
    if reason:
        schema = schema.insert(len(SCHEMA), REASON_FIELD)

    rank_batch = partial(_ranked_rows, recommender, filters=filters, today=today, k=k, recorded=recorded)

    def rank(ids: Sequence[int]) -> pl.DataFrame:
        """One batch's rows (on a scoring thread)."""
        queries, ranking, live = rank_batch(ids)
        bought = bought_mask([query.history for query in queries], recommender.vocab.n_labels).numpy()
        frame = _frame(ids, ranking, bought, k, labels=labels, clac1=clac1)
        if reason or products:
            rankings = [recommender.ranked(top, k) for top in recommender.split(queries, ranking)]
        if reason:
            explained = explain_rankings(recommender, queries, rankings, today=today)
            reasons = [item.reason for ranking in explained for item in ranking]
            frame = frame.with_columns(pl.Series(REASON_FIELD.name, reasons, dtype=pl.String))
        if products:
            lists = [
                product_list
                for client_id, ranked in zip(ids, rankings, strict=True)
                for product_list in recommender.label_products(
                    ranked,
                    n=products,
                    client_id=client_id,
                    live=live.get(client_id),
                    exclude_bought=exclude_bought_products,
                )
            ]
            frame = _with_products(frame, lists)
        return frame

    batches = _even_batches(clients, batch_size, threads)
    with (
        _torch_threads(1),  # one per forward pass: the threads' batches run side by side (as the API's do)
        ThreadPoolExecutor(threads, thread_name_prefix="recommend") as pool,
    ):
        if batches:
            # A thread's first forward pass costs more (the first batch of 128 took 23 ms, the next ones 13;
            # the graph's first run, the thread's heap): paid on each thread before the clock starts, as a
            # running service's threads have paid it, so clients/s measures the ranking.
            _on_each_thread(pool, threads, partial(rank_batch, batches[0]))
        started, written = time.perf_counter(), 0
        with (
            _atomic_writer(out, fmt, schema) as writer,
            tqdm(total=len(clients), unit="client", desc="recommend") as bar,
        ):
            for batch, frame in zip(batches, _in_order(pool, rank, batches, ahead=2 * threads), strict=True):
                # Polars builds the rows and hands Arrow the buffers: pyarrow's own constructors import
                # pandas (~0.3 s and ~40 MB in a process that needs none of it).
                writer.write(frame.to_arrow().cast(schema))
                written += frame.height
                bar.update(len(batch))
        seconds = time.perf_counter() - started
    summary = BatchSummary(clients=len(clients), rows=written, seconds=seconds)
    peak = peak_rss_mb()
    logger.info(
        "wrote %d rows for %d clients to %s in %.3f s (%.0f clients/s); peak RSS %s",
        summary.rows,
        summary.clients,
        out,
        summary.seconds,
        summary.clients / max(summary.seconds, 1e-9),
        "unknown" if peak is None else f"{peak:.0f} MB",
    )
    return summary


def _ranked_rows(
    recommender: Recommender,
    client_ids: Sequence[int],
    *,
    filters: Filters,
    today: dt.date,
    k: int,
    recorded: Recorded | None,
) -> tuple[list[Query], BatchRanking, dict[int, LiveClient]]:
    """The clients' queries, their first k labels and their recorded states, as a scoring thread ranks
    them: a client nothing was recorded for is ranked from its row of the client table."""
    live = recorded.states(client_ids, newest=recommender.max_sessions, today=today) if recorded else {}
    # TorchScript's profiling executor spends its first calls specialising the graph, which a one-off
    # job does not earn back: 20% more clients/s over the default data without it (bench/batch.py).
    # The setting is per thread.
    with torch.jit.optimized_execution(False):
        queries = [
            recommender.client_query(client_id, filters, live[client_id], today)
            if client_id in live
            else recommender.row_query(recommender.row_of(client_id), filters, today)
            for client_id in client_ids
        ]
        return queries, recommender.rank_batch(queries, k), live


def _frame(
    client_ids: Sequence[int],
    batch: BatchRanking,
    bought: np.ndarray,
    k: int,
    *,
    labels: pl.Series,
    clac1: pl.Series,
) -> pl.DataFrame:
    """One batch's rows (SCHEMA's columns): each client's first k labels of `batch` (fewer when the filters
    left fewer), best first; `bought` [B, N] marks each client's history labels, `labels` and `clac1` hold
    each label id's names. In numpy: a torch call per column would hand the GIL to the other scoring
    threads each time."""
    counts = np.minimum(k, np.asarray(batch.candidates, dtype=np.int64))
    kept = np.arange(k) < counts[:, None]  # [B, k]
    top = batch.label_ids[:, :k].numpy()
    label_ids = top[kept]
    return pl.DataFrame(
        {
            "client_id": np.repeat(np.asarray(client_ids, dtype=np.int64), counts),
            "rank": np.nonzero(kept)[1].astype(np.int32) + 1,
            "label": labels.gather(label_ids),
            "clac1": clac1.gather(label_ids),
            # float32 scores widened exactly, as the API's JSON shows them.
            "score": batch.scores[:, :k].numpy()[kept].astype(np.float64),
            "bought_before": np.take_along_axis(bought, top, axis=1)[kept],
        }
    )


def _with_products(frame: pl.DataFrame, lists: Sequence[Sequence[RankedProduct]]) -> pl.DataFrame:
    """`frame`'s label rows, each repeated once per product of `lists[row]` with the product columns (typed
    by the cast to the file's schema when written)."""
    take: list[int] = []
    columns: list[list[object]] = [[] for _ in PRODUCT_FIELDS]
    for row, products in enumerate(lists):
        for rank, product in enumerate(products or [None], 1):
            take.append(row)
            values: tuple[object, ...] = (
                (rank, product.pd_c, product.name, product.brand, product.source, product.score)
                if product is not None
                else (None,) * len(PRODUCT_FIELDS)
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
    return frame[take].with_columns(
        pl.Series(field.name, column) for field, column in zip(PRODUCT_FIELDS, columns, strict=True)
    )


def _even_batches(rows: Sequence[int], most: int, threads: int) -> list[Sequence[int]]:
    """`rows` in consecutive batches of at most `most`, as many as a multiple of `threads` (unless there are
    fewer rows) and of sizes differing by at most one, so that the threads finish together: in batches of
    exactly `most`, the last round left a thread idle while another ranked a full batch."""
    count = -(-len(rows) // most)
    count = min(count + (-count % threads), len(rows))
    return [rows[i * len(rows) // count : (i + 1) * len(rows) // count] for i in range(count)]


def _on_each_thread(pool: Executor, threads: int, work: Callable[[], object]) -> None:
    """Run `work` once on each of the `threads` threads of `pool`, which must be idle."""
    barrier = threading.Barrier(threads)

    def once() -> None:
        barrier.wait()  # each thread holds its task until all have one, so none takes two
        work()

    for future in [pool.submit(once) for _ in range(threads)]:
        future.result()


def _in_order(
    pool: Executor, work: Callable[[Sequence[int]], T], batches: Sequence[Sequence[int]], *, ahead: int
) -> Generator[T, None, None]:
    """`work` of each batch on `pool`, yielded in the batches' order, at most `ahead` submitted and not yet
    taken (memory holds a few batches, however many clients there are); left early, the rest is cancelled."""
    pending: deque[Future[T]] = deque()
    try:
        for batch in batches:
            pending.append(pool.submit(work, batch))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _atomic_writer(out: Path, fmt: str, schema: pa.Schema) -> Iterator[_Writer]:
    """A writer into a temporary file beside `out`, renamed over `out` only when the block completes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    writer: _Writer = (
        pq.ParquetWriter(partial, schema) if fmt == "parquet" else pa_csv.CSVWriter(partial, schema)
    )
    try:
        yield writer
        writer.close()
        os.replace(partial, out)
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise


def run_recommend(
    artifacts: Path | None,
    out: Path,
    *,
    k: int,
    filters: Filters,
    clients_file: Path | None,
    fmt: str | None,
    database: str | None = None,
    batch_size: int | None = None,
    products: int = 0,
    exclude_bought_products: bool = False,
    reason: bool = False,
    today: dt.date | None = None,
) -> BatchSummary:
    """`wdrec recommend`: load and verify the artifacts as `wdrec serve` does, open the database the
    service records sessions in (`database`, else as `wdrec serve` would; a SQLite file that does not
    exist yet holds nothing and is not created), then write every client's (or the listed clients') top k;
    the format follows --format, else the file's suffix, else Parquet."""
    from app.core.config import load_settings

    overrides: dict[str, object] = {"artifacts_dir": artifacts} if artifacts else {}
    if database:
        overrides["database_url"] = database
    settings = load_settings(**overrides)
    fmt = fmt or ("csv" if out.suffix.lower() == ".csv" else "parquet")
    client_ids = read_client_ids(clients_file) if clients_file else None
    # No ranking cache: each client is ranked once. max_k as the service has it, so k is bounded alike.
    recommender = Recommender.load(settings.artifacts_dir, max_k=settings.max_k)
    store = _recorded_store(settings)
    try:
        recorded = Recorded.of(store) if store is not None else None
        clients = clients_to_rank(recommender, client_ids, clients_file, recorded)
        freeze_long_lived()  # as the service does: no full collection over the model while ranking
        keep_freed_memory()  # batches reuse the heap instead of page-faulting fresh pages
        return write_recommendations(
            recommender,
            out,
            k=k,
            filters=filters,
            clients=clients,
            recorded=recorded,
            fmt=fmt,
            batch_size=BATCH_CLIENTS if batch_size is None else batch_size,
            products=products,
            exclude_bought_products=exclude_bought_products,
            reason=reason,
            today=today,
        )
    finally:
        if store is not None:
            store.close()


def _recorded_store(settings: Settings) -> SessionStore | None:
    """The database `wdrec serve` would record sessions in; None for a SQLite file not created yet."""
    from app.db.engine import database_url

    url = database_url(settings)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).exists():
        return None
    return open_store(settings)
