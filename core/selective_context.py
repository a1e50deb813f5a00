"""Moved to :mod:`ragprune.stages.selective_context`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
