"""Peak memory of the dashboard while a CNN run trains and a Grad-CAM prediction is shown.

Starts ``streamlit run streamlit_app.py`` headless over a temporary store holding a copy of the
shipped CNN run, and drives it in headless Chromium (Playwright), as a visitor would:

1. Predict: upload an image to the shipped CNN run; the server loads TensorFlow for the
   prediction and its Grad-CAM;
2. Experiments: launch one paper-CNN run (the page's defaults, Naive Bayes removed) on the
   first dataset found (``$LEUKDASH_DATA``: ``allidb2_ufpr`` here; else the built-in set);
3. Predict again while it trains, for ``--seconds`` seconds.

Every ``--every`` seconds the resident memory (RSS, from /proc: Linux) of the server and all its
descendants (the job, its supervisor and its TensorFlow workers) is summed; the peak and the processes behind it
are printed. The browser is the visitor's and is not counted. Then the job is cancelled and the
server stopped. Exit status 1 when the peak exceeds ``--target-mb``.

    python benchmarks/measure_memory.py [--seconds 240] [--target-mb 2500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHIPPED_CNN = next((REPO / "artifacts" / "runs").glob("cnn-*"))
CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 300_000
MB = 1024 * 1024


class Sampler(threading.Thread):
    """Sums the RSS of a process tree (read from /proc) at a fixed interval and keeps the peak."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.root, self.every = pid, every
        self.peak, self.peak_parts, self.peak_time, self.samples = 0, [], 0.0, 0
        self.started = time.monotonic()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(self.every):
            parts = [(rss, pid, describe(pid)) for pid in tree(self.root) if (rss := rss_bytes(pid))]
            total = sum(rss for rss, _, _ in parts)
            self.samples += 1
            if total > self.peak:
                self.peak, self.peak_parts = total, sorted(parts, reverse=True)
                self.peak_time = time.monotonic() - self.started


def tree(root: int) -> list[int]:
    """``root`` and all its descendants (by parent pid, from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended while listing
        parent = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    for marker, name in (("streamlit run", "server"), ("leukdash.service.supervisor", "job supervisor"),
                         ("leukdash run", "job (leukdash run)"), ("loky", "fold worker (loky)")):
        if marker in command:
            return name
    return command[:60]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(artifacts: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, env={**os.environ, "LEUKDASH_ARTIFACTS": str(artifacts)}, stdout=open(log, "wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return process, url
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    sys.exit(f"streamlit did not start: {log.read_text()[-2000:]}")


def settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " && !document.querySelector('[data-testid=\"stSpinner\"]')", timeout=WAIT_MS)


def go(page, label: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=label).click()
    page.get_by_role("heading", name=label, level=1).wait_for(timeout=WAIT_MS)
    settle(page)


def predict_with_gradcam(page, image: Path) -> None:
    go(page, "Predict")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(image))
    page.get_by_text("Grad-CAM for").wait_for(timeout=WAIT_MS)
    settle(page)


def launch_cnn(page) -> None:
    go(page, "Experiments")
    models = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Models").locator("input")
    models.click()
    models.press("Backspace")  # drops the last default model, Naive Bayes: the paper CNN only
    models.press("Escape")
    settle(page)
    page.get_by_role("button", name="Launch 1 run").click()
    page.get_by_role("heading", name="Running").wait_for(timeout=WAIT_MS)


def an_image() -> Path:
    for root in filter(None, os.environ.get("LEUKDASH_DATA", "").split(os.pathsep)):
        found = sorted(Path(root).glob("*/*.*")) + sorted(Path(root).glob("*/*/*.*"))
        images = [p for p in found if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".bmp")]
        if images:
            return images[0]
    sys.exit("set LEUKDASH_DATA to a folder of datasets (e.g. one holding allidb2_ufpr)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240, help="how long to watch the run train")
    parser.add_argument("--every", type=float, default=0.5, help="sampling interval in seconds")
    parser.add_argument("--target-mb", type=float, default=2500)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    image = an_image()
    with tempfile.TemporaryDirectory(prefix="leukdash-memory-") as folder:
        artifacts = Path(folder) / "artifacts"
        shutil.copytree(SHIPPED_CNN, artifacts / "runs" / SHIPPED_CNN.name)
        server, url = start_server(artifacts, Path(folder) / "server.log")
        sampler = Sampler(server.pid, args.every)
        sampler.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(url)
                page.get_by_role("heading", name="leukdash", level=1).wait_for(timeout=WAIT_MS)
                predict_with_gradcam(page, image)
                print(f"Grad-CAM shown at {time.monotonic() - sampler.started:.0f} s", flush=True)
                launch_cnn(page)
                launched = time.monotonic()
                print(f"CNN run launched at {launched - sampler.started:.0f} s", flush=True)
                predict_with_gradcam(page, image)
                while time.monotonic() - launched < args.seconds:
                    page.wait_for_timeout(5000)
                browser.close()
        finally:
            sampler.stop.set()
            sampler.join()
            try:
                cancel_jobs(artifacts)
            finally:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)
    print(f"\nPeak RSS of the server and its job processes: {sampler.peak / MB:,.0f} MB "
          f"at {sampler.peak_time:.0f} s ({sampler.samples} samples every {args.every} s); "
          f"target {args.target_mb:,.0f} MB")
    for rss, pid, name in sampler.peak_parts:
        print(f"  {rss / MB:8,.0f} MB  pid {pid:<7} {name}")
    return 0 if sampler.peak / MB <= args.target_mb else 1


def cancel_jobs(artifacts: Path) -> None:
    """Stop the run the page launched (its process group: supervisor, job and workers)."""
    os.environ["LEUKDASH_ARTIFACTS"] = str(artifacts)
    from leukdash.service import jobs
    from leukdash.engine.store import RunStore

    store = RunStore()
    for folder in store.root.iterdir():
        if folder.is_dir() and folder.name != SHIPPED_CNN.name:
            jobs.cancel_job(folder.name, store)


if __name__ == "__main__":
    sys.exit(main())
