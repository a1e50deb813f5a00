"""Text handling: token-counter data shipped with the package.

``encodings/`` holds the two tiktoken encodings most LLMs of OpenAI's API count
in (``cl100k_base``, ``o200k_base``), verified against tiktoken's own sha256, so
that :class:`ragprune.TiktokenCounter` works offline with only ``tiktoken``
installed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ENCODINGS_DIR"]

ENCODINGS_DIR = Path(__file__).resolve().parent / "encodings"
