"""Figure 4 of the paper as a standalone SVG: static, dependency-free, readable in any Markdown viewer."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from leukdash.atomic import write_bytes_atomic
from leukdash.reporting.matrix import Outcome
from leukdash.reporting.report.format import fold_values, label, paper_val, pct

_COLOURS = {"CNN": "#7b2d8b", "classic, pixels": "#2f6db5", "classic, features": "#3a9a5b"}


def write_figure(path: Path, rows: list[Outcome], title: str) -> str:
    """Figure-4-style bars as a standalone SVG; returns the file name (relative to the report)."""
    bar, gap, left, top, plot_h, label_h = 46, 26, 60, 40, 260, 80
    width = max(left + len(rows) * (bar + gap) + gap, 640)
    height = top + plot_h + label_h

    def y(value: float) -> float:
        return top + plot_h * (1 - value)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    x = width - 10 - sum(24 + 6.5 * len(name) for name in (*_COLOURS, "paper"))  # legend, right-aligned
    for name, colour in _COLOURS.items():
        parts.append(f'<rect x="{x:.0f}" y="10" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{x + 14:.0f}" y="19">{name}</text>')
        x += 24 + 6.5 * len(name)
    parts.append(f'<path d="M{x:.0f},15 L{x + 5:.0f},10 L{x + 10:.0f},15 L{x + 5:.0f},20 Z" fill="none" '
                 f'stroke="#c0392b" stroke-width="2"/><text x="{x + 14:.0f}" y="19">paper</text>')
    for tick in np.linspace(0, 1, 6):
        parts.append(f'<line x1="{left}" x2="{width - 5}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.0%}</text>')
    for i, o in enumerate(rows):
        x = left + gap + i * (bar + gap)
        values = fold_values(o.result)
        mean, low, high = float(np.mean(values)), min(values), max(values)
        colour = _COLOURS["CNN" if o.experiment.config.is_cnn else f"classic, {o.experiment.config.feature_set}"]
        centre = x + bar / 2
        parts.append(f'<rect x="{x}" y="{y(mean):.1f}" width="{bar}" height="{plot_h * mean:.1f}" fill="{colour}" '
                     f'opacity="0.85"><title>{html.escape(label(o))}: {pct(mean)}</title></rect>')
        parts.append(f'<text x="{centre}" y="{y(0) - 6}" text-anchor="middle" fill="white" '
                     f'font-size="10">{100 * mean:.1f}</text>')
        parts.append(f'<line x1="{centre}" x2="{centre}" y1="{y(high):.1f}" y2="{y(low):.1f}" stroke="#222" stroke-width="1.5"/>')
        for end in (low, high):
            parts.append(f'<line x1="{centre - 7}" x2="{centre + 7}" y1="{y(end):.1f}" y2="{y(end):.1f}" '
                         'stroke="#222" stroke-width="1.5"/>')
        for value in values:
            parts.append(f'<circle cx="{centre + 11}" cy="{y(value):.1f}" r="2.5" fill="#222" opacity="0.7"/>')
        paper = paper_val(o)
        if paper is not None:
            py = y(paper)
            parts.append(f'<path d="M{centre - 7},{py:.1f} L{centre},{py - 7:.1f} L{centre + 7},{py:.1f} '
                         f'L{centre},{py + 7:.1f} Z" fill="none" stroke="#c0392b" stroke-width="2.2"><title>paper '
                         f'{pct(paper)}</title></path>')
        words = label(o).replace(" · ", " ").replace("(", "").replace(")", "").replace(",", "").split()
        lines, line = [], ""
        for word in words:
            if line and len(line) + len(word) > 9:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        for j, text in enumerate(lines[:5]):
            parts.append(f'<text x="{centre}" y="{top + plot_h + 14 + 13 * j}" text-anchor="middle">'
                         f'{html.escape(text)}</text>')
    parts.append("</svg>")
    name = path.name
    write_bytes_atomic(path, ("\n".join(parts) + "\n").encode("utf-8"))
    return name
