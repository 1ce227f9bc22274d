"""Query-side normalisation: the words a user types mapped onto the words documentation uses.

Only the query is rewritten, never the indexed text, so knowledge bases saved before a change
here stay valid. `expand_query` appends, it never removes: the user's own words still count.

- Everyday synonyms of programming terms ("folder" is a "directory", "delete" a "remove").
- A small glossary of common programming words in German, Spanish, French, Italian and
  Portuguese, so a question in one of those languages still meets English documentation
  through BM25 (the embedding model is English-only).
- Error messages and markup pasted as questions: `Errno 2`, quotes, `<img src=...>` and the
  like are noise (`clean_query`, which ranking and answering use too); the exception name and
  the message's words are what match.
"""

from __future__ import annotations

import re

# Everyday word -> the word documentation tends to use. Kept general: nothing here is about one
# knowledge base.
SYNONYMS: dict[str, str] = {
    "folder": "directory", "folders": "directories", "delete": "remove", "erase": "remove",
    "rename": "move", "kill": "terminate", "quit": "exit", "cores": "processes",
    "cpus": "processes", "parallel": "concurrent", "download": "urlopen", "webpage": "url",
    "website": "url", "today": "date", "todays": "date", "timestamp": "time",
    "pause": "sleep", "dictionary": "dict", "dictionaries": "dict", "hashmap": "dict",
    "lowercase": "lower", "uppercase": "upper", "pretty": "pprint", "unzip": "extract",
    "compress": "compression", "md5": "hashlib", "sha256": "hashlib", "password": "getpass",
    "config": "configuration", "settings": "configuration", "crash": "traceback",
    "stacktrace": "traceback", "debugger": "pdb", "slow": "performance",
    "speed": "performance", "benchmark": "timeit", "env": "environment", "args": "arguments",
    "kwargs": "keyword", "nan": "isnan", "average": "mean", "commandline": "command",
}

# Common programming words in other languages -> English (lower case, accents kept).
GLOSSARY: dict[str, str] = {
    # German
    "datei": "file", "dateien": "files", "lesen": "read", "lese": "read", "liest": "read",
    "schreiben": "write", "zeile": "line", "zeilen": "lines", "liste": "list",
    "sortieren": "sort", "sortiere": "sort", "erstellen": "create", "erstelle": "create",
    "erzeugen": "generate", "virtuelle": "virtual", "umgebung": "environment",
    "reguläre": "regular", "ausdrücke": "expressions", "zufallszahl": "random number",
    "zahl": "number", "zwischen": "between", "einlesen": "read load", "verzeichnis": "directory",
    "ordner": "directory", "fehler": "error", "ausnahme": "exception", "klasse": "class",
    "funktion": "function", "zeichenkette": "string", "wörterbuch": "dict",
    # Spanish
    "archivo": "file", "archivos": "files", "leer": "read", "leo": "read", "escribir": "write",
    "fecha": "date", "hora": "time", "actual": "current now", "excepciones": "exceptions",
    "excepción": "exception", "manejo": "handle", "diccionario": "dict", "lista": "list",
    "ejecutar": "run execute", "comando": "command", "sistema": "system", "cadena": "string",
    "ordenar": "sort", "crear": "create", "clase": "class", "función": "function",
    "número": "number", "aleatorio": "random", "línea": "line", "carpeta": "directory",
    # French
    "fichier": "file", "fichiers": "files", "lire": "read", "écrire": "write",
    "créer": "create", "trier": "sort", "dictionnaire": "dict", "valeur": "value",
    "expressions": "expressions", "régulières": "regular", "chaîne": "string",
    "erreur": "error", "dossier": "directory", "nombre": "number",
    "aléatoire": "random", "ligne": "line", "fonction": "function",
    # Italian and Portuguese
    "legge": "read", "leggere": "read", "testo": "text", "scrivere": "write",
    "criar": "create", "ler": "read", "arquivo": "file", "escrever": "write",
    "dicionário": "dict", "classe": "class", "texto": "text",
}

_ERRNO = re.compile(r"\[?errno \d+\]?", re.I)
_MARKUP = re.compile(r"<[^<>]{0,400}>")
_QUOTES = re.compile(r"[\"'`‘’“”«»¿¡]")
_WORD = re.compile(r"[^\W\d_][\w]*", re.UNICODE)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def clean_query(query: str) -> str:
    """The question without what is not its content: pasted markup (`<img src=...>`), errno
    numbers and quotes. Falls back to the raw text if nothing would be left."""
    text = _QUOTES.sub(" ", _ERRNO.sub(" ", _MARKUP.sub(" ", query)))
    return text if text.strip() else query


def expand_query(query: str) -> str:
    """The cleaned query with mapped words appended (see the module docstring)."""
    text = clean_query(query)
    extra: list[str] = []
    for word in _WORD.findall(text):
        low = word.lower()
        mapped = SYNONYMS.get(low) or GLOSSARY.get(low)
        if mapped and mapped != low:
            extra.append(mapped)
        if low.endswith(("error", "exception", "warning")) and _CAMEL.search(word):
            # "ModuleNotFoundError" also matches prose that says "module not found".
            extra.append(_CAMEL.sub(" ", word).lower())
    return f"{text} {' '.join(extra)}" if extra else text


CHANGES = re.compile(r"\b(?:new|changed?|changes|added|removed|deprecated|version|since|"
                     r"release|introduced|\d+\.\d+)\b", re.I)


def asks_about_changes(query: str) -> bool:
    """Whether the question is about versions or changes (then release notes may answer)."""
    return bool(CHANGES.search(query))
