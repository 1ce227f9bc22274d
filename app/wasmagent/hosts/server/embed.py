"""Which sites may embed the widget: the site owner's allowlist of host origins.

One list per deployment: `dist/embed.json` (`{"origins": [...]}`, written by the build from
`EMBED_ORIGINS`), or the `--embed-origin URL` options of `python -m wasmagent serve`, which
replace it. It is enforced twice:
- the static server sends `Content-Security-Policy: frame-ancestors 'self' <origins>` on the
  widget's frame page (`embed.html`), so browsers refuse to render it inside any other site;
- the frame checks its parent's origin (and every ancestor's) against the same list, served
  as `/embed.json`, before it talks to the host page or boots the agent. Its first page
  (`embed-gate.html`, which any site may frame) shows a refused site a clear message instead
  of the browser's blank blocked frame.

An origin is `scheme://host[:port]` (http or https, no path); the host may start with `*.` for
any subdomain (not the domain itself), as in CSP; `*` alone allows every site. The app's own
origin is always allowed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

_ORIGIN = re.compile(
    r"(https?)://(\*\.)?([a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*"
    r"|\[[0-9a-f:.]+\])(?::(\d{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """`text` as a canonical origin (lower case, no slash, no default port), or ValueError."""
    value = text.strip().lower().removesuffix("/")
    if value == "*":
        return value
    match = _ORIGIN.fullmatch(value)
    if match is None:
        raise ValueError(f"{text!r} is not an origin such as https://shop.example, "
                         "http://localhost:8080 or https://*.example.com")
    scheme, wildcard, host, port = match.groups()
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} has no valid port")
    shown_port = "" if port is None or int(port) == _DEFAULT_PORTS[scheme] else f":{int(port)}"
    return f"{scheme}://{wildcard or ''}{host}{shown_port}"


def normalize_origins(texts: Iterable[str]) -> list[str]:
    """Every origin normalized, duplicates dropped, order kept; ValueError names a bad one."""
    return list(dict.fromkeys(normalize_origin(t) for t in texts))


def read_origins(path: Path) -> list[str]:
    """The allowlist in an `embed.json` file; a missing file allows no other site."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    origins = data.get("origins") if isinstance(data, dict) else None
    if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
        raise ValueError(f"{path}: expected {{\"origins\": [\"https://...\", ...]}}")
    return normalize_origins(origins)


def frame_ancestors(origins: Iterable[str]) -> str:
    """The CSP directive that lets exactly these sites (and the app itself) frame a page."""
    return " ".join(["frame-ancestors", "'self'", *origins])


def config_json(origins: Iterable[str]) -> bytes:
    """The body of `/embed.json`, which the frame reads to check its parent."""
    return json.dumps({"origins": list(origins)}).encode()
