"""Predict: one image's class probabilities and its Grad-CAM overlay."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from leukdash.reporting.plots.common import LAYOUT, MODEL_COLOURS, shown_in_chart

# The longer side of a picture as a page shows it: wider than any column it is drawn in, and a
# 48-megapixel upload is not handed to the browser (hundreds of MB in the server) to be scaled down there.
DISPLAY_SIDE = 1280


def probability_bars(probabilities: dict[str, float], predicted: str | None = None) -> go.Figure:
    """Class probabilities of one image (mean over the fold models), the predicted class highlighted."""
    classes = list(probabilities)
    colours = [MODEL_COLOURS["cnn"] if c == predicted else "#c9c3cf" for c in classes]
    fig = go.Figure(go.Bar(x=list(probabilities.values()), y=[shown_in_chart(c) for c in classes], orientation="h",
                           marker_color=colours,
                           text=[f"{p:.1%}" for p in probabilities.values()], textposition="outside",
                           cliponaxis=False, hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    # Room right of the axis for an outside label as wide as "100.0%".
    fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=64, t=10, b=10)}, height=60 + 36 * len(classes))
    fig.update_xaxes(title="Probability", range=[0, 1.0], tickformat=".0%")
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def for_display(image: np.ndarray, longest: int = DISPLAY_SIDE) -> np.ndarray:
    """``image`` (a picture or a heatmap) shrunk to at most ``longest`` pixels on its longer side, its
    aspect kept (area averaging, no aliasing); a smaller one as it is."""
    import cv2

    height, width = image.shape[:2]
    scale = longest / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """An RGB uint8 image with a jet-coloured heatmap (H, W) in [0, 1] blended over it."""
    import cv2

    if heatmap.shape != image.shape[:2]:
        heatmap = cv2.resize(heatmap.astype(np.float32), (image.shape[1], image.shape[0]))
    coloured = cv2.applyColorMap(np.uint8(np.clip(heatmap, 0, 1) * 255), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * coloured, 0, 255))
