"""The ``serve`` subcommand: an HTTP scoring service for fitted models (the ``serve`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from frozenasd.cli.options import positive_int
from frozenasd.cli.vocabulary import HelpFormatter, add_aliases, examples
from frozenasd.service.config import MB, ServiceConfig, read_token

SERVE_NOTES = """\
endpoints (JSON; every one but /healthz and the docs needs 'Authorization: Bearer <token>' when
--token-file is given):
  POST /v1/models/NAME/score         one recording: a multipart file field, or the raw body
  POST /v1/models/NAME/score-batch   several multipart files: one result or error per file
  GET  /v1/models                    the models: name, encoder, threshold, fit date
  GET  /healthz, GET /metrics (Prometheus), GET /docs (OpenAPI)
A model's NAME is its fitted file's name without .npz (fan.npz -> fan). A client posts a recording:
  curl -H "Authorization: Bearer $(cat token.txt)" -F file=@clip.wav \\
       http://127.0.0.1:8080/v1/models/fan/score"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    from frozenasd.service.server import serve

    config = ServiceConfig(
        fitted=tuple(Path(f) for f in args.fitted),
        host=args.host,
        port=args.port,
        token=read_token(args.token_file) if args.token_file else None,
        max_upload_bytes=int(args.max_upload_mb * MB),
        max_seconds=args.max_seconds,
        max_files=args.max_files,
        queue=args.queue,
        workers=args.workers,
        threads=args.threads,
        history=Path(args.history) if args.history else None,
    )
    return serve(config.check())


def add_commands(sub: argparse._SubParsersAction) -> None:
    defaults = ServiceConfig(fitted=())
    p = sub.add_parser(
        "serve",
        help="an HTTP service that scores recordings with fitted models (needs frozenasd[serve])",
        description="Load fitted models once and score recordings posted over HTTP.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "frozenasd serve --fitted fan.npz --fitted pump.npz",
            "frozenasd serve --fitted fan.npz --host 0.0.0.0 --token-file token.txt",
            before=SERVE_NOTES,
        ),
    )
    p.add_argument(
        "--fitted", action="append", required=True, help="a file written by `frozenasd fit`; repeat for more"
    )
    p.add_argument("--host", default=defaults.host, help=f"address to listen on (default: {defaults.host})")
    p.add_argument(
        "--port",
        type=int,
        default=defaults.port,
        help=f"TCP port (default: {defaults.port}; 0: any free one)",
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="file holding the bearer token clients must send; required to listen beyond 127.0.0.1",
    )
    p.add_argument(
        "--max-upload-mb",
        type=positive_float,
        default=defaults.max_upload_bytes / MB,
        help="larger requests get 413 before their body is read "
        f"(default: {defaults.max_upload_bytes // MB})",
    )
    p.add_argument(
        "--max-seconds",
        type=positive_float,
        default=defaults.max_seconds,
        help="longer recordings are cut to their first seconds, said in the response "
        f"(default: {defaults.max_seconds:g})",
    )
    p.add_argument(
        "--max-files",
        type=positive_int,
        default=defaults.max_files,
        help=f"files per batch request (default: {defaults.max_files})",
    )
    p.add_argument(
        "--queue",
        type=positive_int,
        default=defaults.queue,
        help="scoring requests admitted at once, waiting or running; more get 503 "
        f"(default: {defaults.queue})",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=defaults.workers,
        help="threads that score requests side by side (default: one per core, or per --threads cores)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="ONNX Runtime threads per encoder call (default: every core for a request alone in the "
        "service, one for calls made while others are in it)",
    )
    p.add_argument(
        "--history",
        default=None,
        metavar="FILE",
        help="a score history (SQLite, as `frozenasd watch` writes): a row per recording scored",
    )
    add_aliases(p)
    p.set_defaults(func=cmd_serve)
