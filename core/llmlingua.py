"""Moved to :mod:`ragprune.stages.llmlingua`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
