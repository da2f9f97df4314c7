"""Checks of what a Python caller gives the engine's functions, at the function it calls: a run id where
a run's result is expected, one dict where a list is, a metric that does not exist. Each mistake is
one line naming the parameter and what it takes, not an AttributeError from deep inside."""

from __future__ import annotations


def run_ids(values, name: str = "run_ids") -> list[str]:
    """``values`` as a list of run ids; one id given bare is that one run, not its characters one by one."""
    if isinstance(values, str):
        return [values]
    if isinstance(values, dict):  # as RunStore.run_dir says of a result in a list of ids
        raise TypeError(f"{name}: a run's result was given where run ids are expected; give its ['run_id']")
    return listed(values, name, "run ids")


def results(values, name: str = "results", entries: bool = False) -> list[dict]:
    """``values`` as a list of :func:`result`; with ``entries``, ``RunStore.list_runs`` entries also."""
    if isinstance(values, str):  # one run id given bare: said as the id it is
        result(values, name)
    listing = listed(values, name, "run results (the dicts of run() or finished_result())")
    return [result(value, name, entries) for value in listing]


def result(value, name: str = "result", entries: bool = False) -> dict:
    """``value`` if it is a run's result (with ``entries``, or a ``list_runs`` entry), else a TypeError
    that says what was given instead: the reverse of the check of ``RunStore.run_dir``."""
    if isinstance(value, str):
        raise TypeError(f"{name}: a run id was given where a run's result is expected; load it with "
                        f"finished_result({value[:80]!r})")
    entry = isinstance(value, dict) and {"run_id", "meta"} <= value.keys()
    if isinstance(value, dict) and {"run_id", "config", "folds"} <= value.keys() or entries and entry:
        return value
    got = "a list_runs entry: load it with finished_result(entry['run_id'])" if entry else \
        f"a {type(value).__name__}"
    also = " or a RunStore().list_runs() entry" if entries else ""
    raise TypeError(f"{name}: expected a run's result (a dict of run() or finished_result()){also}, got {got}")


def listed(values, name: str, what: str) -> list:
    """``values`` (any iterable) as a list; one dict or text given where several are expected is
    refused, not read key by key or letter by letter."""
    if isinstance(values, dict):
        raise TypeError(f"{name} takes a list of {what}, got a single dict: give it in a list")
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} takes a list of {what}, got {type(values).__name__}")
    return list(values)


def known(value, allowed, name: str) -> None:
    """Refuse a ``value`` (a metric, say) that is not one of ``allowed``, naming those there are."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
