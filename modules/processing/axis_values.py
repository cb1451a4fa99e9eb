"""The value lists of grid axes as A1111's X/Y/Z plot reads them: comma-separated (CSV quoting
allowed), where a number axis also takes ranges:

- `1-5` → 1, 2, 3, 4, 5; `1-10 (+3)` → 1, 4, 7, 10; `10-1 (-3)` → 10, 7, 4, 1  (start-end (step))
- `1-10 [4]` → 1, 4, 7, 10                                      (start-end [count], evenly spaced)
- floats alike: `0.5-1.5 (+0.25)`, `4-8 [3]`.

A permutation axis gives every order of its values (Prompt order)."""
from __future__ import annotations

import csv
import io
import itertools
import re
from typing import Any, Callable

import numpy as np

_NUMBER = r"[+-]?\s*\d+(?:\.\d*)?"
_STEP = r"[+-]\s*\d+(?:\.\d*)?"
_STEP_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})(?:\s*\(\s*({_STEP})\s*\))?\s*")
_COUNT_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*\[\s*(\d+)\s*\]\s*")


class AxisValueError(ValueError):
    """A value list that cannot be read for its axis (the message names the axis)."""


def split_values(text: str) -> list[str]:
    """`a, b, "c, d"` → ["a", "b", "c, d"] (CSV rules, each value stripped, empty ones dropped)."""
    rows = csv.reader(io.StringIO(text or ""), skipinitialspace=True)
    return [value.strip() for row in rows for value in row if value.strip()]


def join_values(values: list[Any]) -> str:
    """The inverse of split_values: values as one CSV line (quoted where needed)."""
    with io.StringIO() as out:
        csv.writer(out).writerow([str(value) for value in values])
        return out.getvalue().strip()


def _number(text: str, kind: type) -> int | float:
    return kind(float(text.replace(" ", ""))) if kind is int else float(text.replace(" ", ""))


def _expand_range(value: str, kind: type) -> list[int | float] | None:
    """The numbers a range stands for, or None when `value` is not a range."""
    counted = _COUNT_RANGE.fullmatch(value)
    if counted is not None:
        start, end = _number(counted.group(1), kind), _number(counted.group(2), kind)
        numbers = np.linspace(start, end, num=int(counted.group(3))).tolist()
        return [int(number) for number in numbers] if kind is int else numbers
    stepped = _STEP_RANGE.fullmatch(value)
    if stepped is None:
        return None
    start, end = _number(stepped.group(1), kind), _number(stepped.group(2), kind)
    step = _number(stepped.group(3), kind) if stepped.group(3) else (1 if end >= start else -1)
    if step == 0:
        raise AxisValueError(f"a range step of 0 in {value!r}")
    if kind is int:
        return list(range(int(start), int(end) + (1 if step > 0 else -1), int(step)))
    # a little past `end` so that 0-1 (+0.25) includes 1 despite rounding
    numbers = np.arange(start, end + step * 0.5, step).tolist()
    return [round(number, 8) for number in numbers]


def parse_axis_values(values: str | list[Any], kind: Callable[[str], Any] | type,
                      *, label: str = "axis", permutations: bool = False) -> list[Any]:
    """The values of one axis: `values` is the text box (or the dropdown's list); `kind` is int,
    float or a function reading one text value."""
    items = list(values) if isinstance(values, (list, tuple)) else split_values(str(values))
    if permutations:
        return [list(order) for order in itertools.permutations(items)]
    if kind not in (int, float):
        return [kind(item) if isinstance(item, str) else item for item in items]
    numbers: list[Any] = []
    for item in items:
        if not isinstance(item, str):
            numbers.append(kind(item))
            continue
        expanded = _expand_range(item, kind)
        try:
            numbers.extend(expanded if expanded is not None else [_number(item, kind)])
        except ValueError as error:
            raise AxisValueError(f"{label}: {item!r} is not a number or a range "
                                 f"(examples: 1, 2, 3 · 1-5 · 1-10 (+2) · 1-10 [4])") from error
    return numbers
