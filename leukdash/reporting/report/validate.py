"""What the data of the README's blocks must hold before any block is made from it: one pass over
a source (:func:`data_problem`), called where :mod:`.readme` loads it, so that a damaged or
hostile ``report.json`` is refused in one line naming the field, never published."""

from __future__ import annotations

from typing import Iterator

# Text that would end a block early or hide the rest of the README (see readme.markers).
_UNSAFE_TEXT = ("\n", "\r", "<!--", "-->")


def fields(data, path: str = "") -> Iterator[tuple[str, object]]:
    """Every value of ``data`` that holds no other, with its path (``headline[0].label``)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from fields(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from fields(value, f"{path}[{index}]")
    else:
        yield path, data


def data_problem(data: dict) -> str | None:
    """Why ``data`` cannot be shown in the README (the first field found), or None."""
    for path, value in fields(data):
        if isinstance(value, str) and any(text in value for text in _UNSAFE_TEXT):
            return f"{path} is {value!r}: a line break or <!-- --> in a text field would break the README"
    return None
