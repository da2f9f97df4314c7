"""What the data of the README's blocks must hold before any block is made from it: one pass over
a source (:func:`data_problem`), called where :mod:`.readme` loads it, so that a damaged or
hostile ``report.json`` is refused in one line naming the field and its value, never published.

Every number is finite; the fields below hold what their names say (accuracies and shares from
0 to 1, counts, seconds, lists with at least one entry), and a part is never more than its
whole. A field of the wrong type is left to the block that reads it, which says so."""

from __future__ import annotations

import math
import re
from typing import Iterator

# Text that would end a block early or hide the rest of the README (see readme.markers).
_UNSAFE_TEXT = ("\n", "\r", "<!--", "-->")

# Field paths ("[]": every item of a list, "*": any one key) and what each must be. The t interval of a
# run's own folds (``within.ci95``) is read clipped to 0-1 (readme.clipped_within), as the engine stores it.
_ROW = "external.*[].external"
_SHARES = ("headline[].mean", "headline[].val_acc[]", "headline[].ci95[]", "headline[].paper", "runs[].val_acc[]",
           "shortcuts.*.histogram_acc", "shortcuts.*.background_acc", "shortcuts.*.chance",
           f"{_ROW}.balanced_accuracy", f"{_ROW}.ci95[]", f"{_ROW}.roc_auc", f"{_ROW}.ood_share",
           f"{_ROW}.ood_own_share", f"{_ROW}.predicted_share.*", f"{_ROW}.*.share", f"{_ROW}.*.own_share",
           f"{_ROW}.*.error_flagged", f"{_ROW}.*.error_unflagged", "external.*[].within.mean",
           "external.*[].within.folds[]", "external.*[].within.ci95[]", "across.pooled[].within.ci95[]",
           "external.lodo[].held_out.*.balanced_accuracy", "external.lodo[].held_out.*.ci95[]",
           "across.pooled[].sources.*.accuracy",
           "across.pooled[].sources.*.alone.accuracy")
_COUNTS = ("runs_done", "runs_total", "machines", "reproduction.runs_timed", "reproduction.runs_resumed",
           f"{_ROW}.n_images", f"{_ROW}.*.n_flagged")
_SECONDS = ("call_seconds", "fold_seconds", "packing_bound_seconds", "reproduction.wall_seconds", "runs[].seconds",
            "runs[].fold_seconds[]", "external.sweep.fold_seconds", "external.sweep.span.wall_seconds")
_LISTS = ("headline", "runs", "headline[].val_acc", "runs[].val_acc", "runs[].fold_seconds")
# (part, whole): a part never larger than its whole.
_PARTS = (("runs_done", "runs_total"), ("reproduction.runs_timed", "runs_done"),
          ("reproduction.runs_resumed", "reproduction.runs_timed"))


def _matcher(patterns: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(re.escape(p).replace(r"\*", r"[^.\[]+") for p in patterns))


_RULES = (  # (fields, whether a value is right, what it must be)
    (_matcher(_SHARES), lambda v: 0 <= v <= 1, "an accuracy or share from 0 to 1"),
    (_matcher(_COUNTS), lambda v: v >= 0 and v == int(v), "a count (a whole number, 0 or more)"),
    (_matcher(("machine.cores",)), lambda v: v >= 1 and v == int(v), "a number of cores (a whole number, 1 or more)"),
    (_matcher(_SECONDS), lambda v: v >= 0, "a time in seconds (0 or more)"),
)
_LIST_FIELDS = _matcher(_LISTS)


def fields(data, path: str = "") -> Iterator[tuple[str, object]]:
    """Every value of ``data`` that holds no other (an empty list or dict included), with its path
    (``headline[0].label``)."""
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from fields(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list) and data:
        for index, value in enumerate(data):
            yield from fields(value, f"{path}[{index}]")
    else:
        yield path, data


def data_problem(data: dict) -> str | None:
    """Why ``data`` cannot be shown in the README (the first field found), or None."""
    for path, value in fields(data):
        problem = _field_problem(re.sub(r"\[\d+\]", "[]", path), value)
        if problem:
            return f"{path} is {value!r}: {problem}"
    for part, whole in _PARTS:
        have, of = _value(data, part), _value(data, whole)
        if _is_number(have) and _is_number(of) and have > of:
            return f"{part} is {have!r}, more than {whole} ({of!r})"
    return None


def _field_problem(pattern: str, value) -> str | None:
    if isinstance(value, str) and any(text in value for text in _UNSAFE_TEXT):
        return "a line break or <!-- --> in a text field would break the README"
    if value == [] and _LIST_FIELDS.fullmatch(pattern):
        return "an empty list where at least one entry is needed"
    if not _is_number(value):
        return None  # a wrong type: the block that reads it says so
    if not math.isfinite(value):
        return "not a finite number"
    return next((f"not {what}" for fields_, right, what in _RULES if fields_.fullmatch(pattern) and not right(value)),
                None)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value(data: dict, path: str):
    for key in path.split("."):
        data = data.get(key) if isinstance(data, dict) else None
    return data
