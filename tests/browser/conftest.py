"""A real server (uvicorn on 127.0.0.1, a free port) and Debian's Chromium driven by Playwright."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from harness import chromium, server as harness_server
from harness.chromium import ARGS as CHROMIUM_ARGS, BASE_ARGS as CHROMIUM_BASE_ARGS, CHROMIUM, SWIFTSHADER_ARGS  # noqa: F401 - the tests' names
from harness.server import ServerDidNotStart
from tests.conftest import ROOT


@contextlib.contextmanager
def serve(models_dir: Path, port: int | None = None, **env_vars: str):
    """`belka serve` on ``port`` (default: a free one) for ``models_dir`` (extra BELKA_* settings
    as keyword arguments); yields its base URL and stops it afterwards (harness.server.serve,
    failing the test when it does not start)."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(harness_server.serve(models_dir, port, **env_vars))
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))
        yield url


def wait_until_serving(proc, url: str, what: str, seconds: float) -> None:
    """Waits until ``url`` answers; fails the test (and kills ``proc``) when ``proc`` ends first
    or ``seconds`` pass."""
    try:
        harness_server.wait_until_serving(proc, url, what, seconds)
    except ServerDidNotStart as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def server(small_mobilenet):
    with serve(small_mobilenet["dir"].parent) as url:
        yield url


@pytest.fixture(scope="session")
def chelsea_png(tmp_path_factory) -> Path:
    """scikit-image's photo of Chelsea the cat, as a PNG file."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("images") / "chelsea.png"
    Image.fromarray(data.chelsea()).save(path)
    return path


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module. Not for the whole session: Playwright's sync API keeps an
    asyncio loop running on the main thread while it is open, and asyncio.run() (used by
    tests/api) then fails with "cannot be called from a running event loop"."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            browser = chromium.launch(p)
        except FileNotFoundError as exc:
            pytest.fail(str(exc))
        yield browser
        browser.close()


def new_page(browser, *, dedicated_worker: bool = False, **context_options):
    """A page in a fresh context (own localStorage and cache); ``page.errors`` collects
    console errors and uncaught exceptions.

    ``dedicated_worker``: the page runs its model in a dedicated worker, as in a browser
    without SharedWorker (engine-client.js). For tests that change what the model's worker
    fetches with ``page.route``: Playwright routes a page's dedicated workers' requests, not a
    SharedWorker's."""
    page = another_page(browser.new_context(**context_options))
    if dedicated_worker:
        page.add_init_script("delete window.SharedWorker;")
    return page


def another_page(context):
    """A new page (a new tab) in ``context``, with ``page.errors`` as new_page's: a second visit
    of the same profile, with a model worker of its own (a reload keeps the tab's)."""
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.errors = errors
    return page


@pytest.fixture
def page(browser):
    page = new_page(browser)
    yield page
    page.context.close()


# SwiftShader's WebGPU needs a few seconds to compile its shaders on 2 cores.
READY_TIMEOUT_MS = 120_000


def open_classify(browser, url: str, *, page=None, timeout: float = READY_TIMEOUT_MS):
    """Opens the classify page at ``url`` (a new context unless ``page`` is given) and waits
    until its model is loaded and warmed up; returns (page, the belka.ready value)."""
    page = page or new_page(browser)
    page.set_default_timeout(timeout)
    page.goto(url)
    ready = page.evaluate("window.belka.ready")
    return page, ready


def load_tfjs(page, backend: str = "cpu") -> None:
    """Runs TF.js on the page itself, on ``backend`` (static/js/backend.js loads its parts and
    that backend's bundle), to test a module that needs it (model-input.js...) directly: the
    pages run their models in a worker and do not load TF.js."""
    started = page.evaluate("""async (backend) => {
      const { activateBackend } = await import('/static/js/backend.js');
      return (await activateBackend(backend)).backend;
    }""", backend)
    assert started == backend, started


def classify_file(page, files) -> dict | None:
    """Picks ``files`` in the page's file input and waits until the page is done with it."""
    page.set_input_files("#file-input", files)
    page.evaluate("window.belka.idle()")
    return page.evaluate("window.belka.lastResult()")


@pytest.fixture(scope="module")
def wasm_page(browser, server):
    """One classify page on the wasm backend (fast), shared by a module's tests that do not
    switch backend; with the float32 graph (?weights=float32), which the server's numbers
    are checked against (the page's default is float16)."""
    page, ready = open_classify(browser, server + "/?backend=wasm&weights=float32")
    assert ready == {"ok": True, "backend": "wasm"}, ready
    yield page
    page.context.close()


ARTIFACTS = ROOT / "test-results"


def save_screenshot(page, name: str) -> Path:
    """A screenshot of the whole page as a test artifact, test-results/<name>.png (kept out of git:
    for looking at after a run, e.g. in a closing note)."""
    path = ARTIFACTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path
