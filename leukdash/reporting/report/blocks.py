"""What the README's generated blocks say (:mod:`.readme` puts them between their markers): one
function per block, from the data of its source alone."""

from __future__ import annotations

from leukdash.engine.machine import machine_text


def results_block(data: dict) -> str:
    """The README's result table and the line on how and where it was computed (``report.json``)."""
    lines = ["| model | per-fold validation accuracy | mean | 95% CI (t) | paper |", "|---|---|---|---|---|"]
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
              f"whose packing bound on these cores is {minutes['packing_bound_seconds']:.1f} min."]
    return "\n".join(lines)
