"""The command line (native host): `python -m wasmagent serve|embed|ingest|export|ask`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DIST = Path(__file__).resolve().parents[2] / "dist"


def _serve(args: argparse.Namespace) -> int:
    from .server.static import make_server

    try:
        server = make_server(args.dist, args.host, args.port, isolate=not args.no_isolation,
                             quiet=not args.verbose, embed_origins=args.embed_origin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"wasmagent is serving {args.dist} on http://{host}:{port}/", flush=True)
    print(f"the widget may be embedded by: {' '.join(server.embed_origins) or 'no other site'}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _embed(args: argparse.Namespace) -> int:
    from . import cli_commands

    return asyncio.run(cli_commands.embed(args.texts))


def _ingest(args: argparse.Namespace) -> int:
    from . import cli_commands

    return asyncio.run(cli_commands.ingest(args.paths, args.kb, args.name))


def _export(args: argparse.Namespace) -> int:
    from . import cli_commands

    return asyncio.run(cli_commands.export(args.kb, args.name, args.out))


def _ask(args: argparse.Namespace) -> int:
    from . import cli_commands

    return asyncio.run(cli_commands.ask(args.question, args.kb, kb=args.name,
                                        as_json=args.json, top_k=args.top_k))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmagent", description="wasmagent command line")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the built app (dist/) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--dist", type=Path, default=DEFAULT_DIST, help="the built site to serve")
    serve.add_argument("--no-isolation", action="store_true",
                       help="omit COOP/COEP (the page is then not crossOriginIsolated)")
    serve.add_argument("--embed-origin", action="append", metavar="URL",
                       help="a site allowed to embed the widget, e.g. https://shop.example "
                            "(repeatable; replaces dist/embed.json's list)")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)

    embed = commands.add_parser("embed", help="print MiniLM sentence embeddings as JSON")
    embed.add_argument("texts", nargs="+")
    embed.set_defaults(func=_embed)

    ingest = commands.add_parser("ingest", help="add documents (files or folders) to a KB file")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    ingest.add_argument("--name", default="default", help="the knowledge base inside the file")
    ingest.set_defaults(func=_ingest)

    export = commands.add_parser(
        "export", help="write a KB as dist/kb/<name>.kv, for the browser app and the widget")
    export.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    export.add_argument("--name", default="default", help="the knowledge base inside the file")
    export.add_argument("--out", type=Path, required=True, help="the .kv file to write")
    export.set_defaults(func=_export)

    ask = commands.add_parser("ask", help="answer a question from a KB file, with citations")
    ask.add_argument("question")
    ask.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    ask.add_argument("--name", default=None, help="the knowledge base inside the file")
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ask.set_defaults(func=_ask)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
