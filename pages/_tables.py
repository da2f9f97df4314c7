"""Tables as every page shows them: the page's width, percentages, columns wide enough for their
texts, and selections kept with the runs they select."""

from __future__ import annotations

import hashlib

import streamlit as st


def data_table(data, **kwargs):
    """``st.dataframe`` as every page shows one: the page's width, no index, and a missing value
    shown as a dash (Streamlit writes "None", which reads like a value)."""
    return st.dataframe(data, hide_index=True, width="stretch", placeholder="–", **kwargs)


def table_key(name: str, run_ids: list[str]) -> str:
    """The key of a selectable table listing these runs. Streamlit keeps a keyed table's selection
    by row position when its rows change (a run finished, another sweep shown), which would select
    other runs; a table keyed by the runs it lists starts afresh instead, from its
    ``selection_default`` (:func:`rows_of`)."""
    return f"{name}_{hashlib.sha1(','.join(run_ids).encode()).hexdigest()[:16]}"


def rows_of(picked: list[str], run_ids: list[str]) -> dict:
    """A table's ``selection_default``: the rows of the picked runs among ``run_ids``, its rows."""
    return {"selection": {"rows": [run_ids.index(r) for r in picked if r in run_ids]}}


def percent_columns(frame, columns, headers: dict | None = None, decimals: int = 1):
    """A copy of ``frame`` with fractions shown as percentages, and its column config."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].astype(float) * 100
    headers = headers or {}
    return frame, {c: st.column_config.NumberColumn(headers.get(c, c), format=f"%.{decimals}f%%") for c in columns}


def fitted(frame, column_config: dict | None = None, auto: int = 24) -> dict:
    """``column_config`` with each column of ``frame`` (a DataFrame or a list of row dicts) whose
    texts run longer than ``auto`` characters made wide enough for its longest text, so no label
    or path is cut off (Streamlit's automatic widths stop short of long texts); shorter columns
    keep their automatic width."""
    import pandas as pd

    frame = pd.DataFrame(frame)
    config = dict(column_config or {})
    for column in frame.columns:
        longest = max([len(str(column))] + [len(str(value)) for value in frame[column] if isinstance(value, str)])
        if longest > auto:
            config[column] = {**(config.get(column) or {}), "width": min(640, 7 * longest + 28)}
    return config
