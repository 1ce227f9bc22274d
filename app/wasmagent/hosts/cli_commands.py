"""The native command line's agent commands: `embed`, `ingest` and `ask`.

They drive the same `Service` the browser runs, on the native host (onnxruntime, SQLite,
numpy). `ask` goes through the wire protocol exactly as a browser or server client would.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AgentError, ErrorCode
from ..protocol import Ask, DocumentIn
from ..retrieval.decoding import NotText, not_text, sniff_encoding

if TYPE_CHECKING:
    from ..service import Service

DEFAULT_KB = "default"

SUFFIXES = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown",
            ".rst": "rst", ".txt": "text", ".text": "text"}
DOCS_PER_BATCH = 50
MB = 1 << 20
BATCH_CHARS = 4 * MB
"""A batch (one `Library.ingest`, which saves the BM25 index at its end) holds at most this."""
LARGE_FILE = 4 * MB
"""Files above this size are read a block at a time and ingested in parts."""
PART_CHARS = MB
READ_BLOCK = MB
SNIFF_BYTES = 8192
PROGRESS_S = 2.0
INDEX_EVERY_S = 60.0


async def _close(service: Service) -> None:
    """Close the service and what its native host opened (the KB file, the model sessions):
    a one-shot command ends its process without the interpreter's teardown (`cli.run`), so
    nothing may be left for that teardown to close."""
    from .native import OnnxInference
    from .sql import SqliteStore

    await service.aclose()
    host = service.host
    if isinstance(host.store, SqliteStore):
        await host.store.aclose()
    if isinstance(host.inference, OnnxInference):
        host.inference.close()


def _service(store: str | Path) -> Service:
    from ..service import Service
    from .native import native_host

    return Service(native_host(store))


def _visible(path: Path, base: Path) -> bool:
    # Hidden folders (.git) and build/asset folders (Sphinx's _sources, _static) are not
    # documents; _sources would duplicate every page as reST text.
    return not any(part.startswith((".", "_")) for part in path.relative_to(base).parts[:-1])


class Reading:
    """What `iter_documents` has read so far: files, skipped files (with the reason), and the
    file being read (for progress lines)."""

    def __init__(self) -> None:
        self.files = 0
        self.skipped: list[dict[str, str]] = []
        self.current = ""
        self.read_bytes = 0
        self.size = 0

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append({"source": source, "reason": reason})
        print(f"skipped {source}: {reason}", file=sys.stderr, flush=True)


def iter_documents(paths: Sequence[Path], reading: Reading | None = None
                   ) -> Iterator[DocumentIn]:
    """Every supported text file under `paths`, with `source` relative to the path given.

    Files that are not text (binary data, a known binary format) are skipped and recorded in
    `reading`; a file named explicitly with an unsupported suffix is too. A file larger than
    `LARGE_FILE` comes as several documents of about `PART_CHARS` characters cut on paragraph
    boundaries, read a block at a time, so that memory does not grow with the file."""
    reading = reading if reading is not None else Reading()
    for root in paths:
        base = root.parent if root.is_file() else root
        files = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.is_file() and _visible(p, root))
        for path in files:
            source = str(path.relative_to(base))
            kind = SUFFIXES.get(path.suffix.lower())
            if kind is None:
                if path == root:
                    reading.skip(source, f"unsupported file type {path.suffix or '(none)'!r} "
                                         f"(supported: {' '.join(sorted(SUFFIXES))})")
                continue
            parts = 0
            try:
                for text in _read_text(path, reading):
                    parts += 1
                    yield DocumentIn(source, text, kind)
            except NotText as exc:
                reason = str(exc) if parts == 0 else f"{exc} after {reading.read_bytes} bytes " \
                    "(the text before it was read)"
                reading.skip(source, reason)
            except (OSError, UnicodeError) as exc:
                reading.skip(source, f"cannot read it: {exc.strerror or exc}"
                             if isinstance(exc, OSError) else f"cannot decode it: {exc}")
            if parts:
                reading.files += 1


def _read_text(path: Path, reading: Reading) -> Iterator[str]:
    """A file's text: whole if small, else in parts of about PART_CHARS characters."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        reading.current, reading.size, reading.read_bytes = str(path), size, 0
        head = f.read(READ_BLOCK)
        reading.read_bytes = len(head)
        encoding = sniff_encoding(head[:SNIFF_BYTES])
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        if size <= LARGE_FILE:
            data = head + f.read()
            reading.read_bytes = len(data)
            text = decoder.decode(data, final=True)
            reason = not_text(text)
            if reason is not None:
                raise NotText(reason)
            yield text
            return
        buffer = decoder.decode(head)
        done = False
        while buffer or not done:
            while not done and len(buffer) < PART_CHARS:
                block = f.read(READ_BLOCK)
                reading.read_bytes += len(block)
                done = not block
                buffer += decoder.decode(block, final=done)
            cut = len(buffer) if done else _paragraph_cut(buffer, PART_CHARS)
            part, buffer = buffer[:cut], buffer[cut:]
            reason = not_text(part)
            if reason is not None:
                raise NotText(reason)
            yield part


_PARAGRAPH_END = re.compile(r"\n[ \t\r]*\n")


def _paragraph_cut(text: str, limit: int) -> int:
    """Where to end a part of at most `limit` characters: after the last blank line in its
    second half, else after the last line end, else the last space, else at the limit."""
    low = limit // 2
    end = -1
    for match in _PARAGRAPH_END.finditer(text, low, limit):
        end = match.end()
    if end > 0:
        return end
    for sep in ("\n", " "):
        at = text.rfind(sep, low, limit)
        if at >= 0:
            return at + 1
    return limit


async def embed(texts: Sequence[str]) -> int:
    service = _service(":memory:")
    try:
        if service.embedder is None:
            print("the embedding model is not available", file=sys.stderr)
            return 1
        vectors = await service.embedder.embed(texts)
        json.dump([{"text": t, "embedding": [round(x, 6) for x in v]}
                   for t, v in zip(texts, vectors, strict=True)], sys.stdout)
        print()
        return 0
    finally:
        await _close(service)


def _store_problem(kb_file: Path) -> str | None:
    """Why `kb_file` cannot be a knowledge base file, when it is clear before opening it."""
    if kb_file.is_dir():
        return "it is a directory"
    if not kb_file.parent.is_dir():
        return f"the directory {kb_file.parent} does not exist"
    return None


def _open_service(kb_file: Path) -> Service | None:
    """The service over `kb_file`, or None after printing one line on why it cannot open."""
    problem = _store_problem(kb_file) if str(kb_file) != ":memory:" else None
    if problem is None:
        try:
            return _service(kb_file)
        except AgentError as exc:
            problem = exc.message.removeprefix(f"cannot open SQLite database {kb_file}: ")
    print(f"error: cannot open the knowledge base file {kb_file}: {problem}", file=sys.stderr)
    return None


async def ingest(paths: Sequence[Path], kb_file: Path, kb: str = DEFAULT_KB) -> int:
    """Add the documents under `paths` to `kb_file`, committing every few dozen passages.

    Exit status 2, before anything is written, when a path does not exist or the knowledge
    base file cannot be opened; files that are not text are skipped with a message."""
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"error: no such file or directory: {path}", file=sys.stderr)
    if missing:
        return 2
    service = _open_service(kb_file)
    if service is None:
        return 2
    service.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    reading = Reading()
    total = {"chunks_added": 0, "duplicates": 0}
    skipped: list[dict[str, str]] = reading.skipped
    progress = _Progress(reading, total, loop.time)
    saved = started
    try:
        batch: list[DocumentIn] = []
        size = 0
        for doc in iter_documents(paths, reading):
            batch.append(doc)
            size += len(doc.text)
            if len(batch) == DOCS_PER_BATCH or size >= BATCH_CHARS:
                await _ingest_batch(service, kb, batch, total, skipped, progress)
                batch, size = [], 0
                if loop.time() - saved >= INDEX_EVERY_S:
                    await service.library.save_index(kb)
                    saved = loop.time()
        if batch:
            await _ingest_batch(service, kb, batch, total, skipped, progress)
        # Not per batch: saving the whole BM25 index every few dozen documents made ingestion
        # quadratic. What a killed run had not saved is re-indexed when the KB opens.
        await service.library.save_index(kb)
    except AgentError as exc:
        print(f"error: {exc.message} ({exc.code.value})", file=sys.stderr)
        return 1
    finally:
        await _close(service)
    if reading.files == 0 and not skipped:
        print(f"warning: found no {' '.join(sorted(SUFFIXES))} files", file=sys.stderr)
    progress.show(force=True)
    seconds = loop.time() - started
    rate = total["chunks_added"] / seconds if seconds else 0.0
    print(json.dumps({"documents": reading.files, **total, "skipped": skipped, "kb": kb,
                      "file": str(kb_file), "seconds": round(seconds, 2),
                      "chunks_per_s": round(rate, 1)}))
    return 0


class _Progress:
    """Progress lines on stderr: at the first committed step, then every PROGRESS_S seconds."""

    def __init__(self, reading: Reading, total: dict[str, int],
                 clock: Callable[[], float]) -> None:
        self.reading, self.total, self.clock = reading, total, clock
        self.started = clock()
        self.last: float | None = None
        self.base = 0  # passages of the batches before the current one

    def step(self, done: int) -> None:
        self.total["chunks_added"] = self.base + done
        self.show()

    def show(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and self.last is not None and now - self.last < PROGRESS_S:
            return
        self.last = now
        r, passages = self.reading, self.total["chunks_added"]
        rate = passages / (now - self.started) if now > self.started else 0.0
        line = f"{r.files} documents, {passages} passages ({rate:.1f}/s)"
        if r.size > LARGE_FILE and r.current:
            line += f"; read {r.read_bytes / MB:.1f} of {r.size / MB:.1f} MB of {r.current}"
        print(line, file=sys.stderr, flush=True)


async def _ingest_batch(service: Service, kb: str, batch: list[DocumentIn],
                        total: dict[str, int], skipped: list[dict[str, str]],
                        progress: _Progress) -> None:
    progress.base = total["chunks_added"]
    report = await service.library.ingest(
        kb, batch, progress=lambda done, count, message: progress.step(done), index=False)
    total["chunks_added"] = progress.base + report.chunks_added
    total["duplicates"] += report.duplicates
    for item in report.skipped:
        skipped.append(item)
        print(f"skipped {item['source']}: {item['reason']}", file=sys.stderr)


async def export(kb_file: Path, kb: str, out: Path) -> int:
    """Write knowledge base `kb` of a KB file as the dump a browser installs from
    `kb/<name>.kv` (the widget's `data-kb`, or the app's shipped default)."""
    from ..knowledge.dump import dump_kb
    from .sql import SqliteStore

    problem = _store_problem(kb_file)
    try:
        if problem is not None:
            raise AgentError(ErrorCode.STORAGE, problem)
        store = SqliteStore(kb_file)
    except AgentError as exc:
        problem = exc.message.removeprefix(f"cannot open SQLite database {kb_file}: ")
        print(f"error: cannot open the knowledge base file {kb_file}: {problem}",
              file=sys.stderr)
        return 2
    try:
        data = await dump_kb(store, kb)
    except AgentError as exc:
        print(f"error: {exc.message} ({exc.code.value})", file=sys.stderr)
        return 1
    finally:
        store.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(json.dumps({"kb": kb, "file": str(out), "bytes": len(data)}))
    return 0


async def ask(question: str, kb_file: Path, *, kb: str | None = None, as_json: bool = False,
              top_k: int = 5) -> int:
    events: list[dict[str, Any]] = []
    service = _open_service(kb_file)
    if service is None:
        return 2
    agent = service.connect(lambda event: events.append(event.to_wire()))
    service.start()
    # Open the knowledge base while the model sessions are still being created and the
    # question is routed: the retrieval step then finds it open (one load, under the library's
    # lock). A failure here is left to the retrieval step to report.
    opening = asyncio.get_running_loop().create_task(_open_kb(service, kb or DEFAULT_KB))
    try:
        agent.submit(Ask("cli", question, kb=kb or None, top_k=top_k).to_wire())
        await agent.drain()
    finally:
        opening.cancel()
        await asyncio.gather(opening, return_exceptions=True)
        await _close(service)
    return _print_answer(events, as_json)


async def _open_kb(service: Service, name: str) -> None:
    with contextlib.suppress(AgentError):
        await service.library.fresh(name)


def _print_answer(events: list[dict[str, Any]], as_json: bool) -> int:
    final = events[-1]
    if final["type"] == "error":
        print(f"error: {final['message']} ({final['code']})", file=sys.stderr)
        return 1
    answer = next(e for e in events if e["type"] == "answer")
    if as_json:
        json.dump({"answer": answer["text"], "citations": answer["citations"],
                   "route": answer["route"], "confident": answer["confident"],
                   "timings_ms": answer["timings_ms"]}, sys.stdout, ensure_ascii=False)
        print()
        return 0
    print(answer["text"])
    for n, c in enumerate(answer["citations"], 1):
        anchor = f"#{c['anchor']}" if c["anchor"] else ""
        print(f"  [{n}] {c['source']}{anchor} — {c['title']} (score {c['score']:.3f})")
    return 0
