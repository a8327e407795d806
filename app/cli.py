"""The service's `wdrec` commands (`serve`, `recommend`, `export`), added to the `wdrec` parser through the
`wdrec.commands` entry point group (pyproject.toml), so that `training` never imports `app`.

Nothing heavy is imported here: `wdrec --help` loads this module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any


def _serve(args: argparse.Namespace) -> None:
    from app.launch import serve

    serve(artifacts_dir=args.artifacts, host=args.host, port=args.port, workers=args.workers)


def _recommend(args: argparse.Namespace) -> None:
    from app.batch import run_recommend
    from app.filters import Filters

    filters = Filters.of(
        exclude_bought=args.exclude_bought,
        clac1=args.clac1 or (),
        exclude_clac1=args.exclude_clac1 or (),
        exclude=args.exclude or (),
    )
    run_recommend(
        args.artifacts,
        args.out,
        k=args.k,
        filters=filters,
        clients_file=args.clients,
        fmt=args.format,
        database=args.database,
        batch_size=args.batch_size,
        products=args.products,
        exclude_bought_products=args.exclude_bought_products,
        reason=args.reason,
        today=args.date,
    )


def _export(args: argparse.Namespace) -> None:
    from app.core.config import load_settings
    from app.db.engine import database_url, open_database
    from app.export import export
    from app.store import SessionStore
    from training.artifacts import METADATA, resolve_version

    overrides: dict[str, Any] = {"artifacts_dir": args.artifacts} if args.artifacts else {}
    if args.database:
        overrides["database_url"] = args.database
    settings = load_settings(**overrides)
    data_dir = args.data
    if data_dir is None:
        metadata = json.loads(
            (resolve_version(settings.artifacts_dir) / METADATA).read_text(encoding="utf-8")
        )
        data_dir = Path(metadata["data"]["source"])
    store = SessionStore(open_database(database_url(settings)))
    try:
        export(store, data_dir, args.out)
    finally:
        store.close()


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the service's sub-commands to the `wdrec` parser's sub-parsers."""
    srv = sub.add_parser("serve", help="serve the REST API and the web page with uvicorn")
    srv.add_argument(
        "--artifacts", type=Path, default=None, help="artifacts root (default: WDREC_ARTIFACTS_DIR)"
    )
    srv.add_argument("--host", default=None, help="bind address (default: WDREC_HOST or 127.0.0.1)")
    srv.add_argument("--port", type=int, default=None, help="port (default: WDREC_PORT or 8000)")
    srv.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: WDREC_WORKERS or 1)"
    )
    srv.set_defaults(handler=_serve)

    rec = sub.add_parser(
        "recommend", help="write every client's top k to a Parquet or CSV file (the API's rankings)"
    )
    rec.add_argument(
        "--artifacts", type=Path, default=None, help="artifacts root (default: WDREC_ARTIFACTS_DIR)"
    )
    rec.add_argument("--out", type=Path, required=True, help="file to write, replaced atomically")
    rec.add_argument("--k", type=int, default=10, help="labels per client (default 10)")
    rec.add_argument(
        "--clients",
        type=Path,
        default=None,
        help="file of client IDs, one per line (default: every client, trained on or recorded)",
    )
    rec.add_argument(
        "--database",
        default=None,
        help="database URL of the recorded sessions (default: WDREC_DATABASE_URL, else the SQLite file in "
        "the state folder, as wdrec serve)",
    )
    rec.add_argument(
        "--format",
        choices=["parquet", "csv"],
        default=None,
        help="default: csv for a .csv file, else parquet",
    )
    rec.add_argument(
        "--exclude-bought", action="store_true", help="leave out labels the client bought (new to them)"
    )
    rec.add_argument("--clac1", action="append", metavar="NAME", help="only this top category; repeatable")
    rec.add_argument(
        "--exclude-clac1", action="append", metavar="NAME", help="not this top category; repeatable"
    )
    rec.add_argument("--exclude", action="append", metavar="LABEL", help="not this label; repeatable")
    rec.add_argument(
        "--batch-size", type=int, default=None, help="clients per forward pass (default: the tuned 128)"
    )
    rec.add_argument(
        "--products", type=int, default=0, help="products per label, 0..20: one row per product (default 0)"
    )
    rec.add_argument(
        "--exclude-bought-products", action="store_true", help="leave the client's own products out"
    )
    rec.add_argument(
        "--reason", action="store_true", help="add a column: each label's reason in words (explain=true's)"
    )
    rec.add_argument(
        "--date",
        type=dt.date.fromisoformat,
        default=None,
        help="rank as of this date, YYYY-MM-DD, as GET /recommend?date= does (default: today, UTC)",
    )
    rec.set_defaults(handler=_recommend)

    exp = sub.add_parser(
        "export", help="write the training data plus the recorded sessions as an L.POINT folder"
    )
    exp.add_argument(
        "--database",
        default=None,
        help="database URL (default: WDREC_DATABASE_URL, else the SQLite file in the state folder)",
    )
    exp.add_argument("--out", type=Path, required=True, help="folder to write the four CSV files into")
    exp.add_argument(
        "--data",
        type=Path,
        default=None,
        help="the training data's L.POINT folder (default: the one the current artifacts were trained on)",
    )
    exp.add_argument(
        "--artifacts", type=Path, default=None, help="artifacts root (default: WDREC_ARTIFACTS_DIR)"
    )
    exp.set_defaults(handler=_export)
