"""Two processes on one store, and a store that changes under a command: what each command says
and leaves behind (a run being computed elsewhere, a second refit, a run deleted meanwhile, an
interrupted command that computes no folds)."""

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from leukdash.cli import main
from leukdash.config import AugmentConfig, RunConfig
from leukdash.engine.ensemble import create_ensemble
from leukdash.engine.final import refit
from leukdash.engine.runner import finished_result, load_result, run
from leukdash.engine.store import RunStore
from leukdash.errors import RunError
from leukdash.evaluation.run_cache import write_run_cache

ROOT = Path(__file__).resolve().parent.parent


def _config(dataset: Path, **changes) -> RunConfig:
    values = dict(dataset=str(dataset), model="nb", feature_set="features", image_size=16, augment_factor=1,
                  augment=AugmentConfig.off(), folds=2)
    return RunConfig(**{**values, **changes})


@contextmanager
def held_elsewhere(run_id: str, seconds: float):
    """Another process holding the run's lock for ``seconds`` (from when this enters)."""
    code = (f"import time\nfrom leukdash.engine.store import RunStore\nwith RunStore().lock({run_id!r}):\n"
            f"    print('held', flush=True)\n    time.sleep({seconds})\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_run_being_computed_elsewhere_is_said_to_be_so_not_damaged(tiny_dataset):
    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    store = RunStore()
    (store.run_dir(run_id) / "summary.json").unlink()  # as it is until its last fold is done
    with held_elsewhere(run_id, 60):
        with pytest.raises(RunError, match="another process is computing it now") as error:
            finished_result(run_id)
        assert "missing or damaged" not in str(error.value)


def test_a_second_refit_waits_for_the_first_process_then_refits(tiny_dataset):
    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    said = []
    with held_elsewhere(run_id, 2) as holder:
        record = refit(run_id, on_wait=said.append)
        assert holder.poll() is not None  # it waited for the lock to be released
    assert said == [f"another process holds run {run_id}: waiting for it"] and not record["cached"]
    assert refit(run_id)["cached"]


def test_a_run_deleted_during_an_external_test_gets_no_folder_back(tiny_dataset, inverted_lab, monkeypatch):
    import leukdash.evaluation.evaluate as module

    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    folder = RunStore().run_dir(run_id)
    computed = module._compute

    def deleted_meanwhile(*args):
        result = computed(*args)
        shutil.rmtree(folder)
        return result

    monkeypatch.setattr(module, "_compute", deleted_meanwhile)
    assert module.evaluate(run_id, str(inverted_lab))["n_images"] == 40  # answered from memory
    assert not folder.exists()
    write_run_cache(folder, "ood", {"method": "x"}, {"features": np.zeros((2, 2))})
    assert not folder.exists()


def test_an_ensemble_with_weights_that_are_not_numbers_is_damaged(tiny_dataset):
    members = [run(_config(tiny_dataset, model=model), n_jobs=1)["run_id"] for model in ("nb", "dt")]
    made = create_ensemble(members)["run_id"]
    meta_path = RunStore().run_dir(made) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["config"]["weights"] = [float("nan"), 1.0]  # a hand edit: JSON allows NaN
    meta_path.write_text(json.dumps(meta))
    assert load_result(made) is None and not meta_path.exists()
    assert [p.name for p in meta_path.parent.glob("meta.json.damaged-*")] != []  # moved aside, not lost


@pytest.mark.parametrize("command, said", [
    (["refit", "some-run"], "interrupted: what it stores is written whole or not at all; run the same command again"),
    (["run", "synthetic"], "interrupted: finished folds are kept; run the same command again to resume"),
])
def test_an_interrupted_command_says_what_it_keeps(command, said, monkeypatch, capsys):
    import leukdash.cli.commands as commands

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, command[0], interrupted)
    assert main(command) == 130
    assert capsys.readouterr().err.strip() == said


def test_a_finished_run_stays_finished_while_another_process_refits_it(tiny_dataset):
    """`refit` holds a finished run's lock while it trains the final model: the run was listed as
    running meanwhile, so the pages dropped it ("no longer in the store") and Predict lost the choice."""
    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    store = RunStore()
    with held_elsewhere(run_id, 60):
        assert store.is_locked(run_id)
        [entry] = store.list_runs()
        assert entry["status"] == "complete"
        (store.run_dir(run_id) / "summary.json").unlink()  # a run whose folds are being computed
        assert [e["status"] for e in store.list_runs()] == ["running"]
    assert not store.is_locked("nb-000000000000") and not store.run_dir("nb-000000000000").exists()


def _two_runs(dataset: Path) -> list[str]:
    return [run(_config(dataset, model=model), n_jobs=1)["run_id"] for model in ("nb", "knn")]


def test_an_ensemble_stored_by_another_process_at_the_same_moment_is_waited_for(tiny_dataset):
    """Two `ensemble A B` at once: the second waits for the first's lock, as `run` and `refit` do, and
    answers the ensemble (it said 'being computed by another process' and exited 2)."""
    from leukdash.engine.ensemble import ensemble_id

    members = _two_runs(tiny_dataset)
    said = []
    with held_elsewhere(ensemble_id(members), 4):
        held_from = time.monotonic()
        made = create_ensemble(members, on_wait=said.append)
        waited = time.monotonic() - held_from
    assert made["run_id"] == ensemble_id(members) and made["summary"]["val_acc"]["mean"] > 0
    assert said == [f"another process holds run {ensemble_id(members)}: waiting for it"]  # not a silent wait
    assert waited > 3.5  # it stored only once the other process let go of the lock (4 s after it took it)


def test_a_member_losing_a_file_while_its_ensemble_is_stored_is_named(tiny_dataset, monkeypatch):
    """A member deleted or recomputed while the ensemble's votes are stored: one RunError naming the
    member (it was a TypeError traceback, the ensemble left partial without a word)."""
    from leukdash.engine import ensemble

    members = _two_runs(tiny_dataset)
    voted = ensemble.ensemble_folds

    def vote_then_lose_a_model(*args):
        folds = voted(*args)
        (RunStore().run_dir(members[1]) / "models" / "fold_1.skops").unlink()  # `rm` from another terminal
        return folds

    monkeypatch.setattr(ensemble, "ensemble_folds", vote_then_lose_a_model)
    with pytest.raises(RunError, match=rf"member run\(s\) {members[1]} gone or not whole"):
        ensemble.create_ensemble(members)


def test_a_final_model_asked_for_while_a_refit_trains_it_says_to_wait_for_it(tiny_dataset):
    """`evaluate RUN DIR --model final` while `refit RUN` runs said to run the refit that was running."""
    from leukdash.engine.final import require_final_models

    run_id = run(_config(tiny_dataset), n_jobs=1)["run_id"]
    with held_elsewhere(run_id, 30), pytest.raises(RunError, match="another process holds the run now") as said:
        require_final_models(run_id, RunStore())
    assert "wait for it to end" in str(said.value)
