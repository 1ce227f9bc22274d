"""Query-side normalisation: the words a user types mapped onto the words documentation uses.

Only the query is rewritten, never the indexed text, so knowledge bases saved before a change
here stay valid. `expand_query` appends, it never removes an English question's words: the
user's own words still count.

- Everyday synonyms of programming terms ("folder" is a "directory", "delete" a "remove").
- A small glossary of common programming words in German, Spanish, French, Italian and
  Portuguese, so a question in one of those languages still meets English documentation
  through BM25 (the embedding model is English-only).
- A question in one of those languages (`is_foreign`: it holds a glossary word) also loses its
  function words ("wie", "para", "un", "comment"…) and the glossary words themselves, which
  are replaced by their English: in English documentation such words are rare, so BM25 would
  weigh them far above the words that matter ("para" or "en" match odd pages, "list" none).
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
    # Common verbs and nouns of how-to questions, in all five
    "ausführen": "run execute", "befehl": "command", "schleife": "loop", "umwandeln": "convert",
    "konvertieren": "convert", "aktuelle": "current", "aktuellen": "current", "uhrzeit": "time",
    "zeit": "time", "löschen": "remove delete", "kopieren": "copy", "prüfen": "check",
    "überprüfen": "check", "suchen": "search find", "finden": "find", "ersetzen": "replace",
    "teilen": "split", "wert": "value", "schlüssel": "key", "objekt": "object",
    "paket": "package", "installieren": "install", "ausgeben": "print", "eingabe": "input",
    "ausgabe": "output", "warten": "wait sleep", "sekunden": "seconds",
    "convertir": "convert", "obtener": "get", "eliminar": "remove delete", "borrar": "remove",
    "copiar": "copy", "buscar": "search find", "reemplazar": "replace", "dividir": "split",
    "valor": "value", "clave": "key", "objeto": "object", "paquete": "package",
    "instalar": "install", "imprimir": "print", "entrada": "input", "salida": "output",
    "esperar": "wait sleep", "segundos": "seconds", "bucle": "loop", "hilo": "thread",
    "entorno": "environment",
    "obtenir": "get", "supprimer": "remove delete", "chercher": "search find",
    "remplacer": "replace", "diviser": "split", "clé": "key", "objet": "object",
    "afficher": "print display", "attendre": "wait sleep", "secondes": "seconds",
    "boucle": "loop", "environnement": "environment", "heure": "time",
    "répertoire": "directory", "exécuter": "run execute", "commande": "command",
    "convertire": "convert", "ottenere": "get", "eliminare": "remove delete",
    "cercare": "search find", "sostituire": "replace", "dividere": "split", "chiave": "key",
    "oggetto": "object", "pacchetto": "package", "stampare": "print", "ciclo": "loop",
    "eseguire": "run execute", "elenco": "list", "cartella": "directory",
    "converter": "convert", "obter": "get", "excluir": "remove delete", "apagar": "remove",
    "procurar": "search find", "substituir": "replace", "chave": "key", "pacote": "package",
    "executar": "run execute", "pasta": "directory", "laço": "loop",
}
ENGLISH_TOO = frozenset({"actual", "expressions"})
"""Glossary words that are English too: they do not make a question foreign."""

# Function words of those languages, dropped from a question in one of them (never from an
# English one: "comment", "come" or "leo" are English words too).
FOREIGN_STOPWORDS = frozenset("""
wie ich eine einen einem einer ein der die das den dem des und oder für mit von zu ist mein
meine auf aus nicht kann man mir mich was wo
cómo como qué que el la los las un una unos unas de del en y o para por con mi mis se desde al
lo es obtengo hago puedo
comment le les une des du et ou pour avec dans mon ma mes est qui sur je faire
il gli di da per mio che posso
faço fazer os as um uma do da em no na com meu posso""".split())  # noqa: SIM905

_ERRNO = re.compile(r"\[?errno \d+\]?", re.I)
_MARKUP = re.compile(r"<[^<>]{0,400}>")
_QUOTES = re.compile(r"[\"'`‘’“”«»¿¡]")
_WORD = re.compile(r"[^\W\d_][\w]*", re.UNICODE)
_WORD_OR_NUMBER = re.compile(r"[\w.]+", re.UNICODE)
# Words that say how the user feels about an answer, not what it is about. Documentation rarely
# uses them, so BM25 weighs them as rare and telling ("whats" stems to "what", idf 9.4 over the
# Python docs), and they pull in whichever page happens to say "easiest" or "proper".
_FILLER = re.compile(r"\b(?:whats|easiest|simplest|quickest|best|proper|properly|correct|"
                     r"correctly|possible|recommended|idiomatic|pythonic|sure|easy|easily|"
                     r"good|nice)\b", re.I)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def clean_query(query: str) -> str:
    """The question without what is not its content: pasted markup (`<img src=...>`), errno
    numbers, quotes and filler words ("whats the easiest way"). Falls back to the raw text if
    nothing would be left."""
    text = _QUOTES.sub(" ", _ERRNO.sub(" ", _MARKUP.sub(" ", query)))
    text = _FILLER.sub(" ", text)
    return text if text.strip() else query


def is_foreign(query: str) -> bool:
    """Whether the question is in one of the glossary's languages (it holds a glossary word)."""
    return any(w.lower() in GLOSSARY and w.lower() not in ENGLISH_TOO for w in _WORD.findall(query))


def expand_query(query: str) -> str:
    """The cleaned query with mapped words appended; a foreign question's function words and
    glossary words replaced (see the module docstring)."""
    text = clean_query(query)
    if is_foreign(text):
        kept = [w for w in _WORD_OR_NUMBER.findall(text)
                if w.lower() not in FOREIGN_STOPWORDS and w.lower() not in GLOSSARY]
        text = " ".join(kept + [GLOSSARY[w.lower()] for w in _WORD.findall(text)
                                if w.lower() in GLOSSARY])
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
