"""Answers from retrieved chunks: extractive, grounded, cited — or an honest "I don't know"."""

from .extractive import I_DONT_KNOW, ComposedAnswer, compose_answer

__all__ = ["I_DONT_KNOW", "ComposedAnswer", "compose_answer"]
