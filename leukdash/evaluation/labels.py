"""Names of runs for people: one labelling used by every page and the command line.

A run is named by its model and by the settings that differ from the runs shown beside it
(its *facets*: optimizer, epochs, preprocessing, protocol, seed, dataset...), then by its short
run id, so two runs never read alike and a name never repeats what all of them share.
Each function takes finished results (``load_result``) or store entries (``list_runs``) alike.
"""

from __future__ import annotations

from leukdash import ENGINE_VERSION
from leukdash.config import AugmentConfig, dataset_parts

MODEL_NAMES = {"cnn": "CNN", "nb": "Naive Bayes", "svm": "SVM", "knn": "k-NN", "dt": "Decision tree"}
PAPER_CLASSES = ("ALL", "AML", "CLL", "CML", "HEALTHY")
FIVE_CLASS_TASK = "5 classes"
CNN_ONLY = ("architecture", "optimizer", "learning_rate", "epochs", "batch_size")


def model_name(config: dict) -> str:
    """The model alone: 'CNN paper', '3-NN on pixels', 'Ensemble (CNN paper + SVM on features)'."""
    if config["model"] == "ensemble":
        return ensemble_name(config, model_name)
    if config["model"] == "cnn":
        return f"CNN {config.get('architecture', 'paper')}"
    name = f"{config.get('k', 3)}-NN" if config["model"] == "knn" else MODEL_NAMES[config["model"]]
    return f"{name} on {config.get('feature_set', 'pixels')}"


def ensemble_name(config: dict, member_name) -> str:
    """'Ensemble (CNN paper + SVM on features)', each member named by ``member_name``; with
    unequal weights each member's share of the vote: 'Ensemble (CNN paper 0.75 + SVM on features 0.25)'."""
    weights = config.get("weights") or []
    shares = weights if len(set(weights)) > 1 else [None] * len(config["member_configs"])
    return "Ensemble (" + " + ".join(member_name(member) + ("" if share is None else f" {share:.2g}")
                                     for member, share in zip(config["member_configs"], shares)) + ")"


def task_name(classes) -> str:
    """'ALL vs HEALTHY', '5 classes' (the paper's two tasks), 'AML vs CML', '3 classes'..."""
    classes = list(classes)
    if len(classes) == 2:
        return " vs ".join(classes)
    if sorted(classes) == sorted(PAPER_CLASSES):
        return FIVE_CLASS_TASK
    return f"{len(classes)} classes"


def augmentation_text(config: dict) -> str:
    """'none' or 'x8, strict' from a run config, with the robustness transforms (not in the paper) named:
    'x8 + stain jitter 0.1, blur 1, strict', or without the paper's: 'x8 (blur 1 only), strict'. An
    ensemble's is its members' (it trains nothing itself), or 'members differ'."""
    if config.get("model") == "ensemble":
        texts = {augmentation_text(member) for member in config.get("member_configs", [])}
        return texts.pop() if len(texts) == 1 else "members differ"
    augment = config.get("augment") or {}
    if config.get("augment_factor", 1) <= 1 or not any(augment.get(name) for name in AugmentConfig.TRANSFORMS):
        return "none"
    robust = ", ".join(f"{name.replace('_', ' ')} {augment[name]:g}"
                       for name in AugmentConfig.OPTIONAL if augment.get(name))
    if robust and not any(augment.get(name) for name in AugmentConfig.TRANSFORMS if name not in AugmentConfig.OPTIONAL):
        robust = f" ({robust} only)"  # copies made by these alone, none of the paper's transforms
    elif robust:
        robust = f" + {robust}"
    return f"x{config['augment_factor']}{robust}, {config['protocol']}"


def setting_text(config: dict, axis: str) -> str:
    """A setting of a run as a short text: 'CNN paper' for the model, 'default' for no learning
    rate, '–' for a setting the model does not have (k of a CNN)."""
    if axis == "model":
        cnn = config["model"] == "cnn"
        return f"CNN {config.get('architecture', 'paper')}" if cnn else MODEL_NAMES[config["model"]]
    value = config.get(axis)
    if axis == "augment":
        on = [name.replace("_", " ") for name in AugmentConfig.TRANSFORMS if (value or {}).get(name)]
        paper = [name.replace("_", " ") for name in AugmentConfig().enabled()]
        return "none" if not on or config.get("augment_factor", 1) <= 1 else \
            "the paper's" if on == paper else ", ".join(on)
    irrelevant = (config["model"] == "cnn" and axis in ("feature_set", "k")) or (
        config["model"] != "cnn" and axis in CNN_ONLY)
    if irrelevant or (axis == "k" and config["model"] != "knn"):
        return "–"
    if value is None:
        return "default"
    return f"{value:g}" if isinstance(value, float) else str(value)


def size_text(config: dict) -> str:
    """'32 px'; an ensemble's members' sizes where they differ ('16/32 px'): its stored size is the largest."""
    members = config.get("member_configs") or [config]
    sizes = sorted({member.get("image_size") for member in members})  # one, unless members differ
    return "/".join(map(str, sizes)) + " px"


def _folds_text(config: dict, dataset: dict, folds: int | None) -> str:
    if config.get("test_fraction") is not None:
        return f"holdout {config['test_fraction']:.0%}"
    return f"{folds if folds is not None else config.get('folds')} folds"


def _sources_text(config: dict) -> str | None:
    """How a run on several datasets weighs them (None for a run on one: nothing to weigh)."""
    if len(dataset_parts(str(config.get("dataset") or ""))) < 2:
        return None
    return "sources balanced" if config.get("balance_sources") else "sources pooled"


def _cnn(text):
    """A facet only CNNs have (None for the classic models, so it never tells them apart)."""
    return lambda config, dataset, folds: text(config) if config["model"] == "cnn" else None


# name: (table header, the facet's text in a label)
FACETS = {
    "optimizer": ("Optimizer", _cnn(lambda c: c.get("optimizer"))),
    "learning_rate": ("Learning rate", _cnn(lambda c: f"lr {setting_text(c, 'learning_rate')}")),
    "epochs": ("Epochs", _cnn(lambda c: f"{c.get('epochs')} ep")),
    "batch_size": ("Batch", _cnn(lambda c: f"batch {c.get('batch_size')}")),
    "preprocess": ("Preprocessing", lambda c, d, f: c.get("preprocess") or "raw"),
    "balance_sources": ("Sources", lambda c, d, f: _sources_text(c)),
    "protocol": ("Protocol", lambda c, d, f: c.get("protocol", "strict")),
    "augment": ("Augmentation", lambda c, d, f: f"aug {augmentation_text(c)}"),
    "dataset": ("Dataset", lambda c, d, f: d.get("name", "?")),
    "task": ("Task", lambda c, d, f: task_name(d.get("classes") or [])),
    "image_size": ("Size", lambda c, d, f: size_text(c)),
    "folds": ("Folds", _folds_text),
    "seed": ("Seed", lambda c, d, f: f"seed {c.get('seed', 0)}"),
}


def _parts(run: dict) -> tuple[dict, dict, int | None]:
    """Config, dataset and fold count of a result or of a store entry."""
    if "config" in run:
        return run["config"], run.get("dataset") or {}, len(run["folds"]) if "folds" in run else None
    meta = run.get("meta") or {}
    folds = meta.get("fold_ids")
    return meta.get("config") or {}, meta.get("dataset") or {}, len(folds) if folds is not None else None


def facet_texts(run: dict) -> dict[str, str | None]:
    """Every facet of one run as its label text (None where the run's model has no such setting)."""
    config, dataset, folds = _parts(run)
    return {name: text(config, dataset, folds) for name, (_, text) in FACETS.items()}


def varying_facets(runs: list[dict]) -> list[str]:
    """The facets that take more than one value among ``runs`` (counted where they exist), in
    :data:`FACETS` order."""
    texts = [facet_texts(run) for run in runs if _parts(run)[0]]
    return [name for name in FACETS if len({t[name] for t in texts if t[name] is not None}) > 1]


def _engine_text(run: dict, config: dict | None) -> str | None:
    """'engine 2' for a run of another engine than this one (None for this one's): the same
    settings can give other results under another engine, a CNN other weights. Not for an
    ensemble: its record holds the engine of the session that combined its members, not theirs."""
    if config and config.get("model") == "ensemble":
        return None
    versions = run.get("versions") or (run.get("meta") or {}).get("versions") or {}
    engine = versions.get("engine")
    return None if engine is None or str(engine) == ENGINE_VERSION else f"engine {engine}"


def short_id(run_id: str) -> str:
    """The first six characters of a run id's hash: 'knn-0be321a1504b' -> '0be321'."""
    return run_id.rsplit("-", 1)[-1][:6]


def _told_by_images(runs: list[dict], heads: list[str]) -> list[str]:
    """``heads`` (labels before the id) with the number of images added where runs alike in every
    facet were trained on other images (one folder before and after images were added or removed):
    otherwise only their short ids would tell them apart. Where counts are alike (images relabelled or
    replaced), each count is followed by the start of its images' fingerprint."""
    told = list(heads)
    for head in {head for head in heads if heads.count(head) > 1}:
        alike = [i for i, other in enumerate(heads) if other == head]
        datasets = [_parts(runs[i])[1] for i in alike]
        if len({dataset.get("fingerprint") for dataset in datasets}) < 2:
            continue  # the same images: their settings differ in what no facet shows (the id tells them apart)
        counts = [dataset.get("n_images") for dataset in datasets]
        for i, dataset, n_images in zip(alike, datasets, counts):
            told[i] = f"{head} · {n_images} images" + (
                "" if len(set(counts)) == len(counts) else f" {str(dataset.get('fingerprint'))[:6]}")
    return told


def run_labels(runs: list[dict]) -> list[str]:
    """A distinct label per run: its model, the facets that differ among ``runs``, its engine if not
    this one's, its short id ('3-NN on pixels · cell-keep-gray · seed 1 · engine 2 · 0be321'); the
    full run id if short ids collide."""
    varying = varying_facets(runs)
    heads = []
    for run in runs:
        config = _parts(run)[0]
        texts = facet_texts(run)
        head = [model_name(config) if config else "?"] + [texts[name] for name in varying if texts[name] is not None]
        engine = _engine_text(run, config)
        heads.append(" · ".join(head + ([engine] if engine else [])))
    heads = _told_by_images(runs, heads)
    ids = [short_id(run["run_id"]) for run in runs]
    if len(set(ids)) < len(ids):
        ids = [run["run_id"] for run in runs]
    return [f"{head} · {run_id}" for head, run_id in zip(heads, ids)]
