"""Deployment modes: a viewer offers no launch and no dataset upload on any page and says why;
settings come from the environment first, then Streamlit secrets."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from leukdash.data.synthetic import CLASSES, generate_synthetic
from leukdash.service.deployment import Deployment, read_deployment
from leukdash.errors import ConfigError
from test_app import APP, TIMEOUT, choose_tiny_runs, open_page, shown, wait_for_jobs

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted(p.stem for p in (REPO / "pages").glob("*.py") if not p.name.startswith("_"))
SHIPPED_RUN = next((REPO / "artifacts" / "runs").glob("nb-*"))  # a shipped demo run, so Predict shows its uploader
LAUNCHING = ("Launch", "Cancel", "Run external test")  # what starts computing (and storing) a result


@pytest.fixture(autouse=True)
def app_env(tmp_path, monkeypatch, isolated_artifacts):
    generate_synthetic(tmp_path / "data" / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    monkeypatch.setenv("LEUKDASH_DATA", str(tmp_path / "data"))
    shutil.copytree(SHIPPED_RUN, isolated_artifacts / "runs" / SHIPPED_RUN.name)
    st.cache_data.clear()
    yield
    st.cache_data.clear()


def uploaders(at: AppTest) -> list[str]:
    return [u.key for u in at.get("file_uploader")]


def texts(at: AppTest) -> str:
    return " ".join(e.value for kind in ("info", "caption", "markdown") for e in at.get(kind))


def test_viewer_has_no_launch_or_upload_control_on_any_page(monkeypatch):
    monkeypatch.setenv("LEUKDASH_MODE", "viewer")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert {"data", "experiments", "predict"} <= set(PAGES)
    for page in PAGES:
        open_page(at, page)
        assert not [b.label for b in at.button if b.label.startswith(LAUNCHING)], page
        # Predicting one's own image with a stored run stays allowed: it is not a dataset upload.
        assert uploaders(at) == (["predict_upload"] if page == "predict" else []), page
        if page == "experiments":
            [info] = at.info
            assert "viewer (LEUKDASH_MODE=viewer): training and dataset uploads are off" in info.value
            assert not at.get("multiselect") and not at.get("number_input")
        if page == "data":
            assert "dataset uploads are off" in texts(at)


def test_viewer_overview_without_runs_sends_to_no_page_that_is_off(monkeypatch, isolated_artifacts):
    monkeypatch.setenv("LEUKDASH_MODE", "viewer")
    shutil.rmtree(isolated_artifacts / "runs")
    at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "overview")
    assert not at.exception
    [info] = at.info
    assert info.value.startswith("No finished runs yet") and "training and uploads are off" in info.value
    assert "Go to Experiments" not in [link.proto.label for link in at.get("page_link")]


def test_upload_limits_shown_are_streamlits_cap_where_that_is_smaller(monkeypatch):
    """Streamlit's server refuses a file above server.maxUploadSize, whatever leukdash allows."""
    monkeypatch.setenv("LEUKDASH_MAX_UPLOAD_MB", "500")
    cap = st.get_option("server.maxUploadSize")
    st.config.set_option("server.maxUploadSize", 20)
    try:
        at = open_page(AppTest.from_file(str(APP), default_timeout=TIMEOUT).run(), "data")
        [warning] = at.warning
        assert "LEUKDASH_MAX_UPLOAD_MB) is 500 MB" in warning.value and "raise maxUploadSize" in warning.value
        [zip_upload] = at.get("file_uploader")
        assert zip_upload.proto.max_upload_size_mb == 20 and "Up to 20 MB" in zip_upload.proto.help
        at = open_page(at, "predict")
        assert at.get("file_uploader")[0].proto.max_upload_size_mb == 20 and "up to 20 MB" in texts(at)
    finally:
        st.config.set_option("server.maxUploadSize", cap)


def test_open_mode_offers_both(monkeypatch):
    """The same checks find the controls when they are there."""
    monkeypatch.delenv("LEUKDASH_MODE", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert uploaders(open_page(at, "data")) == ["zip_upload"]
    assert any(b.label.startswith("Launch") for b in open_page(at, "experiments").button)


def test_mode_from_secrets_and_the_environment_wins(monkeypatch):
    monkeypatch.delenv("LEUKDASH_MODE", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["mode"] = "viewer"
    at.run()
    assert "training and dataset uploads are off" in open_page(at, "experiments").info[0].value
    monkeypatch.setenv("LEUKDASH_MODE", "open")
    assert any(b.label.startswith("Launch") for b in open_page(at, "experiments").button)


def test_a_wrong_mode_is_one_line_and_nothing_else(monkeypatch):
    monkeypatch.setenv("LEUKDASH_MODE", "public")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Deployment setting: LEUKDASH_MODE must be 'open' or 'viewer', got 'public'"]
    assert not at.title


def test_a_store_that_is_a_file_is_one_line_and_nothing_else(monkeypatch, tmp_path):
    (tmp_path / "store").write_text("a file, not a folder")
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(tmp_path / "store"))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == [f"Deployment setting: LEUKDASH_ARTIFACTS names {tmp_path / 'store'}, which "
                                           "is not a folder: point it at a folder (it is created if missing)"]
    assert not at.button and not at.dataframe


@pytest.mark.parametrize("memory", ["abc", "0", "-5"])
def test_a_wrong_memory_budget_is_one_line_and_nothing_else(monkeypatch, memory):
    """The Experiments page's estimate reads it: a wrong value failed there as a traceback, not as the deployment
    setting it is."""
    monkeypatch.setenv("LEUKDASH_MEMORY_MB", memory)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Deployment setting: LEUKDASH_MEMORY_MB must be a positive whole number of "
                                           f"megabytes (e.g. 4096), got {memory!r}"]
    assert not at.button and not at.dataframe


def test_read_deployment_order_and_errors():
    assert replace(read_deployment({}, {}), max_jobs=2, job_workers=None) == Deployment()  # see the next test
    assert read_deployment({"mode": "viewer", "max_jobs": 1}, {}).viewer
    assert read_deployment({"mode": "viewer"}, {"LEUKDASH_MODE": "open"}).mode == "open"
    assert read_deployment({"max_jobs": 1}, {"LEUKDASH_MAX_JOBS": "4"}).max_jobs == 4
    limits = read_deployment({"max_unpacked_mb": 10}, {"LEUKDASH_UPLOADS_MB": "20"}).upload_limits()
    assert (limits.max_unpacked_bytes, limits.quota_bytes) == (10 * 2**20, 20 * 2**20)
    with pytest.raises(ConfigError, match=r"^secret 'max_jobs' must be a whole number, got 'many'$"):
        read_deployment({"max_jobs": "many"}, {})
    with pytest.raises(ConfigError, match=r"^LEUKDASH_UPLOADS_MB must be at least 1, got '0'$"):
        read_deployment({}, {"LEUKDASH_UPLOADS_MB": "0"})


def test_runs_on_another_sessions_upload_are_not_listed(isolated_artifacts):
    """An upload is private to its session, and so are the runs trained on it."""
    import json

    from leukdash.service.uploads import uploads_root

    runs = isolated_artifacts / "runs"
    for run_id, session in (("nb-mine", "me"), ("nb-theirs", "them")):
        shutil.copytree(SHIPPED_RUN, runs / run_id)
        meta = json.loads((runs / run_id / "meta.json").read_text())
        meta["run_id"] = run_id
        meta["dataset"]["path"] = str(uploads_root() / session / "up-123" / "up")
        (runs / run_id / "meta.json").write_text(json.dumps(meta))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["_session_token"] = "me"
    at.run()
    listed = set(open_page(at, "compare").dataframe[0].value["Run id"])
    assert listed == {SHIPPED_RUN.name, "nb-mine"}


def test_another_sessions_sweeps_on_its_upload_are_neither_shown_nor_cancellable(monkeypatch, tmp_path):
    """A sweep on one session's upload: another session saw its name (built from the upload's), its
    progress, a Cancel that stopped it, its toast, and opened it in Compare's sweep view, which then
    raised (none of its runs visible: no metric to show)."""
    import sys

    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.sweep import create_sweep, run_sweep
    from leukdash.service import sweep_jobs
    from leukdash.service.uploads import uploads_root

    upload = uploads_root() / "them" / "secret-0123456789ab" / "secret"
    shutil.copytree(tmp_path / "data" / "tiny", upload)
    configs = [RunConfig(dataset=str(upload), model="nb", image_size=16, folds=2, seed=seed, augment_factor=1,
                         augment=AugmentConfig.off()) for seed in (0, 1)]
    run_sweep(configs, name="secret · seeds", n_jobs=1)  # finished: what Compare's sweep view lists
    release = tmp_path / "release"
    waiter = f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)"
    monkeypatch.setattr(sweep_jobs, "sweep_command", lambda sweep_id: [sys.executable, "-c", waiter])
    job = sweep_jobs.start_sweep_job(create_sweep([c.with_changes(seed=2) for c in configs], name="secret · more"))
    try:
        sessions = {}
        for token in ("me", "them"):
            at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
            at.session_state["_session_token"] = token
            sessions[token] = open_page(open_page(at.run(), "experiments"), "experiments")
        cancel = f"cancel_{job['run_id']}"
        assert cancel in [b.key for b in sessions["them"].button]
        assert cancel not in [b.key for b in sessions["me"].button]
        assert "secret" not in texts(sessions["me"]) and not sessions["me"].get("toast")
        for token, listed in (("me", False), ("them", True)):
            at = open_page(sessions[token], "compare")
            at.radio(key="compare_view").set_value("Sweeps").run(timeout=TIMEOUT)
            assert not at.exception, [e.value for e in at.exception]
            options = at.selectbox(key="compare_sweep").options if listed else []  # as shown
            assert any("secret" in option for option in options) == listed
            if not listed:
                assert "No sweep with finished runs yet" in texts(at)
    finally:
        release.touch()
        wait_for_jobs(seconds=60)


def test_the_same_upload_in_two_sessions_gives_each_its_own_runs(tmp_path):
    """Run ids come from the settings and the images' content: two sessions uploading the same
    bytes shared a run, which one of them could not open (its record named the other's folder),
    and each learnt that the other had uploaded those images."""
    from leukdash.config import RunConfig
    from leukdash.engine.runner import resolve, upload_sessions
    from leukdash.service.uploads import uploads_root

    folders = {}
    for token in ("me", "them"):
        folders[token] = uploads_root() / token / "cells-0123456789ab" / "cells"
        shutil.copytree(tmp_path / "data" / "tiny", folders[token])
    ids = {token: resolve(RunConfig(dataset=str(folder), model="nb")).run_id for token, folder in folders.items()}
    assert ids["me"] != ids["them"]
    assert resolve(RunConfig(dataset=str(folders["me"]), model="nb")).run_id == ids["me"]  # stable in a session
    assert upload_sessions(f"{folders['me']},{folders['them']}") == ["me", "them"]
    assert upload_sessions("tiny") == upload_sessions(str(tmp_path / "data" / "tiny")) == []  # ids as before


def test_runs_beyond_max_jobs_show_as_queued(monkeypatch, tmp_path):
    """With one job slot, a second sweep launched waits, and the page says where it stands."""
    import sys

    from leukdash.service import sweep_jobs

    monkeypatch.setenv("LEUKDASH_MAX_JOBS", "1")
    release = tmp_path / "release"
    waiter = f"import os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)"
    monkeypatch.setattr(sweep_jobs, "sweep_command", lambda sweep_id: [sys.executable, "-c", waiter])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    choose_tiny_runs(at, models=["Naive Bayes"])
    at.button(key="launch").click().run(timeout=TIMEOUT)
    at.multiselect(key="exp_models").set_value(["Decision tree"]).run(timeout=TIMEOUT)
    at.button(key="launch").click().run(timeout=TIMEOUT)
    try:
        assert not at.exception
        assert list(at.dataframe[0].value["Status"]) == ["queued"]
        bars = [p.proto.text for p in at.get("progress")]
        # The queued job shows where it waits, not also a "running for" bar; only the first job runs.
        assert sum(text.startswith("queued, position 1:") for text in bars) == 1
        assert sum("running for" in text for text in bars) == 1
        # Its time left leaves out the job ahead, and says so.
        [left] = [m for m in at.metric if m.label.startswith("Time left")]
        assert left.label == "Time left after the queue" and "queued (position 1)" in left.help
        # The two jobs have the same dataset and task: their boxes' titles tell them apart.
        titles = sorted(m.value for m in at.markdown if m.value.endswith("runs done"))
        assert len(titles) == 2 and [" · Decision tree · launched " in title for title in titles] == [True, False]
        assert " · Naive Bayes · launched " in titles[1]
        release.touch()
        states = wait_for_jobs(seconds=60)
        assert [s["state"] for s in states] == ["failed", "failed"]  # both ran (no summary)
    finally:
        release.touch()


def test_data_page_refuses_a_bad_zip_in_one_line_and_keeps_nothing():
    from test_uploads import make_zip

    from leukdash.service.uploads import uploads_root

    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    open_page(at, "data")
    for name, members, message in (
            ("bomb.zip", {"mine/ALL/z.bmp": b"\0" * (8 * 2**20)}, "bomb.zip: zip entry mine/ALL/z.bmp is compressed "
                                                                  "more than 100:1 (a zip bomb?)"),
            ("notes.zip", {"notes/readme.txt": b"no images here"}, "notes.zip: no images found in ")):
        at.sidebar.file_uploader(key="zip_upload").set_value((name, make_zip(members), "application/zip"))
        at.run(timeout=TIMEOUT)
        assert not at.exception
        [error] = at.sidebar.error
        assert shown(error.value).startswith(message) and "\n" not in error.value
        assert not [p for p in uploads_root().rglob("*") if p.name != ".lock"]


def test_one_job_of_one_fold_at_a_time_on_a_small_machine(monkeypatch):
    from leukdash.engine import machine

    monkeypatch.setattr(machine, "machine_memory_mb", lambda: 2700)  # Streamlit Community Cloud
    small = read_deployment({}, {})
    assert (small.max_jobs, small.job_workers) == (1, 1)
    assert read_deployment({"job_workers": 2, "max_jobs": 3}, {}).job_workers == 2
    monkeypatch.setattr(machine, "machine_memory_mb", lambda: 16_000)
    large = read_deployment({}, {})
    assert (large.max_jobs, large.job_workers) == (2, None)  # None: the engine's choice
    assert read_deployment({}, {"LEUKDASH_JOB_WORKERS": "3"}).job_workers == 3
    assert 0 < machine.machine_memory_mb()


def test_an_upload_removed_to_make_room_is_said_and_no_longer_offered(tmp_path):
    """Another session's upload evicted this one (the quota): it stayed in the picker, and a launch
    on it said only "unknown dataset"."""
    from leukdash.service.uploads import uploads_root

    kept_folder = uploads_root() / "me" / "kept-0123456789ab" / "kept"
    shutil.copytree(tmp_path / "data" / "tiny", kept_folder)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["_session_token"] = "me"
    at.session_state["uploaded_datasets"] = {"kept (upload)": str(kept_folder),
                                             "gone (upload)": str(uploads_root() / "me" / "gone-0123456789ab" / "gone")}
    open_page(at.run(), "data")
    assert "gone (upload)" not in at.sidebar.selectbox(key="dataset").options
    assert "kept (upload)" in at.sidebar.selectbox(key="dataset").options
    assert [w.value for w in at.sidebar.warning] == [
        "Your upload gone \\(upload\\) was removed to make room for newer uploads on this server (runs trained on it "
        "are kept): upload it again on the Data page to use it."]
    open_page(at, "experiments")
    assert not at.sidebar.warning  # said once


def test_a_failed_jobs_log_is_shown_without_the_servers_folders(monkeypatch, isolated_artifacts):
    import sys

    from leukdash.service import sweep_jobs

    line = f"error: cannot write {isolated_artifacts}/runs/nb-0/folds/fold_0.json: a file stands where a folder is"
    monkeypatch.setattr(sweep_jobs, "sweep_command",
                        lambda sweep_id: [sys.executable, "-c", f"import sys; print({line!r}); sys.exit(2)"])
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    choose_tiny_runs(at, models=["Naive Bayes"])
    at.button(key="launch").click().run(timeout=TIMEOUT)
    assert [s["state"] for s in wait_for_jobs(seconds=60)] == ["failed"]
    at.run(timeout=TIMEOUT)
    [log] = at.code
    assert log.value == "error: cannot write runs/nb-0/folds/fold_0.json: a file stands where a folder is"


def test_a_secrets_file_that_cannot_be_parsed_is_one_line_not_ignored(tmp_path):
    """Streamlit reports an unparsable secrets.toml as a missing one: read as 'no secrets', its
    settings (viewer mode, say) would be silently ignored. The deployment refuses it instead,
    naming the parser's reason and not the server's path; a missing file is no secrets."""
    import os
    import subprocess
    import sys

    code = ("from pages._shared import deployment\nfrom leukdash.errors import ConfigError\n"
            "try:\n    print('mode', deployment().mode)\nexcept ConfigError as error:\n    print('refused', error)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    env.pop("LEUKDASH_MODE", None)

    def deployed() -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        return done.stdout.strip()

    assert deployed() == "mode open"  # no secrets file: the defaults
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('mode = "viewer\n')  # an unclosed string
    said = deployed()
    assert said.startswith("refused the app's secrets.toml cannot be read (") and str(tmp_path) not in said, said
    assert said.endswith("): fix or remove it; until then the settings in it (mode, limits) would be ignored")
    (tmp_path / ".streamlit" / "secrets.toml").write_bytes(b'mode = "vi\xffewer"\n')  # not UTF-8
    assert deployed() == "refused the app's secrets.toml cannot be read (not UTF-8 text: save it as UTF-8): fix " \
                         "or remove it; until then the settings in it (mode, limits) would be ignored"
    (tmp_path / ".streamlit" / "secrets.toml").unlink()
    (tmp_path / ".streamlit" / "secrets.toml").mkdir()  # a folder of that name
    said = deployed()
    assert said.startswith("refused the app's secrets.toml cannot be read (Is a directory): ") and \
        str(tmp_path) not in said, said
    (tmp_path / ".streamlit" / "secrets.toml").rmdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('mode = "viewer"\n')
    assert deployed() == "mode viewer"
