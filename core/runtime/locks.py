"""Locks that pickling leaves out (and a copy gets anew): around a non-re-entrant tokenizer, a counter."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["TokenizerLock"]

_LOCK_TYPE = type(threading.Lock())


class TokenizerLock:
    """Mixin: ``self._lock`` guards calls into a fast tokenizer (they are not re-entrant);
    a pickled or copied object gets fresh locks in place of every lock it held."""

    _lock: threading.Lock

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        locks = [name for name, value in state.items() if isinstance(value, _LOCK_TYPE)]
        for name in locks:
            del state[name]
        state["__locks__"] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop("__locks__", ["_lock"])
        self.__dict__.update(state)
        for name in locks:
            setattr(self, name, threading.Lock())
