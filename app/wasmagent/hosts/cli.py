"""The command line (native host): `python -m wasmagent serve|embed|ingest|export|ask`."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

DEFAULT_DIST = Path(__file__).resolve().parents[3] / "dist"  # app/wasmagent/hosts/cli.py
# What a shell reports for a command whose reader went away (128 + SIGPIPE), as for `yes | head`.
EXIT_BROKEN_PIPE = 141


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


def _one_shot() -> None:
    """Set up a process that does one command and exits (not `serve` or `server`): numpy's
    BLAS gets no thread pool. Its one product here (a question against every passage vector)
    takes a few ms on one thread, while the pool's threads, spinning as they start and stop,
    cost ~100 ms of CPU per process (measured: `import numpy, onnxruntime` 224 -> 118 ms of
    CPU), which on 2 busy cores was 70-100 ms of wall time. The caller's own setting wins."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _brief() -> None:
    """Set up a process that answers one question (`ask`, `embed`) and exits: it runs without
    the cyclic garbage collector. Importing numpy, onnxruntime and the core and opening a
    knowledge base allocate enough objects to trigger ~95 collections, 20-25 ms of an `ask` on
    2 busy cores (measured with `gc.callbacks`), for cycles that the process's exit (`run`,
    `os._exit`) frees anyway. Not for `ingest` and `export`, whose work grows with their input."""
    gc.disable()


def _complete(work: Coroutine[Any, Any, int]) -> int:
    # asyncio (and the logging it brings) is imported here, after `_brief`, not with this module.
    import asyncio

    return asyncio.run(work)


def _start_models() -> None:
    """Set up a process that answers one question: its model sessions start loading before it
    imports the agent (100-200 ms of imports), on another core through onnxruntime's C API
    (`onnx_sessions.start_loading`); the native host it then creates takes them over. What
    fails here (a bad `$WASMAGENT_MINILM_WEIGHTS`) fails again, reported, in the command."""
    from .onnx_sessions import start_loading

    with contextlib.suppress(Exception):
        start_loading()


def _embed(args: argparse.Namespace) -> int:
    from . import cli_commands

    return _complete(cli_commands.embed(args.texts))


def _ingest(args: argparse.Namespace) -> int:
    from . import cli_commands

    return _complete(cli_commands.ingest(args.paths, args.kb, args.name))


def _export(args: argparse.Namespace) -> int:
    from . import cli_commands

    return _complete(cli_commands.export(args.kb, args.name, args.out))


def _ask(args: argparse.Namespace) -> int:
    from . import cli_commands

    return _complete(cli_commands.ask(args.question, args.kb, kb=args.name,
                                      as_json=args.json, top_k=args.top_k))


def _server(args: argparse.Namespace) -> int:
    from .server.app import run
    from .server.config import ServerConfig, database_url, llm_from_env
    from .server.security import OriginPolicy, TokenBook

    config = ServerConfig(
        host=args.host, port=args.port, store=database_url(args.database),
        tokens=TokenBook.load(args.tokens) if args.tokens else TokenBook(),
        origins=OriginPolicy(frozenset(o.rstrip("/") for o in args.allow_origin)),
        llm=llm_from_env(args.llm_url, args.llm_model, args.llm_timeout),
        llm_breaker_threshold=args.llm_breaker_threshold,
        llm_breaker_reset_s=args.llm_breaker_reset,
        rate=args.rate, burst=args.burst, max_message_bytes=args.max_message_bytes,
        max_document_bytes=args.max_document_bytes, threads=args.threads,
        insecure_no_auth=args.insecure_no_auth, job_lease_s=args.job_lease,
        loop=args.loop, shared_kbs=frozenset(args.shared_kb), grpc_port=args.grpc_port)
    return run(config)


def _token(args: argparse.Namespace) -> int:
    from .server.security import new_token

    token, line = new_token(args.client)
    if args.tokens:
        with args.tokens.open("a") as out:
            out.write(line + "\n")
        print(f"added {args.client} to {args.tokens}; the token (shown once):", flush=True)
    else:
        print(f"add this line to the tokens file: {line}\nthe token (shown once):", flush=True)
    print(token)
    return 0


def _add_server(commands: Any) -> None:
    server = commands.add_parser("server", help="run the agent server (WebSocket, SSE, LLM)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8080)
    server.add_argument(
        "--database", "--store", metavar="URL", dest="database",
        help="where knowledge bases and history live: postgresql://USER@HOST/DB, "
             "sqlite:///PATH or a SQLite file (default: $WASMAGENT_DATABASE_URL, else "
             "wasmagent-server.sqlite); pass a URL with a password through "
             "WASMAGENT_DATABASE_URL, not here, where `ps` shows it")
    server.add_argument("--job-lease", type=float, default=10.0, metavar="SECONDS",
                        help="after a crash, durable jobs (ingestions) resume on this or another "
                             "server process once their lease of this many seconds lapses")
    server.add_argument("--tokens", type=Path, help="file of 'client sha256' lines; enables auth")
    server.add_argument("--shared-kb", action="append", default=[], metavar="NAME",
                        help="with --tokens, each client has its own knowledge bases, history "
                             "and jobs; this knowledge base (repeat for more) is the "
                             "operator's, readable by every client and changed by none")
    server.add_argument("--insecure-no-auth", action="store_true",
                        help="allow serving a non-loopback address without tokens")
    server.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="a browser origin allowed to connect (repeat; '*' for any)")
    server.add_argument("--llm-url", help="OpenAI-compatible base URL, e.g. http://host/v1 "
                        "(key from the WASMAGENT_LLM_KEY environment variable)")
    server.add_argument("--llm-model", help="the model name to ask for")
    server.add_argument("--llm-timeout", type=float, default=30.0,
                        help="seconds to connect and between streamed pieces")
    server.add_argument("--llm-breaker-threshold", type=int, default=5, metavar="N",
                        help="consecutive LLM failures that open the circuit breaker")
    server.add_argument("--llm-breaker-reset", type=float, default=30.0, metavar="SECONDS",
                        help="how long an open breaker refuses calls before one trial call")
    server.add_argument("--rate", type=float, default=20.0, help="requests/s per client")
    server.add_argument("--burst", type=int, default=40, help="burst size per client")
    server.add_argument("--max-message-bytes", type=int, default=1 << 20)
    server.add_argument("--max-document-bytes", type=int, default=2 << 20)
    server.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: auto)")
    server.add_argument("--grpc-port", type=int, metavar="N",
                        help="also serve gRPC (wasmagent.v1.Agent, health, reflection) on this "
                             "port, beside HTTP in the same process (off by default)")
    server.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="event loop: uvloop when installed (auto), or asyncio's own")
    server.set_defaults(func=_server)

    token = commands.add_parser("token", help="create a bearer token for a client")
    token.add_argument("client", help="the client's name (one word), shown in logs")
    token.add_argument("--tokens", type=Path, help="append the hashed token to this file")
    token.set_defaults(func=_token)


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
    embed.set_defaults(func=_embed, one_shot=True, brief=True)

    ingest = commands.add_parser("ingest", help="add documents (files or folders) to a KB file")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    ingest.add_argument("--name", default="default", help="the knowledge base inside the file")
    ingest.set_defaults(func=_ingest, one_shot=True)

    export = commands.add_parser(
        "export", help="write a KB as dist/kb/<name>.kv, for the browser app and the widget")
    export.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    export.add_argument("--name", default="default", help="the knowledge base inside the file")
    export.add_argument("--out", type=Path, required=True, help="the .kv file to write")
    export.set_defaults(func=_export, one_shot=True)

    ask = commands.add_parser("ask", help="answer a question from a KB file, with citations")
    ask.add_argument("question")
    ask.add_argument("--kb", type=Path, required=True, help="the SQLite knowledge base file")
    ask.add_argument("--name", default=None, help="the knowledge base inside the file")
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--json", action="store_true", help="print the answer as JSON")
    ask.set_defaults(func=_ask, one_shot=True, brief=True)
    _add_server(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv)[0]


def _main(argv: Sequence[str] | None, *, program: bool = False) -> tuple[int, bool]:
    """The exit status, and whether the command was a one-shot one (see `_one_shot`).
    `program`: this is the process's own command (`run`), which may set the process up for it
    (`_brief`); a caller of `main` in its own process keeps its garbage collector."""
    one_shot = False
    try:
        args = build_parser().parse_args(argv)
        one_shot = bool(getattr(args, "one_shot", False))
        if one_shot:
            _one_shot()
        if program and getattr(args, "brief", False):
            _brief()
            _start_models()
        result: int = args.func(args)
        # Flush here, not at interpreter exit, so that a reader that left shows up below.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`wasmagent embed ... | head`): exit quietly, as a command killed
        # by SIGPIPE would. Python ignores SIGPIPE (so that sockets raise instead of killing the
        # process) and would flush stdout again at exit; point it at devnull so that flush
        # cannot fail too (the recipe in the Python docs' note on SIGPIPE, `signal` module).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_BROKEN_PIPE, one_shot
    return result, one_shot


def run() -> NoReturn:
    """`main` as a program (`python -m wasmagent`): exits with its status. After a one-shot
    command, which has closed what it opened and written its output, the process ends without
    the interpreter's teardown (`os._exit`): freeing onnxruntime's sessions, numpy and some 600
    modules took 120-190 ms of every `ask` on 2 busy cores, longer than answering."""
    code, one_shot = _main(None, program=True)
    if not one_shot:
        raise SystemExit(code)
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.shutdown()  # flush any log handlers, as the teardown would have
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
