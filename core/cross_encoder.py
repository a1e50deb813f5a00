"""Moved to :mod:`ragprune.stages.cross_encoder`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
