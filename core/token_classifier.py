"""Moved to :mod:`ragprune.stages.token_classifier`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
