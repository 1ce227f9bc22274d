"""`wasmagent ingest` on bad input, run as a subprocess: missing paths, knowledge base files
that cannot be opened, binary files, UTF-16 and BOMs, and large files (bounded memory,
progress lines, commits as it goes); a knowledge base file opens with one bulk read."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from wasmagent.hosts import cli_commands
from wasmagent.hosts.sql import SqliteStore
from wasmagent.knowledge.kb import KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
RUN = [sys.executable, "-m", "wasmagent"]
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256)) * 4
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(range(256)) * 4


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUN, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, check=False)


def _one_clear_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    for word in words:
        assert word in lines[0], proc.stderr


def _passages(db: Path, name: str = "default") -> list[str]:
    async def load() -> list[str]:
        store = SqliteStore(db)
        try:
            kb = await KnowledgeBase.load(store, name, None)
            return [] if kb is None else [c.text for c in kb.chunks]
        finally:
            store.close()

    return asyncio.run(load())


def test_a_missing_path_fails_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("A real document with enough words in it.")
    db = tmp_path / "kb.sqlite"
    missing = tmp_path / "no" / "such.md"
    proc = _cli("ingest", str(tmp_path / "real.txt"), str(missing), "--kb", str(db))
    _one_clear_line(proc, str(missing))
    assert proc.stdout == ""
    assert not db.exists()  # nothing was opened, let alone half-ingested


def test_a_knowledge_base_file_that_cannot_be_opened_fails_with_one_line(
        tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text("A small document with enough words in it to be a passage.")
    not_sqlite = tmp_path / "notes.sqlite"
    not_sqlite.write_text("these are notes, not a SQLite database, " * 40)
    cases = {tmp_path: "directory", tmp_path / "nowhere" / "kb.sqlite": "does not exist",
             not_sqlite: "not a database"}
    for kb_file, why in cases.items():
        proc = _cli("ingest", str(doc), "--kb", str(kb_file))
        _one_clear_line(proc, str(kb_file), why)
    assert not (tmp_path / "nowhere").exists()
    assert not_sqlite.read_text().startswith("these are notes")  # untouched
    _one_clear_line(_cli("ask", "what?", "--kb", str(not_sqlite)), "not a database")


def test_binary_files_are_skipped_and_utf16_and_boms_are_decoded(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "plain.txt").write_text("Plain notes\n\nThe lighthouse keeper feeds the cat at dawn.")
    (docs / "notes.txt").write_bytes(PNG)  # an image with a text file's name
    (docs / "tool.md").write_bytes(ELF)
    (docs / "nul.rst").write_bytes(b"Title\n=====\n\nsome text\x00\x00\x01\x02" * 50)
    texts = {"le.txt": ("utf-16-le", "The harbour ferry leaves at nine o'clock every morning."),
             "be.md": ("utf-16-be", "# Ferry\n\nThe return ferry is free for cyclists on Sundays."),
             "bom.txt": ("utf-8", "Café opening hours: the café opens at seven, naïvely early.")}
    for name, (codec, text) in texts.items():
        (docs / name).write_bytes({"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
                                   "utf-8": b"\xef\xbb\xbf"}[codec] + text.encode(codec))
    db = tmp_path / "kb.sqlite"
    proc = _cli("ingest", str(docs), "--kb", str(db))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    reasons = {s["source"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"notes.txt", "tool.md", "nul.rst"}, report
    assert "PNG" in reasons["notes.txt"]
    assert "ELF" in reasons["tool.md"]
    assert "binary" in reasons["nul.rst"]
    for source, reason in reasons.items():
        assert f"skipped {source}: {reason}" in proc.stderr
    assert report["documents"] == 4
    passages = _passages(db)
    assert len(passages) == 4
    assert "The harbour ferry leaves at nine o'clock every morning." in passages
    assert "The return ferry is free for cyclists on Sundays." in passages
    assert "Café opening hours: the café opens at seven, naïvely early." in passages
    assert not any("\ufffd" in p or "\ufeff" in p or "\x00" in p for p in passages)
    out = _cli("ask", "--kb", str(db), "when does the harbour ferry leave?", "--json")
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["citations"][0]["source"] == "le.txt"
    assert "nine o'clock" in answer["answer"]
    # The process ends without the interpreter's teardown (`cli.run`), after closing the file
    # itself: SQLite folded its write-ahead log back in (the ask recorded history) and removed it.
    assert not Path(f"{db}-wal").exists()


def test_an_explicit_file_of_an_unsupported_type_is_reported(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(PNG)
    proc = _cli("ingest", str(image), "--kb", str(tmp_path / "kb.sqlite"))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(proc.stdout)["skipped"][0]["source"] == "photo.png"
    assert "skipped photo.png: unsupported file type '.png'" in proc.stderr


def test_large_files_are_read_in_parts_on_paragraph_boundaries(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    paragraphs = [f"Paragraph {n} says something about topic {n}." for n in range(60_000)]
    big.write_text("\n\n".join(paragraphs), encoding="utf-16")
    reading = cli_commands.Reading()
    parts = 0
    joined: list[str] = []
    for doc in cli_commands.iter_documents([big], reading):
        parts += 1
        assert len(doc.text) <= cli_commands.PART_CHARS
        assert doc.text.startswith("Paragraph ")  # cut between paragraphs
        joined.append(doc.text.strip())
    assert big.stat().st_size > cli_commands.LARGE_FILE  # so it was read in parts
    assert parts > 1
    assert reading.files == 1
    assert not reading.skipped
    assert "\n\n".join(joined) == "\n\n".join(paragraphs)


def _write_text(path: Path, size: int) -> None:
    rng = random.Random(7)
    words = ["lighthouse", "harbour", "ferry", "engine", "garden", "castle", "river",
             "library", "window", "music", "theory", "station", "bridge", "market"]
    with path.open("w") as out:
        written, n = 0, 0
        while written < size:
            para = " ".join(f"{' '.join(rng.choices(words, k=rng.randint(6, 14))).capitalize()} "
                            f"{n}-{k}." for k in range(5))
            out.write(para + "\n\n")
            written += len(para) + 2
            n += 1


def _peak_at_first_progress(path: Path, db: Path) -> tuple[int, str]:
    """Ingest `path` until the first progress line, then kill it: (peak RSS in kB, stderr)."""
    with subprocess.Popen([*RUN, "ingest", str(path), "--kb", str(db)], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        safety_net = threading.Timer(240, proc.kill)  # on a busy machine; readline then ends
        safety_net.start()
        lines: list[str] = []
        peak = 0
        while True:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if " passages (" in line:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                peak = int(status.split("VmHWM:")[1].split()[0])
                break
        safety_net.cancel()
        proc.send_signal(signal.SIGKILL)  # a crash: what was committed must stay
        proc.wait()
    return peak, "".join(lines)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_large_file_streams_in_bounded_memory_with_progress_and_commits_as_it_goes(
        tmp_path: Path) -> None:
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    _write_text(small, cli_commands.PART_CHARS)
    _write_text(large, 12 * cli_commands.MB)
    small_peak, _ = _peak_at_first_progress(small, tmp_path / "small.sqlite")
    db = tmp_path / "large.sqlite"
    large_peak, stderr = _peak_at_first_progress(large, db)
    assert "Traceback" not in stderr
    # The first passages are embedded and committed long before the file is read to its end.
    assert f"of {12.0:.1f} MB of {large}" in stderr, stderr
    passages = _passages(db)
    assert len(passages) >= 64, stderr
    # Twelve times the text costs no more than the batch of text read ahead (BATCH_CHARS),
    # not the whole file chunked at once (~8x its size, as before).
    growth_mb = (large_peak - small_peak) / 1024
    print(f"peak RSS at the first progress line: {small_peak // 1024} MB (1 MB file), "
          f"{large_peak // 1024} MB (12 MB file)")
    assert growth_mb < 60, (small_peak, large_peak)
    assert os.path.getsize(large) > 3 * cli_commands.BATCH_CHARS


def test_a_sqlite_knowledge_base_opens_with_one_bulk_read(tmp_path: Path) -> None:
    from wasmagent.knowledge.library import Library
    from wasmagent.protocol import DocumentIn

    async def run() -> None:
        store = SqliteStore(tmp_path / "kb.sqlite")
        try:
            await store.put("a", b"1")
            await store.put("c", b"3")
            assert await store.get_many(["c", "b", "a"]) == [b"3", None, b"1"]
            docs = [DocumentIn(f"p{i}.md", f"# Page {i}\n\nZebra {i} eats hay and grass. " * 5,
                               "markdown") for i in range(30)]
            await Library(store, None, None).ingest("kb", docs)
            gets: list[str] = []
            many: list[int] = []
            plain_get, plain_many = store.get, store.get_many

            async def get(key: str) -> bytes | None:
                gets.append(key)
                return await plain_get(key)

            async def get_many(keys: list[str]) -> list[bytes | None]:
                many.append(len(keys))
                return await plain_many(keys)

            store.get, store.get_many = get, get_many  # type: ignore[method-assign]
            kb = await KnowledgeBase.load(store, "kb", None)
            assert kb is not None
            assert len(kb) == 30
            assert gets == ["kb/kb/meta"]  # the meta, then the rest in one call
            assert len(many) == 1
            assert kb.chunks[kb.lexical.search("zebra 7", 1)[0][0]].source == "p7.md"
        finally:
            store.close()

    asyncio.run(run())
