"""Knowledge bases: chunks + lexical index + vectors, searched together and kept in a Store."""

from .kb import Hit, KnowledgeBase
from .library import Library

__all__ = ["Hit", "KnowledgeBase", "Library"]
