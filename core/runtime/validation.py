"""Argument validation shared by every constructor (stdlib and numpy only; imports no model code).

The same rules everywhere:

* a value of the wrong **type** (a bool where a number is expected, a str, ``None``
  where ``None`` is not allowed) raises :class:`TypeError`;
* a value of the right type but **out of range**, or NaN, raises :class:`ValueError`;
* numpy integer and floating scalars are accepted (:class:`numbers.Integral` /
  :class:`numbers.Real`, never ``bool``) and returned as plain ``int`` / ``float``;
* every message names the argument and shows the value with ``repr``, e.g.
  ``"top_n must be an int >= 0, got -1"`` or
  ``"threshold must be a real number, got 'x' (str)"``.

Infinity: :func:`check_number` takes ``+inf`` / ``-inf`` as in range only where the
range allows it, i.e. on a side with no bound (``max=None`` / ``min=None``) or an
inclusive infinite bound; ``finite=True`` rejects both in any case.  NaN is always
rejected.

A renamed keyword is resolved with :func:`renamed`: the old name keeps working for
one release with a :class:`DeprecationWarning`, and giving both names is a
:class:`TypeError`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Iterable
from typing import Any, Literal, TypeVar, overload

__all__ = ["check_choice", "check_int", "check_number", "check_rate", "check_target", "renamed"]

_T = TypeVar("_T")


def _shown(value: object) -> str:
    """``repr`` of a value of the wrong type, with its type name."""
    return "None" if value is None else f"{value!r} ({type(value).__name__})"


def _fmt(bound: float) -> str:
    return repr(bound) if isinstance(bound, int) else f"{bound:g}"


@overload
def check_int(name: str, value: object, *, min: int | None = ..., allow_none: Literal[False] = ...) -> int: ...
@overload
def check_int(name: str, value: object, *, min: int | None = ..., allow_none: bool) -> int | None: ...
def check_int(name: str, value: object, *, min: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as a plain ``int`` (``None`` passes when ``allow_none``).

    Raises :class:`TypeError` unless ``value`` is an integer (a numpy integer
    counts; a bool or a float such as ``3.0`` does not), :class:`ValueError` when
    it is below ``min``.
    """
    expect = "an int" + ("" if min is None else f" >= {min}") + (" or None" if allow_none else "")
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expect}, got {_shown(value)}")
    n = int(value)
    if min is not None and n < min:
        raise ValueError(f"{name} must be {expect}, got {n!r}")
    return n


@overload
def check_number(name: str, value: object, *, min: float | None = ..., max: float | None = ...,
                 min_inclusive: bool = ..., max_inclusive: bool = ..., finite: bool = ...,
                 allow_none: Literal[False] = ...) -> float: ...
@overload
def check_number(name: str, value: object, *, min: float | None = ..., max: float | None = ...,
                 min_inclusive: bool = ..., max_inclusive: bool = ..., finite: bool = ...,
                 allow_none: bool) -> float | None: ...
def check_number(
    name: str,
    value: object,
    *,
    min: float | None = None,
    max: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    finite: bool = False,
    allow_none: bool = False,
) -> float | None:
    """``value`` as a plain ``float`` (``None`` passes when ``allow_none``).

    Raises :class:`TypeError` unless ``value`` is a real number (ints and numpy
    scalars count, bools do not); :class:`ValueError` when it is NaN, outside
    ``min`` / ``max`` (each inclusive unless ``min_inclusive`` / ``max_inclusive``
    is false), or infinite with ``finite=True``.  An infinity is otherwise in
    range exactly when the bounds allow it (see the module docstring).
    """
    expect = ("a finite real number" if finite else "a real number") + _range(min, max, min_inclusive, max_inclusive)
    if allow_none:
        expect += " or None"
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expect}, got {_shown(value)}")
    x = float(value)
    if math.isnan(x):
        raise ValueError(f"{name} must be {expect}, got NaN")
    low = min is not None and (x < min if min_inclusive else x <= min)
    high = max is not None and (x > max if max_inclusive else x >= max)
    if low or high or (finite and math.isinf(x)):
        shown: object = value if type(value).__module__ == "builtins" else x  # a numpy scalar shows as float
        raise ValueError(f"{name} must be {expect}, got {shown!r}")
    return x


def _range(min: float | None, max: float | None, min_inclusive: bool, max_inclusive: bool) -> str:
    if min is not None and max is not None:
        return f" in {'[' if min_inclusive else '('}{_fmt(min)}, {_fmt(max)}{']' if max_inclusive else ')'}"
    if min is not None:
        return f" {'>=' if min_inclusive else '>'} {_fmt(min)}"
    if max is not None:
        return f" {'<=' if max_inclusive else '<'} {_fmt(max)}"
    return ""


@overload
def check_rate(name: str, value: object, *, allow_none: Literal[False] = ...) -> float: ...
@overload
def check_rate(name: str, value: object, *, allow_none: bool) -> float | None: ...
def check_rate(name: str, value: object, *, allow_none: bool = False) -> float | None:
    """A fraction in ``(0, 1]`` (a keep rate) as a plain ``float``; see :func:`check_number`."""
    return check_number(name, value, min=0.0, max=1.0, min_inclusive=False, allow_none=allow_none)


def check_choice(name: str, value: _T, choices: Iterable[object]) -> _T:
    """``value`` if it is one of ``choices``.

    Raises :class:`TypeError` when ``value`` is of no choice's type (``bool`` and
    ``int`` counted apart, so ``0`` is not ``False``), else :class:`ValueError`.
    """
    options = tuple(choices)

    def same_type(c: object) -> bool:
        return isinstance(value, type(c)) and isinstance(value, bool) == isinstance(c, bool)

    if any(same_type(c) and value == c for c in options):
        return value
    listed = ", ".join(repr(c) for c in options)
    if not any(same_type(c) for c in options):
        raise TypeError(f"{name} must be one of {listed}, got {_shown(value)}")
    raise ValueError(f"{name} must be one of {listed}, got {value!r}")


def renamed(old_name: str, old_value: Any, new_name: str, new_value: Any, *, default: Any = None,
            stacklevel: int = 3) -> Any:
    """The value of a keyword renamed from ``old_name`` to ``new_name``.

    ``old_value`` is ``None`` when the old keyword was not given, and ``new_value``
    equals ``default`` when the new one was not.  Giving the old keyword warns
    (``DeprecationWarning: top_k is deprecated; use top_n``) and returns its value;
    giving both raises :class:`TypeError`.  ``stacklevel`` 3 points the warning at
    the caller of the function that calls this one.
    """
    if old_value is None:
        return new_value
    if new_value is not default and new_value != default:
        raise TypeError(f"give {new_name} or {old_name}, not both ({old_name} is deprecated; use {new_name})")
    warnings.warn(f"{old_name} is deprecated; use {new_name}", DeprecationWarning, stacklevel=stacklevel)
    return old_value


def check_target(rate: object, target_tokens: object) -> tuple[float | None, int | None]:
    """How much a token compressor keeps: ``rate`` in (0, 1] and/or ``target_tokens`` >= 0, at least one."""
    checked_rate = check_rate("rate", rate, allow_none=True)
    checked_target = check_int("target_tokens", target_tokens, min=0, allow_none=True)
    if checked_rate is None and checked_target is None:
        raise ValueError("give rate or target_tokens (or both)")
    return checked_rate, checked_target

