"""Moved to :mod:`ragprune.training.distill_cli`; this path will be removed in the next release."""

from ._moved import alias

alias(__name__)
