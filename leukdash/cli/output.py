"""What the commands print: run summaries as text or JSON, progress lines, prediction checks."""

from __future__ import annotations

import json
import os

from leukdash.errors import LeukdashError


class GuardedOutput:
    """A command's standard output whose failed write (a full disk behind ``>``, ``/dev/full``) is
    one line naming it: the OSError names no file, and would otherwise read as the run store's.
    A reader that went away (``| head``) still raises BrokenPipeError, which ends a command quietly."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self._guarded(self.stream.write, text)

    def flush(self) -> None:
        self._guarded(self.stream.flush)

    def __getattr__(self, name):
        return getattr(self.stream, name)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise LeukdashError(f"cannot write this command's output (standard output): {error.strerror or error}; "
                                "what it stored is kept") from error


def run_json(result: dict) -> dict:
    from leukdash.evaluation.compare import calibration_note, collapse_of, ties_note
    from leukdash.metrics import shown_summary

    keep = ("fold", "val_acc", "val_loss", "train_acc", "train_loss", "balanced_acc", "macro_f1", "seconds",
            "per_class_recall", "confusion", "n_train", "n_train_balanced", "n_val", "held_out", "per_source")
    dataset = result["dataset"]
    return {
        "run_id": result["run_id"], "cached": result["cached"], "computed_folds": result["computed_folds"],
        "config": result["config"],
        "dataset": {"name": dataset["name"], "fingerprint": dataset["fingerprint"],
                    "n_images": dataset["n_used"], "classes": dataset["classes"], "synthetic": dataset["synthetic"],
                    "warnings": dataset.get("warnings", [])},
        "folds": [{k: fold[k] for k in keep if k in fold} for fold in result["folds"]],
        "summary": shown_summary(result["summary"], len(result["folds"])), "versions": result["versions"],
        "seconds": round(result["seconds"], 3),
        "collapse": collapse_of(result), "ties": ties_note(result),  # as compare --json gives them
        "calibration": calibration_note(result),
    }


def run_text(result: dict) -> str:
    from leukdash.evaluation.compare import calibration_note, collapse_of, ties_note
    from leukdash.metrics import ci_text, std_text

    config, summary = result["config"], result["summary"]
    head = f"run {result['run_id']} ({'cached' if result['cached'] else 'computed'}) " \
           f"{config['model']} on {result['dataset']['name']}, {len(result['folds'])} fold(s), {config['protocol']}" \
           + (", sources balanced" if config.get("balance_sources") else "")
    lines = [head]
    if config["model"] == "ensemble":
        lines.append("soft vote of " + ", ".join(f"{member} (weight {weight:.3g})"
                                                 for member, weight in zip(config["members"], config["weights"])))
    if config.get("test_fraction") is None and config["protocol"] != "lodo" and len(result["folds"]) < config["folds"]:
        lines.append(f"({len(result['folds'])} of the {config['folds']} folds asked: a group never straddles folds, "
                     "and with more a fold would hold no image of a class)")
    lines += [f"{'fold':>4} {'val_acc':>8} {'val_loss':>9} {'train_acc':>9} {'bal_acc':>8} {'macro_f1':>8} {'sec':>6}"]
    for fold in result["folds"]:
        if "held_out" in fold:
            lines.append(f"fold {fold['fold'] + 1} validates on {fold['held_out']} (trained on the other datasets):")
        # An ensemble run trains nothing: no training figures or time of its own.
        trained = f"{fold['train_acc']:>9.4f}" if "train_acc" in fold else f"{'-':>9}"
        seconds = f"{fold['seconds']:>6.1f}" if "seconds" in fold else f"{'-':>6}"
        lines.append(f"{fold['fold'] + 1:>4} {fold['val_acc']:>8.4f} {fold['val_loss']:>9.4f} {trained} "
                     f"{fold['balanced_acc']:>8.4f} {fold['macro_f1']:>8.4f} {seconds}")
    acc, n_folds = summary["val_acc"], len(result["folds"])
    lines.append(f"mean val_acc {acc['mean']:.4f} (std {std_text(acc, n_folds)}, min {acc['min']:.4f}, "
                 f"max {acc['max']:.4f}, {ci_text(acc, n_folds)})")
    # A model giving one class to nearly every image (its figures are that class's share), and ties, are said from
    # the stored out-of-fold answers.
    note, ties, reversed_folds = collapse_of(result), ties_note(result), calibration_note(result)
    return "\n".join(lines + ([f"note: {note}"] if note else []) + ([f"warning: {ties}"] if ties else [])
                      + ([f"warning: {reversed_folds}"] if reversed_folds else [])
                      + sources_text(summary.get("per_source") or {}))


def final_text(record: dict) -> str:
    """What refit says: the final model(s) trained on every image of the run."""
    if "members" in record:
        return "\n".join(final_text(member) for member in record["members"])
    return (f"final model of {record['run_id']} ({'cached' if record['cached'] else 'trained'}): {record['n_train']} "
            f"images, training accuracy {record['train_acc']:.4f}, {record['seconds']:.1f} s")


def sources_text(per_source: dict) -> list[str]:
    # Pooled figures lead: a source's folds can differ much in size and in the classes they hold.
    # Per-group recall is listed for sources with few groups (subjects); an ALL-IDB image is a group.
    from leukdash.evaluation.evaluation_text import MAX_GROUPS_LISTED

    lines = []
    for name, source in per_source.items():
        pooled, acc = source["pooled"], source["val_acc"]
        recall = "  ".join(f"{c} {r:.4f}" for c, r in pooled["per_class_recall"].items())
        lines.append(f"{name} ({source['n_val']} images): val_acc {pooled['val_acc']:.4f}  "
                     f"bal_acc {pooled['balanced_acc']:.4f}  recall {recall}  "
                     f"(over {source['folds']} fold(s): mean {acc['mean']:.4f}, min {acc['min']:.4f}, max {acc['max']:.4f})")
        groups = source["per_group_recall"]
        if len(groups) <= MAX_GROUPS_LISTED:
            lines.append(f"  per-group recall: {'  '.join(f'{g} {r:.2f}' for g, r in groups.items())}")
    return lines


def sweep_settings(config: dict, axes: dict | None) -> str:
    """The settings a sweep varies, e.g. ``model=cnn optimizer=adam``, an augmentation by its name (``blur=1`` for
    the axis ``augment.blur``); one that the run does not use (``k`` of naive Bayes, an augmentation without
    augmented copies) reads ``k=unused``, not the value its run was stored with."""
    from leukdash.config import RunConfig, setting_form

    # setting_form, not canonical(): the raw preprocessing, left out of run ids, is a setting the run used
    kept = {**setting_form(RunConfig.from_dict(config)), "dataset": config["dataset"]}

    def shown(name: str) -> str:
        if name.startswith("augment."):
            name = name.removeprefix("augment.")
            return f"{name}={config['augment'][name]:g}" if kept["augment"] else f"{name}=unused"
        return f"{name}={config[name] if name in kept else 'unused'}"

    return " ".join(shown(name) for name in axes or {}) or config["model"]


def print_answers(entries: list[dict]) -> None:
    """Each prediction of ``predict_files`` on a line (or why its file could not be read), its checks below it."""
    for entry in entries:
        if "error" in entry:
            print(f"{entry['file']}: cannot read: {entry['error']}")
        else:
            from leukdash.evaluation.answer import headline

            answer = headline(entry)  # a known image: the fold model that never trained on it, as Predict shows
            probs = "  ".join(f"{c} {p:.3f}" for c, p in answer["probabilities"].items())
            source = (f"out-of-fold: fold {entry['known']['fold']}'s model, which never trained on it"
                      if answer["source"] == "out-of-fold" else
                      f"folds agreeing {entry['agreement']}/{entry['n_folds']}{_tied_folds(entry)}")
            print(f"{entry['file']}: {answer['predicted']} ({source})  {probs}")
            print_checks(entry)


def _tied_folds(entry: dict) -> str:
    """", N tied" for the fold models whose top classes tied (they agree with no class), else nothing."""
    tied = entry["fold_predictions"].count(None)
    return f", {tied} tied" if tied else ""


def print_checks(entry: dict) -> None:
    """A note on the file, the warnings and the known-image answer of one prediction."""
    from leukdash.evaluation.answer import apart, conflicting_labels, headline, shown_percentile

    ood, known, answer = entry.get("ood") or {}, entry.get("known"), headline(entry)
    if entry.get("note"):
        print(f"  note: {entry['note']}")
    if answer["disagreement"]:  # a tie, a vote against the mean, a known image's honest answer
        print(f"  uncertain: {answer['disagreement']}")
    if ood.get("outside"):
        seen = ("the acquisition (the whole image as the camera gave it): it comes from a lab the run never saw"
                if ood.get("view") == "acquisition" else "the prepared cell (as the models see it)")
        print(f"  WARNING: unlike the run's training images in {seen} (distance score {ood['score']:.2f}, above "
              f"{shown_percentile(ood['percentile'])} of its own validation images): the prediction is not reliable")
    if (entry.get("cell") or {}).get("failure"):
        print(f"  cell segmentation: {entry['cell']['failure']}: {entry['cell']['meaning']}")
    if (entry.get("likely_wrong") or {}).get("flag"):
        wrong = entry["likely_wrong"]
        whose = "the out-of-fold answer's" if answer["source"] == "out-of-fold" else "its"
        confidence, floor = apart(wrong["confidence"], wrong["floor"])
        print(f"  likely wrong: {whose} top probability {confidence} is below {floor}, "
              "lower than 95% of the run's own out-of-fold answers")
    if (entry.get("unsupported") or {}).get("flag"):
        score, floor = apart(entry["unsupported"]["score"], entry["unsupported"]["floor"])
        print(f"  unsupported: a training image of another class lies near it (trust score {score}, "
              f"below {floor}, lower than 95% of the run's own out-of-fold answers)")
    if known and "error" not in known:
        also = "".join(f", also {copy['file']} ({copy['class']})" for copy in known.get("also", []))
        conflict = conflicting_labels(known)
        print(f"  known image: {known['match']} to {known['file']} ({known['class']}){also}"
              + (f": filed under {' and '.join(conflict)} in this run, the labels conflict" if conflict else "") + "; "
              + (f"fold {known['fold']}'s model, which did not train on it, predicts {known['prediction']}"
                 if known["fold"] else "every model trained on it"))


class ProgressLine:
    """A one-line progress bar on a terminal; one line per finished fold elsewhere (logs)."""

    def __init__(self, stream):
        # A terminal that cannot move its cursor (TERM=dumb: an editor's shell) would show the codes as text.
        self.stream, self.events = stream, []
        self.live = stream.isatty() and os.environ.get("TERM") != "dumb"

    def update(self, event: dict) -> None:
        from leukdash.engine.progress import format_progress_line, latest_state

        self.events.append(event)
        # Something the run waits for: a line of its own; without a terminal, the images' loading too (a terminal's
        # progress line says it).
        if event.get("event") == "message" or (event.get("event") == "loading" and not self.live):
            self.stream.write(("\r\033[K" if self.live else "") + f"{event['message']}\n")
        if self.live:
            self.stream.write("\r\033[K" + format_progress_line(latest_state(self.events)))
        elif event.get("event") == "fold_done":
            self.stream.write(f"fold {event['fold'] + 1}/{event['n_folds']} done: val_acc {event['metrics']['val_acc']:.4f}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live and self.events:
            self.stream.write("\n")
            self.stream.flush()


class SweepLog:
    """One line per finished fold and run of a sweep (several runs progress at once)."""

    def __init__(self, stream):
        self.stream = stream

    def update(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "fold_done":
            self.stream.write(f"{event['run_id']}: fold {event['fold'] + 1}/{event['n_folds']} done, "
                              f"val_acc {event['metrics']['val_acc']:.4f} ({event['seconds']:.0f} s)\n")
        elif kind == "done":
            self.stream.write(f"{event['run_id']}: done\n")
        elif kind in ("message", "failed"):
            self.stream.write(f"{event.get('run_id', '')}: {event.get('message', kind)}\n")
        else:
            return
        self.stream.flush()


def print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def print_report(args, report: dict, format_text) -> None:
    """A command's result: as JSON with ``--json``, else as ``format_text`` writes it."""
    if args.json:
        print_json(report)
    else:
        print(format_text(report))
