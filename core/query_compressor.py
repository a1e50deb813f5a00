"""Moved to :mod:`ragprune.stages.query_compressor`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
