"""The dashboard in a real browser: ``streamlit run`` plus headless Chromium through Playwright.

One server for the module, over a tiny dataset and a finished sweep. At 1440 px: every page,
a zip uploaded on Data, Experiments opened from a link (kept over a reload) and a sweep launched,
Compare with a distinct name per run and a comparison restored from its address, the sweep view,
Predict headlining a known image by its out-of-fold answer. At 390 px: every page again, the
Compare chart's names apart (tick label boxes) and its tabs within the screen, the Predict bar's
labels within the chart. On every page: no server folder and no session token in the text.
Saves a screenshot of each page to ``$LEUKDASH_SCREENSHOTS`` (e.g. ``docs/screenshots``) when it
is set, and takes none otherwise. Uses Debian's ``/usr/bin/chromium`` (never a
downloaded browser); without it the test is skipped, except under ``CI=true``, where it fails.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from leukdash.data.synthetic import CLASSES, generate_synthetic

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 120_000  # generous: two cores shared with other work
RUN_WAIT_MS = 300_000


# The texts of those of the elements given that are cut short or reach out of their multiselect's box.
CUT_SHORT = """es => es.filter(e => {
    const box = e.closest('[data-testid="stMultiSelectTagsContainer"]').getBoundingClientRect();
    const r = e.getBoundingClientRect();
    return e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1 || r.left < box.left - 1
        || r.right > box.right + 1 || r.top < box.top - 1 || r.bottom > box.bottom + 1;
}).map(e => e.textContent)"""


def require_browser():
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed"
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"browser test required under CI: {reason}")
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server(log_path: Path, artifacts: Path, data: str):
    """A streamlit server on a free port over the datasets under ``data``; stopped whatever happens."""
    port = free_port()
    env = {**os.environ, "LEUKDASH_ARTIFACTS": str(artifacts), "LEUKDASH_DATA": data}
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        # The server and the run jobs it started (each leads its own process group).
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@dataclass
class App:
    url: str
    data: Path  # the folder of the tiny dataset
    artifacts: Path
    zip_path: Path  # the tiny dataset as a zip, to upload
    log: Path  # the server's output
    secrets: tuple[str, ...]  # texts no page may show: the server's folders
    sweep_id: str  # the stored sweep of two models by two seeds


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One streamlit server for the module, over a tiny dataset and a store holding a finished
    sweep (Naive Bayes and the paper CNN, seeds 0 and 1)."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.sweep import run_sweep

    require_browser()
    base = tmp_path_factory.mktemp("browser")
    data, artifacts = base / "data", base / "artifacts"
    tiny = generate_synthetic(data / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    zip_path = base / "tiny_zip.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(tiny.rglob("*.png")):
            archive.write(path, path.relative_to(tiny).as_posix())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEUKDASH_ARTIFACTS", str(artifacts))
        patch.setenv("LEUKDASH_DATA", str(data))
        configs = [RunConfig(dataset="tiny", model=model, image_size=16, folds=2, epochs=1, seed=seed,
                             augment_factor=1, augment=AugmentConfig.off()) for model in ("nb", "cnn") for seed in (0, 1)]
        sweep = run_sweep(configs, name="tiny · 5 classes", n_jobs=1)
    with streamlit_server(base / "server.log", artifacts, str(data)) as url:
        yield App(url, tiny, artifacts, zip_path, base / "server.log", (str(base), str(REPO), str(Path.home())),
                  sweep["sweep_id"])


@pytest.fixture
def store(app, monkeypatch):
    """This test process reads the server's store (to know what the pages should show)."""
    monkeypatch.setenv("LEUKDASH_ARTIFACTS", str(app.artifacts))
    monkeypatch.setenv("LEUKDASH_DATA", str(app.data.parent))
    return app


@contextmanager
def opened_app(url: str, log: Path, width: int = 1440):
    """A headless Chromium page on the app, its title shown; the browser closed whatever happens.
    A failure inside carries what the page showed and the end of the server's ``log``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 900 if width > 800 else 844})
            page.goto(url)
            page.get_by_role("heading", name="leukdash", level=1).wait_for(timeout=WAIT_MS)
            try:
                yield page
            except Exception as error:
                try:
                    shown = page.locator('[data-testid="stMain"]').inner_text(timeout=5_000)[-3000:]
                except Exception as unreadable:  # a closed or crashed page: the first error still shows
                    shown = f"(unreadable: {unreadable!r})"
                error.add_note(f"The page showed (end):\n{shown}")
                error.add_note(f"The server's log (end):\n{log.read_text(errors='replace')[-3000:]}")
                raise
        finally:
            browser.close()


@pytest.fixture
def screenshots() -> Path | None:
    """Where the pages are photographed: the folder ``LEUKDASH_SCREENSHOTS`` names (the README's
    come from ``LEUKDASH_SCREENSHOTS=docs/screenshots``); none otherwise, since each photograph
    redraws the page at its full height, and nothing is asserted on it."""
    if not os.environ.get("LEUKDASH_SCREENSHOTS"):
        return None
    folder = Path(os.environ["LEUKDASH_SCREENSHOTS"])
    folder = folder if folder.is_absolute() else REPO / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settle(page) -> None:
    """Wait until Streamlit has finished the current script run (no running indicator)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && !document.querySelector('[data-testid=\"stSpinner\"]')", timeout=WAIT_MS)
    page.wait_for_timeout(300)


def shoot(page, folder: Path | None, name: str) -> None:
    """A screenshot of the whole page (Streamlit scrolls inside its main block, not the window),
    when a folder is given (see ``screenshots``)."""
    if folder is None:
        return
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    full = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": max(height, min(int(full), 4000))})
    page.wait_for_timeout(800)  # plotly redraws at the new size
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size({"width": width, "height": height})


def go(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    page.get_by_role("heading", name=label, level=1).wait_for(timeout=WAIT_MS)
    settle(page)


def open_path(page, url: str, path: str, title: str) -> None:
    """Open a page from its address (a phone's collapsed sidebar hides the menu)."""
    page.goto(f"{url}/{path}")
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=WAIT_MS)
    settle(page)


# A session token (secrets.token_hex(12)) as a word of its own.
TOKEN = re.compile(r"(?<![0-9a-f])[0-9a-f]{24}(?![0-9a-f])")


def assert_nothing_internal(page, app: App) -> None:
    """No server folder and no session token anywhere in the page's text."""
    text = page.evaluate("() => document.body.innerText")
    leaked = [secret for secret in app.secrets if secret in text] + TOKEN.findall(text)
    assert not leaked, f"{page.url} shows {leaked}"


def boxes(scope, selector: str) -> list[dict]:
    """The text and bounding box of every element ``selector`` finds in ``scope`` (a page or a locator)."""
    return scope.locator(selector).evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect();"
        " return {text: e.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom}; })")


def overlapping(found: list[dict]) -> list[tuple[str, str]]:
    """Pairs of boxes that intersect (a pixel of slack: anti-aliased edges touch)."""
    return [(a["text"], b["text"]) for i, a in enumerate(found) for b in found[i + 1:]
            if a["left"] < b["right"] - 1 and b["left"] < a["right"] - 1
            and a["top"] < b["bottom"] - 1 and b["top"] < a["bottom"] - 1]


def bar_names(page) -> list[str]:
    chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    chart.wait_for(timeout=WAIT_MS)
    return chart.evaluate("e => e.data.filter(t => t.type === 'bar').map(t => t.name)")


def finished_results() -> list[dict]:
    from leukdash.engine.runner import load_result
    from leukdash.engine.store import RunStore

    return [load_result(entry["run_id"]) for entry in RunStore().list_runs() if entry["status"] == "complete"]


def test_every_page_at_desktop_width(store, screenshots):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    from leukdash.evaluation.answer import headline
    from leukdash.evaluation.labels import run_labels
    from leukdash.evaluation.predict import predict_files

    app = store
    url = app.url
    with opened_app(url, app.log) as page:
        page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)
        settle(page)
        # The page icon is served by the app itself: nothing is fetched from a font server.
        icon = page.evaluate("() => document.querySelector('link[rel~=\"icon\"]').href")
        assert icon.startswith(url), icon
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "overview")

        # A zip uploaded on the Data page: its header names the upload, never its folder or token.
        go(page, "Data")
        page.get_by_text("Upload a dataset").click()
        page.locator('[data-testid="stSidebar"] [data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(app.zip_path))
        # The picker changes early in the upload's script run, while the rest of the page (the
        # built-in set's "ALL · 6 images" and audit button among it) may still be the previous
        # run's: wait for the run to end, so that what follows is checked on the upload's page.
        expect(page.get_by_role("combobox", name="Dataset")).to_have_value("tiny_zip (upload)", timeout=WAIT_MS)
        settle(page)
        page.get_by_text("ALL · 6 images").wait_for(timeout=WAIT_MS)
        assert_nothing_internal(page, app)
        page.get_by_role("button", name="Run the audit").click()
        page.get_by_text("Background-only accuracy").wait_for(timeout=WAIT_MS)
        settle(page)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "data")

        go(page, "Augmentation")
        page.get_by_text("copy 8").wait_for(timeout=WAIT_MS)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "augmentation")

        # The settings live in the address: open Experiments from a link, then reload.
        settings = ("dataset=tiny&exp_sizes=16&exp_folds=2&exp_epochs=1&exp_seeds=2%2C3&exp_models=Naive+Bayes"
                    "&exp_transforms=none+%28original+images+only%29")
        page.goto(f"{url}/experiments?{settings}")
        page.get_by_role("heading", name="Experiments", level=1).wait_for(timeout=WAIT_MS)
        settle(page)
        for _ in range(2):  # as opened from the link, then after a reload
            expect(page.get_by_label("Folds", exact=True)).to_have_value("2", timeout=WAIT_MS)
            expect(page.get_by_label("Seeds", exact=True)).to_have_value("2,3", timeout=WAIT_MS)
            assert "exp_folds=2" in page.url
            page.reload()
            page.get_by_role("heading", name="Experiments", level=1).wait_for(timeout=WAIT_MS)
            settle(page)
        # A chosen option shows its whole name (Streamlit cuts long ones short by default), inside its box.
        chosen = page.locator(".stMultiSelect span[data-tag] > span[title]")  # Streamlit 1.67's chosen options
        assert chosen.count() > 0
        assert chosen.evaluate_all(CUT_SHORT) == []
        page.get_by_role("button", name="Launch 2 runs").click()
        try:  # the live view, when the runs are slow enough to be caught running
            page.get_by_role("heading", name="Running").wait_for(timeout=10_000)
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=10_000)
            shoot(page, screenshots, "experiments_running")
        except PlaywrightTimeout:
            pass
        page.get_by_role("heading", name="Results").wait_for(timeout=RUN_WAIT_MS)
        page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)
        settle(page)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "experiments")

        # Compare: every finished run, each under a name of its own.
        results = finished_results()
        assert len(results) == 6
        go(page, "Compare")
        names = bar_names(page)
        assert sorted(names) == sorted(run_labels(results)) and len(set(names)) == 6
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "compare")

        # A shared address opens the same comparison: two runs, named as among themselves.
        pair = [r for r in results if r["config"]["model"] == "nb" and r["config"]["seed"] in (0, 1)]
        open_path(page, url, f"compare?runs={pair[0]['run_id']},{pair[1]['run_id']}", "Compare")
        assert sorted(bar_names(page)) == sorted(run_labels(pair))
        assert f"runs={pair[0]['run_id']}%2C{pair[1]['run_id']}" in page.url or \
            f"runs={pair[0]['run_id']},{pair[1]['run_id']}" in page.url

        # The sweep view opens on the newest sweep with an axis (the one just launched), named by its axes.
        page.locator('[data-testid="stRadio"]').get_by_text("Sweeps").click()
        settle(page)
        page.locator(".js-plotly-plot .parcoords").first.wait_for(timeout=WAIT_MS)
        expect(page.get_by_role("combobox", name="Sweep")).to_have_value(re.compile(r"^seed · "), timeout=WAIT_MS)
        assert re.search(r"sweep=sweep-[0-9a-f]+", page.url), page.url
        # A sweep's address opens it: two models by two seeds, settings against accuracy and a heatmap.
        open_path(page, url, f"compare?compare_view=Sweeps&sweep={app.sweep_id}", "Compare")
        page.locator(".js-plotly-plot .parcoords").first.wait_for(timeout=WAIT_MS)
        expect(page.get_by_role("combobox", name="Sweep")).to_have_value(re.compile(r"^model × seed · "))
        kinds = page.locator(".js-plotly-plot").evaluate_all("es => es.map(e => e.data[0].type)")
        assert kinds[:2] == ["parcoords", "heatmap"]
        axes = page.locator(".parcoords .y-axis").all()
        assert len(axes) == 3
        for axis in axes:  # each value once on its axis: ticks and range-end labels together
            shown = [t for t in axis.locator(".tick text, .axis-extent-top-text, .axis-extent-bottom-text")
                     .all_text_contents() if t.strip()]
            assert len(shown) == len(set(shown)), shown
        page.get_by_text("Spread over seeds beside the spread over folds").wait_for(timeout=WAIT_MS)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "compare-sweep")

        # Predict: one option per run, each distinct; a known image headlined by its out-of-fold answer.
        go(page, "Predict")
        picker = page.locator('[data-testid="stSelectbox"]').filter(has_text="Run")
        picker.click()
        options = page.get_by_role("option").all_text_contents()
        assert len(options) == 6 and len(set(options)) == 6, options
        cnn = next(r for r in results if r["config"]["model"] == "cnn" and r["config"]["seed"] == 0)
        label = dict(zip((r["run_id"] for r in results), run_labels(results)))[cnn["run_id"]]
        page.get_by_role("option").filter(has_text=label).click()
        settle(page)
        known = app.data / "CLL" / "CLL_0001.png"
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(known))
        verdict = page.get_by_text("Predicted:")
        verdict.wait_for(timeout=WAIT_MS)
        settle(page)
        answer = predict_files(cnn["run_id"], [known])[0]
        shown = verdict.inner_text().split("Predicted:")[1].split("·")[0].strip()
        assert shown == headline(answer)["predicted"] == answer["known"]["prediction"]
        page.get_by_text("Grad-CAM for").wait_for(timeout=WAIT_MS)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "predict")

        open_path(page, url, "report", "Paper reproduction")
        assert_nothing_internal(page, app)

    # Nothing the walk did (an upload, a launched sweep, a link, a reload) made the server log a
    # warning with a stack trace or an error's traceback in the terminal of the person running it.
    log = app.log.read_text(errors="replace")
    assert "Traceback" not in log and "Stack (most recent call last)" not in log, log[-3000:]


def test_every_page_at_phone_width(store, screenshots):
    """At 390 px: nothing internal shown, the Compare chart's names apart, its tabs within the
    screen, the Predict bar's labels within the chart."""
    app = store
    with opened_app(app.url, app.log, width=390) as page:
        settle(page)
        assert_nothing_internal(page, app)
        for path, title in (("data", "Data"), ("augmentation", "Augmentation"), ("experiments", "Experiments"),
                            ("report", "Paper reproduction")):
            open_path(page, app.url, path, title)
            assert_nothing_internal(page, app)

        open_path(page, app.url, "compare", "Compare")
        bar_names(page)
        chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
        ticks = boxes(chart, ".ytick text") + boxes(chart, ".xtick text")
        assert len(ticks) > 4 and overlapping(ticks) == []
        strip = page.locator('[role="tablist"]').first
        assert strip.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the tab strip is cut"
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "compare-phone")

        open_path(page, app.url, "predict", "Predict")
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(app.data / "AML" / "AML_0002.png"))
        page.get_by_text("Predicted:").wait_for(timeout=WAIT_MS)
        settle(page)
        chart = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
        edge = chart.evaluate("e => e.getBoundingClientRect().right")
        texts = boxes(chart, ".bartext")
        assert texts and all(t["right"] <= edge + 1 for t in texts), (texts, edge)
        assert_nothing_internal(page, app)
        shoot(page, screenshots, "predict-phone")


def test_back_to_experiments_shows_the_settings_it_was_left_with(store):
    """Experiments opened from a link, then Compare, then the browser's Back: the address Back returns
    to carries no settings, and the page showed every default (and kept them over the settings)."""
    from playwright.sync_api import expect

    app = store
    with opened_app(app.url, app.log) as page:
        open_path(page, app.url, "experiments?dataset=tiny&exp_folds=2&exp_seeds=3&exp_models=Naive+Bayes",
                  "Experiments")
        go(page, "Compare")
        page.go_back()
        page.get_by_role("heading", name="Experiments", level=1).wait_for(timeout=WAIT_MS)
        settle(page)
        expect(page.get_by_label("Folds", exact=True)).to_have_value("2", timeout=WAIT_MS)
        expect(page.get_by_label("Seeds", exact=True)).to_have_value("3", timeout=WAIT_MS)
        assert "exp_folds=2" in page.url and "exp_seeds=3" in page.url


def test_predict_warns_on_a_cnmc_image_in_a_browser(allidb2_path, tmp_path, isolated_artifacts, screenshots):
    """A C-NMC cell uploaded to a model trained on ALL-IDB2: the page says it is unlike the
    training data (a tiny naive Bayes run, so the test stays quick)."""
    from leukdash.config import AugmentConfig, RunConfig
    from leukdash.engine.runner import run

    require_browser()
    cnmc = allidb2_path.parent / "cnmc_dev"
    if not cnmc.is_dir():
        pytest.skip("LEUKDASH_DATA does not hold cnmc_dev")
    run(RunConfig(dataset=str(allidb2_path), classes=("ALL", "HEALTHY"), model="nb", feature_set="features",
                  image_size=32, augment_factor=1, augment=AugmentConfig.off()), n_jobs=1)
    with streamlit_server(tmp_path / "server.log", isolated_artifacts, str(allidb2_path.parent)) as url, \
            opened_app(url, tmp_path / "server.log") as page:
        settle(page)
        go(page, "Predict")
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(sorted((cnmc / "ALL").glob("*.png"))[0]))
        warning = page.locator('[data-testid="stAlert"]').filter(
            has_text="does not look like the images this run was trained on")
        warning.wait_for(timeout=RUN_WAIT_MS)
        settle(page)
        assert "allidb2_ufpr" in warning.inner_text() and "99th percentile" in warning.inner_text()
        shoot(page, screenshots, "predict_external_warning")
