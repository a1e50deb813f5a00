"""Pluggable token counting: words, whitespace, Hugging Face tokenizers, tiktoken."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import threading
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..runtime.locks import TokenizerLock
from . import ENCODINGS_DIR
from .segment import split_space, word_spans

__all__ = [
    "TokenCounter",
    "WordCounter",
    "WhitespaceCounter",
    "HFTokenizerCounter",
    "TiktokenCounter",
    "CallableCounter",
    "get_counter",
]


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens in the target LLM's tokenizer."""

    name: str

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...


class _Base:
    name = "base"

    def count(self, text: str) -> int:
        raise NotImplementedError

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count(t) for t in texts]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


SHIPPED_ENCODINGS = ("cl100k_base", "o200k_base")
"""tiktoken encodings whose files ship inside ragprune (``ragprune/text/encodings``)."""


class WordCounter(_Base):
    """One token per word, punctuation mark, emoji, or character of an unspaced
    script (Chinese, Japanese).  Dependency-free; the default."""

    name = "words"

    def count(self, text: str) -> int:
        if not text.strip():
            return 0
        return sum(1 for a, b in word_spans(text) if text[a:b].strip())


class WhitespaceCounter(_Base):
    """One token per whitespace-separated chunk."""

    name = "whitespace"

    def count(self, text: str) -> int:
        return len(split_space(text))


class CallableCounter(_Base):
    """Wraps ``fn(text) -> int``."""

    def __init__(self, fn: Callable[[str], int], name: str | None = None) -> None:
        self._fn = fn
        self.name = str(name or getattr(fn, "__name__", "callable"))

    def count(self, text: str) -> int:
        return int(self._fn(text))


class HFTokenizerCounter(TokenizerLock, _Base):
    """Counts with a Hugging Face tokenizer (object, local path or hub id).

    Special tokens are not counted.  A path or id is loaded with
    ``local_files_only=True`` unless ``local_files_only=False`` is passed.
    """

    def __init__(self, tokenizer: Any, *, local_files_only: bool = True) -> None:
        if isinstance(tokenizer, (str, os.PathLike)):
            from ..runtime.loading import load_tokenizer

            tokenizer = load_tokenizer(str(tokenizer), local_files_only=local_files_only)
        self._tok = tokenizer
        self._lock = threading.Lock()  # fast tokenizers are not re-entrant
        self.name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        with self._lock:
            enc = self._tok(list(texts), add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in enc]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]


def _tiktoken_cache_dirs(cache_dir: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    if cache_dir is not None:
        dirs.append(Path(cache_dir))
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    if env:
        dirs.append(Path(env))
    # llama-index-core ships cl100k_base and o200k_base in its wheel.
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            dirs.append(Path(loc) / "_static" / "tiktoken_cache")
    return dirs


TIKTOKEN_HINT = "pip install 'ragprune[tiktoken]'"
"""What to install for tiktoken counters (the ``models`` extra includes it too)."""


def _openai_encodings() -> dict[str, Any]:
    """tiktoken's table of encoding constructors, or one clear ImportError."""
    try:
        from tiktoken_ext import openai_public
    except ImportError as e:
        raise ImportError(f"tiktoken token counters (cl100k_base, o200k_base, ...) need tiktoken: "
                          f"{TIKTOKEN_HINT}") from e
    return dict(openai_public.ENCODING_CONSTRUCTORS)


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


class TiktokenCounter(_Base):
    """Counts with a tiktoken encoding, loaded from local files only.

    The encoding file is looked up in ``cache_dir``, then ``$TIKTOKEN_CACHE_DIR``,
    then the copies shipped inside ragprune (``cl100k_base``, ``o200k_base``) and
    inside ``llama-index-core``; every file is checked against tiktoken's sha256.  When none has it a
    ``FileNotFoundError`` says where it looked; nothing is downloaded unless
    ``allow_download=True``.  An ``Encoding`` object may be passed instead of a name.
    """

    def __init__(
        self,
        encoding: str | Any = "cl100k_base",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
    ) -> None:
        try:
            import tiktoken
        except ImportError as e:
            raise ImportError(f"TiktokenCounter needs tiktoken: {TIKTOKEN_HINT}") from e
        if not isinstance(encoding, str):
            self._enc = encoding
        else:
            self._enc = self._load(tiktoken, encoding, cache_dir, allow_download)
        self.name = self._enc.name

    @staticmethod
    def _load(tiktoken: Any, name: str, cache_dir: Any, allow_download: bool) -> Any:
        constructors = _openai_encodings()
        ctor = constructors.get(name)
        if ctor is None:
            valid = ", ".join(sorted(constructors))
            raise ValueError(f"unknown tiktoken encoding {name!r}; valid: {valid}")
        dirs = _tiktoken_cache_dirs(cache_dir)

        def local_loader(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
            key = hashlib.sha1(url.encode()).hexdigest()
            shipped = ENCODINGS_DIR / url.rsplit("/", 1)[-1]
            for path in [d / key for d in dirs] + [shipped]:
                if path.is_file():
                    data = path.read_bytes()
                    if expected_hash and hashlib.sha256(data).hexdigest() != expected_hash:
                        continue
                    return _parse_bpe(data)
            raise FileNotFoundError(
                f"tiktoken encoding {name!r} is not available offline: no file {key} "
                f"(cached from {url}) in {[str(d) for d in dirs] or 'any cache dir'}. "
                "Pass cache_dir=, set TIKTOKEN_CACHE_DIR, install llama-index-core "
                "(which ships cl100k_base and o200k_base), or pass allow_download=True."
            )

        # Call the encoding's own constructor with the loader rebound to ours,
        # without patching any module.
        offline_ctor = types.FunctionType(
            ctor.__code__, {**ctor.__globals__, "load_tiktoken_bpe": local_loader}, ctor.__name__
        )
        try:
            params = offline_ctor()
        except FileNotFoundError:
            if not allow_download:
                raise
            return tiktoken.get_encoding(name)
        return tiktoken.Encoding(**params)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self._enc.encode_ordinary_batch(list(texts))]

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))


def _counter_from_name(s: str) -> TokenCounter:
    """A local tokenizer directory or a tiktoken encoding name."""
    if Path(s).is_dir():
        return HFTokenizerCounter(s)
    if s in SHIPPED_ENCODINGS:
        return TiktokenCounter(s)
    constructors = _openai_encodings()  # light: a dict of constructors
    if s in constructors:
        return TiktokenCounter(s)
    raise ValueError(
        f"unknown token counter {s!r}: use 'words', 'whitespace', a tiktoken encoding "
        f"({', '.join(sorted(constructors))}), a local tokenizer "
        "directory, a tokenizer object, or a callable"
    )


def _counter_from_object(spec: Any) -> TokenCounter:
    """A token counter, a tiktoken ``Encoding``, a tokenizer object or a callable ``text -> int``."""
    if isinstance(spec, TokenCounter) and hasattr(spec, "count_many"):
        return spec
    if type(spec).__name__ == "Encoding" and hasattr(spec, "encode_ordinary"):
        return TiktokenCounter(spec)
    if hasattr(spec, "convert_tokens_to_ids") and callable(spec):
        return HFTokenizerCounter(spec)
    if callable(spec):
        return CallableCounter(spec)
    raise TypeError(f"cannot make a token counter from {type(spec).__name__}")


def get_counter(spec: Any = None) -> TokenCounter:
    """Turn ``spec`` into a token counter.

    ``None`` or ``"words"``: :class:`WordCounter`; ``"whitespace"``; a tiktoken
    encoding name (``"cl100k_base"``, ``"o200k_base"``, ...); an existing local
    directory: its Hugging Face tokenizer; a tokenizer object, a tiktoken
    ``Encoding``, a ``TokenCounter``, or a callable ``text -> int``.
    """
    if spec is None or spec == "words":
        return WordCounter()
    if spec == "whitespace":
        return WhitespaceCounter()
    if isinstance(spec, (str, os.PathLike)):
        return _counter_from_name(str(spec))
    return _counter_from_object(spec)
