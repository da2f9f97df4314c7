"""What a dataset holds and whether it can be solved without looking at the cells.

The audit lists class counts, image sizes, files that could not be used, images that carry no
detail (blank or one colour), exact duplicates (identical bytes) and near duplicates (a
perceptual-hash candidate confirmed on the pixels), how many grouped folds a run can get, and
runs two shortcut checks: how well a simple classifier names the class from (a) the colour
histogram of the whole image and (b) the colour of the background alone. A background score well
above chance means the classes were photographed differently (stain batch, lamp, camera), and any
model can learn that instead of the morphology. The histogram score is expected to be above chance
wherever classes differ in how much of each cell type a field holds (more nuclei, blue cytoplasm,
eosinophil granules); it is reported as the ceiling of what colour alone can do.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

from leukdash.data.decode import decode_image, upright_size
from leukdash.data.blank import flat_images
from leukdash.data.duplicates import PIXEL_MATCH, dataset_duplicates
from leukdash.data.folds import allowed_folds, merge_groups
from leukdash.data.preprocess import RAW, parse_mode
from leukdash.paths import printable

# The shortcut checks look at small copies: colour statistics hardly change with size.
SHORTCUT_SIZE = 64
HISTOGRAM_BINS = 16
HISTOGRAM_BLOCK = 256


def audit_dataset(ds, *, folds: int = 5, seed: int = 0, preprocess: str | None = None) -> dict:
    """A JSON-ready report on ``ds`` (a :class:`leukdash.data.dataset.Dataset`).

    With ``preprocess`` (a cell-level mode of :mod:`leukdash.data.preprocess`), the report also
    counts the images whose cell could not be segmented plausibly and runs the shortcut checks
    again on the preprocessed images.

    ``shortcut.chance`` is the accuracy of always answering the most frequent class (0.5 for
    two balanced classes, 185/903 = 0.205 for the default synthetic set); the two shortcut
    accuracies are pooled out-of-fold accuracies over a grouped, stratified ``folds``-fold
    split (fewer folds when a class has fewer groups).
    """
    if preprocess is not None:
        parse_mode(preprocess)  # a bad mode fails before any work
    loaded = ds.load(size=SHORTCUT_SIZE)
    names = [ds.relative(path) for path in loaded.paths]
    classes = [ds.classes[label] for label in loaded.labels]
    sizes: dict[str, int] = defaultdict(int)
    for path in loaded.paths:
        width, height = _image_size(path)
        sizes[f"{width}x{height}"] += 1
    found = dataset_duplicates(ds)
    report = {
        "name": ds.name,
        "root": printable(str(ds.root)),  # a folder name that is not UTF-8: escaped, as the other names are
        "kind": ds.kind,
        "synthetic": ds.synthetic,
        "fingerprint": ds.fingerprint,
        "n_images": len(loaded.paths),
        "classes": {name: int(np.sum(loaded.labels == i)) for i, name in enumerate(ds.classes)},
        "sizes": dict(sorted(sizes.items(), key=lambda kv: -kv[1])),
        "skipped": [{"path": ds.relative(s.path), "reason": s.reason} for s in loaded.skipped],
        "no_detail": [names[i] for i in flat_images(loaded.images)],
        "notes": list(ds.notes) + ds.alike_classes(),
        "duplicates": {
            "exact": [_entry(group, names, classes) for group in found.exact],
            "near": [{**_entry((i, j), names, classes), "distance": d, "pixel_score": round(score, 3)}
                     for i, j, d, score in found.near],
            "rejected": {"n": len(found.rejected),
                         "best_pixel_score": round(max((r[3] for r in found.rejected), default=0.0), 3)},
            "refused": [{**_entry(pair, names, classes), "group_sizes": group_sizes}
                        for pair, group_sizes in found.refused],
            "merge_limit": found.merge_limit,
            "pixel_match": PIXEL_MATCH,
        },
        "max_folds": allowed_folds(loaded.labels, merge_groups(loaded.groups, found.pairs()), seed),
        "shortcut": shortcut_scores(loaded.images, loaded.labels, loaded.groups, folds=folds, seed=seed),
    }
    if preprocess is not None and preprocess != RAW:
        report["preprocessed"] = audit_preprocessed(ds, preprocess, folds=folds, seed=seed)
    return report


def audit_preprocessed(ds, mode: str, *, folds: int = 5, seed: int = 0) -> dict:
    """Segmentation failures and the shortcut checks on the images as a run in ``mode`` sees them:
    ``mode``, ``n_images``, ``failures`` (count per kind), ``failed`` (each file and its failure)
    and ``shortcut`` (as :func:`audit_dataset` gives it)."""
    parse_mode(mode)  # a bad mode fails before any work
    loaded = ds.load(SHORTCUT_SIZE, mode)  # prepared as a run prepares them, each failure kept
    failed = [{"path": ds.relative(f.path), "failure": f.reason} for f in loaded.segmentation_failures]
    counts = defaultdict(int)
    for entry in failed:
        counts[entry["failure"]] += 1
    return {"mode": mode, "n_images": len(loaded.labels), "failures": dict(counts), "failed": failed,
            "shortcut": shortcut_scores(loaded.images, loaded.labels, loaded.groups, folds=folds, seed=seed)}


def format_audit(report: dict) -> str:
    """The report of :func:`audit_dataset` as plain text for a terminal."""
    from leukdash.data.dataset import SYNTHETIC_LABEL

    label = f"  [{SYNTHETIC_LABEL}]" if report["synthetic"] else ""
    lines = [f"{report['name']}: {report['n_images']} images in {len(report['classes'])} classes"
             f" ({report['kind']}){label}", f"  folder: {report['root']}",
             "  classes: " + ", ".join(f"{c} {n}" for c, n in report["classes"].items()),
             "  sizes: " + ", ".join(f"{s} ({n})" for s, n in report["sizes"].items())]
    lines.append(f"  skipped: {len(report['skipped'])}")
    lines += [f"    {entry['path']}: {entry['reason']}" for entry in report["skipped"]]
    lines.append(f"  no detail (blank or one colour, no cell to learn from): {len(report['no_detail'])}")
    lines += [f"    {path}" for path in report["no_detail"]]
    lines += [f"  note: {note}" for note in report.get("notes", [])]
    duplicates = report["duplicates"]
    for kind, title in (("exact", "exact duplicates (identical bytes)"),
                        ("near", "near duplicates (hash candidate confirmed on the pixels)")):
        entries = duplicates[kind]
        lines.append(f"  {title}: {len(entries)}")
        for entry in entries:
            extra = f"  hash distance {entry['distance']}, pixel score {entry['pixel_score']:.3f}" \
                if "distance" in entry else ""
            across = "  ACROSS CLASSES" if entry["cross_class"] else ""
            lines.append(f"    {' = '.join(entry['files'])}{extra}{across}")
    rejected = duplicates["rejected"]
    lines.append(f"  hash candidates rejected on the pixels: {rejected['n']} (best pixel score "
                 f"{rejected['best_pixel_score']:.3f}, a duplicate needs {duplicates['pixel_match']})")
    lines.append(f"  duplicate links not merged (the merged group would exceed {duplicates['merge_limit']} "
                 f"images): {len(duplicates['refused'])}")
    lines += [f"    {' = '.join(entry['files'])}  groups of {' + '.join(map(str, entry['group_sizes']))} images"
              for entry in duplicates["refused"]]
    lines.append(f"  grouped folds the data allows: {report['max_folds']}")
    def shortcut_line(shortcut):
        def score(key):
            return "n/a" if shortcut[key] is None else f"{shortcut[key]:.2f}"

        return (f"shortcut accuracy (chance {shortcut['chance']:.2f}): colour histogram "
                f"{score('histogram_acc')}, background colour {score('background_acc')}")

    lines.append(f"  {shortcut_line(report['shortcut'])}")
    if "preprocessed" in report:
        pre = report["preprocessed"]
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(pre["failures"].items())) or "none"
        lines.append(f"  preprocessed as {pre['mode']}: segmentation failures {len(pre['failed'])} of "
                     f"{pre['n_images']} ({counts})")
        lines += [f"    {entry['path']}: {entry['failure']}" for entry in pre["failed"]]
        lines.append(f"    {shortcut_line(pre['shortcut'])}")
    return "\n".join(lines)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:  # reads the header only
            return upright_size(image)
    except (OSError, Image.DecompressionBombError):  # a format only OpenCV reads
        height, width = decode_image(path).shape[:2]
        return width, height


def _entry(indices, names, classes) -> dict:
    return {
        "files": [names[i] for i in indices],
        "classes": [classes[i] for i in indices],
        "cross_class": len({classes[i] for i in indices}) > 1,
    }


# --------------------------------------------------------------------------- shortcut checks


def histogram_features(images: np.ndarray) -> np.ndarray:
    """Per-channel RGB histograms of whole images, each normalised to sum 1: (N, 3 * bins).

    ``HISTOGRAM_BLOCK`` images at a time: their pixels as bin numbers take 16 bytes a value
    (all 5,000 images of 64 px at once took 1 GB beside their 61 MB of pixels)."""
    images = np.asarray(images)
    n = len(images)
    pixels = images.reshape(n, -1, 3)
    histograms = np.empty((n, 3 * HISTOGRAM_BINS), np.float32)
    for start in range(0, n, HISTOGRAM_BLOCK):
        block = pixels[start:start + HISTOGRAM_BLOCK]
        bins = (block.astype(np.int64) * HISTOGRAM_BINS) // 256
        # One bincount for the block: offset each (image, channel) pair into its own run of bins.
        offsets = (np.arange(len(block))[:, None, None] * 3 + np.arange(3)) * HISTOGRAM_BINS
        counts = np.bincount((bins + offsets).ravel(), minlength=len(block) * 3 * HISTOGRAM_BINS)
        histograms[start:start + len(block)] = counts.reshape(len(block), -1) / pixels.shape[1]
    return histograms


def background_mask(image: np.ndarray) -> np.ndarray:
    """Pixels of the empty glass between the cells: True where no cell is.

    A stained smear has three populations: background (bright, grey), red cells (pink or
    pinkish grey) and nuclei (dark purple). A pixel counts as stained when it lies above the
    lower three-class Otsu threshold of either its optical density (darkness against the
    brightest glass, which catches pale grey red cells) or its saturation (which catches pale
    pink ones). The stained part is then grown by a few pixels so that blurred cell borders do
    not count as background.
    """
    pixels = image.astype(np.float32) + 1.0
    glass = np.percentile(pixels.reshape(-1, 3), 99, axis=0)
    density = np.clip(-np.log(pixels / glass), 0, None).sum(axis=2)
    stained = np.zeros(image.shape[:2], bool)
    for channel in (np.clip(density * 128, 0, 255).astype(np.uint8),   # OD 0..2 -> 0..255
                    cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1]):
        channel = cv2.GaussianBlur(channel, (3, 3), 0)
        stained |= channel > _otsu3_low_threshold(channel)
    grow = max(1, round(image.shape[0] / 32))
    stained = cv2.dilate(stained.astype(np.uint8),
                         cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    background = stained == 0
    if background.mean() < 0.02:  # a field packed with cells: take its brightest pixels instead
        background = density <= np.quantile(density, 0.05)
    return background


def _otsu3_low_threshold(gray: np.ndarray, bins: int = 64) -> int:
    """Lower threshold of the three-class Otsu split of an 8-bit image (exhaustive search over
    ``bins`` levels: precise enough for a mask, and 16 times fewer pairs than 256)."""
    step = 256 // bins
    p = np.bincount(gray.ravel() // step, minlength=bins).astype(np.float64)
    p /= p.sum()
    levels = np.arange(bins)
    w = np.cumsum(p)                 # class weight of [0, t]
    m = np.cumsum(p * levels)        # first moment of [0, t]
    t1, t2 = np.triu_indices(bins - 1, k=1)   # classes [0, t1], (t1, t2], (t2, bins)
    w0, w1, w2 = w[t1], w[t2] - w[t1], 1.0 - w[t2]
    m0, m1, m2 = m[t1], m[t2] - m[t1], m[-1] - m[t2]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.nan_to_num(m0 ** 2 / w0) + np.nan_to_num(m1 ** 2 / w1) + np.nan_to_num(m2 ** 2 / w2)
    return int(t1[np.argmax(between)]) * step + step - 1


def background_features(images: np.ndarray) -> np.ndarray:
    """Colour statistics of the background only: mean, std and 10/50/90th percentiles of
    R, G, B, saturation and value over :func:`background_mask`: (N, 25)."""
    rows = []
    for image in np.asarray(images):
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        channels = np.concatenate([image, hsv[:, :, 1:]], axis=2)[background_mask(image)].astype(np.float32)
        rows.append(np.concatenate([channels.mean(0), channels.std(0),
                                    np.percentile(channels, [10, 50, 90], axis=0).ravel()]))
    return np.array(rows, dtype=np.float32)


def chance_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class."""
    return float(np.bincount(np.asarray(labels)).max() / len(labels)) if len(labels) else 0.0


def shortcut_scores(images: np.ndarray, labels: np.ndarray, groups: np.ndarray, *,
                    folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold accuracy of a random forest on colour histograms and on background colour.

    ``None`` scores mean the data cannot be split (fewer than two classes, or a class with
    fewer than two groups).
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    result = {"histogram_acc": None, "background_acc": None, "chance": round(chance_accuracy(labels), 4)}
    present = np.unique(labels)
    if len(present) < 2:
        return result
    n_splits = min(folds, min(len(np.unique(groups[labels == c])) for c in present))
    if n_splits < 2:
        return result
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for key, features in (("histogram_acc", histogram_features(images)),
                          ("background_acc", background_features(images))):
        model = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed)
        predicted = cross_val_predict(model, features, labels, groups=groups, cv=cv)
        result[key] = round(float(np.mean(predicted == labels)), 4)
    return result
