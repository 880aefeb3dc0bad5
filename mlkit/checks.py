"""Argument checks shared by the whole kit.

Every public function that takes a user's number calls one of these, so a bad
value fails early with a message that names the parameter, the value given and
what is allowed, e.g. ``ValueError: shots must be an integer >= 1, got -3``.
"""
from __future__ import annotations

import math
import numbers


def check_int(name, value, low=None, high=None):
    """Return ``value`` if it is an int in [low, high], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer{_bounds(low, high)}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer{_bounds(low, high)}, got {value!r}")
    return int(value)


def check_float(name, value, low=None, high=None, low_inclusive=True):
    """Return ``value`` as a float if it is finite and within bounds, else raise ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            raise ValueError(f"{name} must be a finite number{_bounds(low, high, low_inclusive)}, "
                             f"got {value!r}") from None
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = _bounds(low, high, low_inclusive)
        raise ValueError(f"{name} must be a finite number{what}, got {value!r}")
    return value


def check_range(name, value, low=None, high=None):
    """Return a (lo, hi) pair of floats with lo <= hi, each within [low, high]."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    lo = check_float(f"{name}[0]", lo, low, high)
    hi = check_float(f"{name}[1]", hi, low, high)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got ({lo:g}, {hi:g})")
    return lo, hi


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def _bounds(low, high, low_inclusive=True):
    if low is not None and high is not None:
        return f" in [{low:g}, {high:g}]" if low_inclusive else f" in ({low:g}, {high:g}]"
    if low is not None:
        return f" >= {low:g}" if low_inclusive else f" > {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""
