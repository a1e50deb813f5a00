"""A lock around a non-re-entrant tokenizer that pickling leaves out (and a copy gets anew)."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TokenizerLock"]


class TokenizerLock:
    """Mixin: ``self._lock`` guards calls into a fast tokenizer (they are not re-entrant);
    a pickled or copied object gets a fresh lock."""

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
