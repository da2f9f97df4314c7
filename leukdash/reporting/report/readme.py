"""The README's result block, made from the committed report data (``report.json``), never typed.

``python -m leukdash report --readme`` writes the block between the README's markers;
``--check`` (and tests/test_readme.py) fails when the README's block differs from what the
data gives, or when the data is not from the engine that ships (``ENGINE_VERSION``).
"""

from __future__ import annotations

import json
from pathlib import Path

from leukdash import ENGINE_VERSION
from leukdash.engine.machine import machine_text
from leukdash.errors import ConfigError

BEGIN = "<!-- report:begin -->"
END = "<!-- report:end -->"


def load_report_data(folder: Path) -> dict:
    """The ``report.json`` a reproduction wrote into ``folder``; one clear error when there is none."""
    from leukdash.reporting.report import DATA_NAME

    path = Path(folder) / DATA_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no report data at {path}: run `python -m leukdash reproduce` (or "
                          "`reproduce --report-only` on a store that holds its runs) first") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the report data {path}: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("headline"), list):
        raise ConfigError(f"{path} is not report data written by leukdash (no headline rows)")
    return data


def readme_block(data: dict) -> str:
    """The README's result table and the line on how and where it was computed."""
    lines = [BEGIN, "| model | per-fold validation accuracy | mean | 95% CI (t) | paper |", "|---|---|---|---|---|"]
    for row in data["headline"]:
        paper = "-" if row.get("paper") is None else \
            f"{row['paper']:.4f} ({'its own protocol' if row['is_cnn'] else 'its protocol, raw pixels'})"
        low, high = row["ci95"]
        lines.append(f"| {row['label']} | {' '.join(f'{v:.3f}' for v in row['val_acc'])} | **{row['mean']:.3f}** "
                     f"| {low:.3f}-{high:.3f} | {paper} |")
    minutes = {key: data[key] / 60 for key in ("wall_seconds", "fold_seconds", "packing_bound_seconds")}
    lines += ["", f"Engine version {data['engine']}, `{data['command']}` ({data['mode']} settings, {data['runs_done']} of "
              f"{data['runs_total']} runs, report of {data['generated']}) on {machine_text(data['machine'])}: "
              f"{minutes['wall_seconds']:.1f} min wall time for {minutes['fold_seconds']:.1f} min of fold time, "
              f"whose packing bound on these cores is {minutes['packing_bound_seconds']:.1f} min.", END]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between its markers (markers included) replaced by ``block``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"the README has no {BEGIN} ... {END} block to write the results into")
    return readme[:start] + block + readme[end + len(END):]


def readme_problems(readme: str, data: dict) -> list[str]:
    """Why the README's block is not the one the report data gives (empty when it is)."""
    problems = []
    if data.get("engine") != ENGINE_VERSION:
        problems.append(f"the report is from engine version {data.get('engine')}, this engine is {ENGINE_VERSION}: "
                        "run `python -m leukdash reproduce`, then `python -m leukdash report --readme`")
    if replace_block(readme, readme_block(data)) != readme:
        problems.append("the README's result block differs from the report data: run `python -m leukdash report "
                        "--readme` (the block is generated; edit the report, not the README)")
    return problems
