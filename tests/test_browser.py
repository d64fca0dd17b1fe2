"""What a new user sees, in a real browser (Debian's chromium, driven by selenium): JupyterLab
opens a question's notebook with the project's kernel, unmodified, and runs its first code cells
without an error; the report's images all load and nothing overflows the page.

`make test` installs chromium and chromium-driver when run as root with apt-get; elsewhere these
tests are skipped, saying how to enable them.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lthutils.report import build_report
from lthutils.runner import NOTEBOOKS_DIR

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ENABLE = "install Debian's chromium and chromium-driver (make test does it when run as root with apt-get)"
WIDTH = 1280  # a laptop's browser window, CSS pixels


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip(f"no chromium or chromedriver on PATH: {ENABLE}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(condition, seconds: float, what: str):
    """condition()'s first truthy value within `seconds`, else fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"gave up after {seconds} s waiting for {what}")


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab from the project's environment on a free loopback port, serving a copy of
    notebooks/ (JupyterLab autosaves; the committed files stay untouched); stopped by its pid."""
    shutil.copytree(NOTEBOOKS_DIR, tmp_path / "notebooks")
    port, token = _free_port(), "lthutils-test"
    settings = {name: str(tmp_path / name) for name in ("config", "settings", "workspaces")}
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": settings["config"],
        "JUPYTERLAB_SETTINGS_DIR": settings["settings"],
        "JUPYTERLAB_WORKSPACES_DIR": settings["workspaces"],
    }
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--allow-root"]
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                return True
        except OSError:
            assert server.poll() is None, (tmp_path / "jupyterlab.log").read_text()[-2000:]
            return False

    try:
        _wait(up, 120, "JupyterLab to answer")
        yield f"http://127.0.0.1:{port}", token
    finally:
        os.kill(server.pid, signal.SIGTERM)  # it shuts its kernels down
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


NOTEBOOK_STATE = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
if (!panel) return null;
const kernel = panel.querySelector('.jp-Toolbar-kernelName');
const status = panel.querySelector('.jp-Notebook-ExecutionIndicator');
const tab = [...document.querySelectorAll('.lm-TabBar-tab')].find(t => t.textContent.endsWith('.ipynb'));
const cells = [...panel.querySelectorAll('.jp-CodeCell')].map(cell => ({
  prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
  errors: [...cell.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')].map(e => e.textContent),
}));
return {kernel: kernel && kernel.textContent, status: status && status.getAttribute('data-status'),
        dirty: tab ? tab.classList.contains('jp-mod-dirty') : null, cells};
"""


def test_jupyterlab_opens_a_question_with_the_projects_kernel_and_runs_its_first_cells(browser, jupyterlab):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, token = jupyterlab
    browser.get(f"{url}/lab/tree/notebooks/q1_model_scale.ipynb?token={token}")

    def state(done) -> dict | None:
        now = browser.execute_script(NOTEBOOK_STATE)
        return now if now and done(now) else None

    opened = _wait(lambda: state(lambda s: s["kernel"] == "Python 3 (lthutils)" and s["status"] == "idle"), 120,
                   "the notebook's kernel to start")  # fmt: skip
    time.sleep(2)  # what JupyterLab fills in on connect would mark the tab modified by now
    assert browser.execute_script(NOTEBOOK_STATE)["dirty"] is False, "the committed notebook opens as modified"
    browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell .jp-InputArea-editor").click()
    ActionChains(browser).key_down(Keys.ESCAPE).key_up(Keys.ESCAPE).perform()  # command mode
    for _ in range(2):  # the parameters cell, then the plan
        ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    ran = _wait(
        lambda: state(lambda s: all(c["prompt"].strip() in ("[1]:", "[2]:") for c in s["cells"][:2])
                      and s["status"] == "idle"),
        120,
        "the first two code cells to run",
    )  # fmt: skip
    assert [c["errors"] for c in ran["cells"][:2]] == [[], []]
    assert "units of work" in browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")[1].text
    assert opened["cells"][0]["prompt"].strip() == "[ ]:"  # the committed notebook holds no outputs


def test_the_report_loads_every_image_and_nothing_overflows(browser, study_run):
    root, _, _ = study_run
    index = build_report(root / "exp_result")
    browser.get(index.as_uri())
    _wait(lambda: browser.execute_script("return document.readyState") == "complete", 60, "the report to load")
    images = browser.execute_script(
        "return [...document.images].map(i => ({src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0,"
        " shown: i.clientWidth, natural: i.naturalWidth}))"
    )
    assert len(images) == index.read_text().count("<img ") > 0
    assert [i["src"] for i in images if not i["loaded"]] == []
    assert {i["shown"] for i in images} == {images[0]["natural"]}, "every figure shown at one scale, unshrunk"
    overflowing = browser.execute_script(
        """const width = document.documentElement.clientWidth;
        const scrolls = e => e && e !== document.body
          && (getComputedStyle(e).overflowX === 'auto' || scrolls(e.parentElement));
        return [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > width + 1
          && !scrolls(e.parentElement)).map(e => e.tagName + ' ' + e.textContent.slice(0, 40));"""
    )
    assert overflowing == [] and browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
