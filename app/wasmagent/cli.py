"""The command line (native host): `python -m wasmagent serve|...`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIST = Path(__file__).resolve().parents[2] / "dist"


def _serve(args: argparse.Namespace) -> int:
    from .server.static import make_server

    server = make_server(args.dist, args.host, args.port, isolate=not args.no_isolation,
                         quiet=not args.verbose)
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"wasmagent is serving {args.dist} on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmagent", description="wasmagent command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the built app (dist/) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="the built site to serve")
    serve.add_argument("--no-isolation", action="store_true",
                       help="omit COOP/COEP (the page is then not crossOriginIsolated)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
