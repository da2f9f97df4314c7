"""The dashboard in a real browser: ``streamlit run`` plus headless Chromium through Playwright.

Goes through every page, opens Experiments from a link with its settings (kept over a reload),
launches a tiny sweep, waits for its chart, opens the sweep view on Compare, predicts an
uploaded image and saves a screenshot of each page: to ``$LEUKDASH_SCREENSHOTS`` (e.g. ``docs/screenshots``)
when set, else to the test's temporary folder. Uses Debian's ``/usr/bin/chromium`` (never a
downloaded browser); without it the test is skipped, except under ``CI=true``, where it fails.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from leukdash.data.synthetic import CLASSES, generate_synthetic

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 120_000  # generous: two cores shared with other work
RUN_WAIT_MS = 300_000


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


@pytest.fixture
def server(tmp_path, isolated_artifacts):
    """A streamlit server over a tiny dataset."""
    require_browser()
    generate_synthetic(tmp_path / "data" / "tiny", counts={c: 6 for c in CLASSES}, size=32)
    with streamlit_server(tmp_path / "server.log", isolated_artifacts, str(tmp_path / "data")) as url:
        yield url, tmp_path / "data" / "tiny"


@contextmanager
def opened_app(url: str):
    """A headless Chromium page on the app, its title shown; the browser closed whatever happens."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.get_by_role("heading", name="leukdash", level=1).wait_for(timeout=WAIT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    folder = Path(os.environ.get("LEUKDASH_SCREENSHOTS") or tmp_path / "screenshots")
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


def shoot(page, folder: Path, name: str) -> None:
    """A screenshot of the whole page (Streamlit scrolls inside its main block, not the window)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(900, min(int(height), 4000))})
    page.wait_for_timeout(800)  # plotly redraws at the new size
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 900})


def go(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    page.get_by_role("heading", name=label, level=1).wait_for(timeout=WAIT_MS)
    settle(page)


def test_pages_in_a_browser(server, screenshots):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    url, tiny = server
    with opened_app(url) as page:
        page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)
        settle(page)
        assert page.get_by_text("No runs yet").is_visible()
        # The page icon is served by the app itself: nothing is fetched from a font server.
        icon = page.evaluate("() => document.querySelector('link[rel~=\"icon\"]').href")
        assert icon.startswith(url), icon
        shoot(page, screenshots, "overview")

        go(page, "Data")
        page.get_by_text("ALL · 6 images").wait_for(timeout=WAIT_MS)
        page.get_by_role("button", name="Run the audit").click()
        page.get_by_text("Background-only accuracy").wait_for(timeout=WAIT_MS)
        settle(page)
        shoot(page, screenshots, "data")

        go(page, "Augmentation")
        page.get_by_text("copy 8").wait_for(timeout=WAIT_MS)
        shoot(page, screenshots, "augmentation")

        # The settings live in the address: open Experiments from a link, then reload.
        settings = ("dataset=tiny&exp_sizes=16&exp_folds=2&exp_epochs=1&exp_seeds=0%2C1"
                    "&exp_transforms=none+%28original+images+only%29")
        page.goto(f"{url}/experiments?{settings}")
        page.get_by_role("heading", name="Experiments", level=1).wait_for(timeout=WAIT_MS)
        settle(page)
        for _ in range(2):  # as opened from the link, then after a reload
            expect(page.get_by_label("Folds", exact=True)).to_have_value("2", timeout=WAIT_MS)
            expect(page.get_by_label("Seeds", exact=True)).to_have_value("0,1", timeout=WAIT_MS)
            expect(page.get_by_label("Epochs", exact=True)).to_have_value("1", timeout=WAIT_MS)
            assert "exp_folds=2" in page.url
            page.reload()
            page.get_by_role("heading", name="Experiments", level=1).wait_for(timeout=WAIT_MS)
            settle(page)
        page.get_by_role("button", name="Launch 4 runs").click()
        try:  # the live view, when the runs are slow enough to be caught running
            page.get_by_role("heading", name="Running").wait_for(timeout=10_000)
            page.locator('[data-testid="stProgress"]').first.wait_for(timeout=10_000)
            shoot(page, screenshots, "experiments_running")
        except PlaywrightTimeout:
            pass
        page.get_by_role("heading", name="Results").wait_for(timeout=RUN_WAIT_MS)
        page.locator(".js-plotly-plot").first.wait_for(timeout=WAIT_MS)
        settle(page)
        shoot(page, screenshots, "experiments")

        go(page, "Compare")
        chart = page.locator(".js-plotly-plot").first
        chart.wait_for(timeout=WAIT_MS)
        bar_names = chart.evaluate("e => e.data.filter(t => t.type === 'bar').map(t => t.name)")
        assert sorted(name.split(" ")[0] for name in bar_names) == ["CNN", "CNN", "Naive", "Naive"]
        shoot(page, screenshots, "compare")

        # The sweep view: settings against accuracy, and a heatmap of two settings.
        page.locator('[data-testid="stRadio"]').get_by_text("Sweeps").click()
        settle(page)
        page.locator(".js-plotly-plot .parcoords").first.wait_for(timeout=WAIT_MS)
        kinds = page.locator(".js-plotly-plot").evaluate_all("es => es.map(e => e.data[0].type)")
        assert kinds[:2] == ["parcoords", "heatmap"]
        page.get_by_text("Spread over seeds beside the spread over folds").wait_for(timeout=WAIT_MS)
        shoot(page, screenshots, "compare-sweep")

        go(page, "Predict")
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Run").click()
        page.get_by_role("option", name="CNN paper").first.click()  # a CNN run, for its Grad-CAM
        settle(page)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            str(tiny / "CLL" / "CLL_0001.png"))
        verdict = page.get_by_text("Predicted:")
        verdict.wait_for(timeout=WAIT_MS)
        settle(page)
        predicted = verdict.inner_text().split("Predicted:")[1].split("·")[0].strip()
        assert predicted in CLASSES
        page.get_by_text("Grad-CAM for").wait_for(timeout=WAIT_MS)
        shoot(page, screenshots, "predict")


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
            opened_app(url) as page:
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
