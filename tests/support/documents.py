"""A small user's guide the service tests ingest: two pages whose answers the tests know
(Python/Node requirements, offline use) and a release note added later."""

from __future__ import annotations

GUIDE = [
    {"source": "guide/install.md", "text": "# Install\n\n## Requirements\n\nYou need Python 3.11 "
     "or newer and Node 20 or newer.\n\n## Steps\n\nRun ./build.sh serve and open the printed "
     "address in a browser."},
    {"source": "guide/faq.rst", "text": "FAQ\n===\n\nDoes it work offline?\n----------------------"
     "\n\nYes. After the first visit a service worker keeps every file cached."},
]
NOTES = {"source": "notes.txt", "text": "Release notes\n\nVersion 0.1 adds citations to every "
         "answer."}
