"""The README's generated blocks: each made from committed data by a small function, never typed.

A block sits between ``<!-- report:NAME:begin -->`` and ``<!-- report:NAME:end -->``.
:data:`BLOCKS` maps NAME to (source, render): ``render(data) -> str`` gives the block's text from
the data of its source, a committed JSON file (:data:`SOURCES`: the reproduction's ``report.json``,
the engine benchmark's ``engine.json``). ``python -m leukdash report --readme`` writes every
block; ``--check`` (and tests/test_readme.py) gives one line per problem:
a source missing, unreadable, from another engine than ``ENGINE_VERSION`` or with a field no
README may show (:mod:`.validate`), a block its data cannot render, a block that differs from
what its data gives.
"""

from __future__ import annotations

import math
from pathlib import Path

from leukdash import ENGINE_VERSION
from leukdash.engine.store import parse_json
from leukdash.intervals import share_interval
from leukdash import paths as leukdash_paths
from leukdash.reporting.report import DATA_NAME
from leukdash.reporting.report.blocks import audit_block, external_block, results_block, scaling_block, speed_block
from leukdash.reporting.report.validate import data_problem

# Source name -> (its committed file in the repository, the command that writes it). Resolved at
# each use against ``paths.REPO_ROOT``, not when this module is imported.
SOURCES = {
    "report": (Path("docs", "report", DATA_NAME), "python -m leukdash reproduce"),
    "benchmark": (Path("docs", "benchmarks", "engine.json"),
                  "python -m benchmarks.bench_engine --seeds 0 1 2 --out docs/benchmarks/engine.json"),
}
# Block name -> (the source it is made from, the function that renders it).
BLOCKS = {
    "results": ("report", results_block),
    "audit": ("report", audit_block),
    "scaling": ("report", scaling_block),
    "speed": ("benchmark", speed_block),
    "external": ("report", external_block),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- report:{name}:begin -->", f"<!-- report:{name}:end -->"


def load_sources(paths: dict[str, Path] | None = None) -> dict[str, dict | str]:
    """Each source's data, or the one line that says why it has none (``paths`` overrides files)."""
    found = {}
    for name, (default, command) in SOURCES.items():
        path = Path((paths or {}).get(name) or leukdash_paths.REPO_ROOT / default)
        try:
            data = parse_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            found[name] = f"no {name} data at {path}: run `{command}`"
            continue
        except (OSError, ValueError) as error:
            found[name] = f"cannot read the {name} data {path}: {error}"
            continue
        if not isinstance(data, dict) or "engine" not in data:
            found[name] = f"{path} is not {name} data written by leukdash (no engine version)"
        elif not isinstance(data["engine"], str):  # 3 is not "3": said as a type, not as another version
            found[name] = (f"{path}: engine must be a string such as {ENGINE_VERSION!r}, not {data['engine']!r}: "
                           f"run `{command}`")
        elif data["engine"] != ENGINE_VERSION:
            found[name] = (f"{path} is from engine version {data['engine']}, this engine is {ENGINE_VERSION}: "
                           f"run `{command}`, then `python -m leukdash report --readme`")
        elif problem := data_problem(data := clipped_within(data)):
            found[name] = f"{path}: {problem}: run `{command}`"
        else:
            found[name] = data
    return found


def clipped_within(data):
    """``data`` with each run's own t interval (``within.ci95``, of its fold balanced accuracies)
    clipped to 0-1 (:func:`~leukdash.intervals.share_interval`), as the engine now stores it: a report
    written before it clipped holds the bare interval. A value that is no finite number is left for
    :func:`~.validate.data_problem` to name."""
    if isinstance(data, list):
        return [clipped_within(value) for value in data]
    if not isinstance(data, dict):
        return data
    clipped = {key: clipped_within(value) for key, value in data.items()}
    ci = (data.get("within") or {}).get("ci95") if isinstance(data.get("within"), dict) else None
    if isinstance(ci, list) and len(ci) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in ci):
        clipped["within"] = {**clipped["within"], "ci95": list(share_interval(ci))}
    return clipped


def render_blocks(sources: dict[str, dict | str]) -> tuple[dict[str, str], list[str]]:
    """The text of every block its data renders (markers included), and one line per block that
    none renders."""
    texts, problems = {}, []
    for name, (source, render) in BLOCKS.items():
        data = sources.get(source, f"no {source} data given")
        if isinstance(data, str):
            problems.append(f"the README's {name} block: {data}")
            continue
        # Data of any shape (a null, a string for a list) is damage, said in one line.
        try:
            body = render(data)
        except Exception as error:  # noqa: BLE001
            problems.append(f"the README's {name} block: cannot be made from the {source} data "
                            f"({type(error).__name__}: {error}): run `{SOURCES[source][1]}`")
            continue
        begin, end = markers(name)
        texts[name] = f"{begin}\n{body}\n{end}"
    return texts, problems


def replace_block(readme: str, name: str, text: str) -> str:
    """``readme`` with block ``name`` (markers included) replaced by ``text``."""
    begin, end = markers(name)
    start, stop = readme.find(begin), readme.find(end)
    if start < 0 or stop < start or readme.count(begin) != 1 or readme.count(end) != 1:
        raise ValueError(f"the README has no single {begin} ... {end} block")
    return readme[:start] + text + readme[stop + len(end):]


def write_blocks(readme: str, sources: dict[str, dict | str]) -> tuple[str, list[str]]:
    """``readme`` with every block its data renders rewritten, and the problems left."""
    texts, problems = render_blocks(sources)
    for name, text in texts.items():
        try:
            readme = replace_block(readme, name, text)
        except ValueError as error:
            problems.append(str(error))
    return readme, problems


def readme_problems(readme: str, sources: dict[str, dict | str]) -> list[str]:
    """Why the README's blocks are not the ones the committed data gives, one line each (empty when
    they are)."""
    texts, problems = render_blocks(sources)
    for name, text in texts.items():
        try:
            same = replace_block(readme, name, text) == readme
        except ValueError as error:
            problems.append(str(error))
            continue
        if not same:
            problems.append(f"the README's {name} block differs from its data: run `python -m leukdash report "
                            "--readme` (the block is generated; rerun what writes its data, never edit it)")
    return problems
