"""The model runs in a Web Worker (static/js/engine.js), not on the page's main thread (issue 12).

- the page itself never loads TF.js; its worker does, fetches the model's files once, early,
  and answers for the model;
- while an occlusion map runs on the cpu backend (the slowest: hundreds of model calls), the
  page's main thread stays free: a 10 ms timer keeps firing, and long tasks (> 50 ms) take a
  small share of the time, where the same work on the main thread was one long task per batch;
- an error in the worker reaches the page as a clear message, and Cancel reaches the worker;
- the worker imports only what a first answer needs (the rest on first use), and a photo sent
  right behind a backend and model change runs on what they made.
"""
from __future__ import annotations

import base64

from tests.browser.conftest import classify_file, new_page, open_classify

# Watches the main thread while `belka.explain(request)` runs: every gap between the firings of
# a 10 ms timer, and every long task the browser reports.
WATCH_EXPLAIN = """async (request) => {
  const longTasks = [];
  const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
  observer.observe({type: 'longtask'});
  const gaps = [];
  let last = performance.now();
  let running = true;
  const tick = () => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
    if (running) setTimeout(tick, 10);
  };
  setTimeout(tick, 10);
  const started = performance.now();
  const result = await window.belka.explain(request);
  const wallMs = performance.now() - started;
  running = false;
  await new Promise((resolve) => setTimeout(resolve, 100)); // the last long-task entries
  observer.disconnect();
  return {wallMs, gaps, longTasks, images: result?.images ?? null, error: result?.error ?? null};
}"""


def test_the_page_does_not_load_tfjs_its_worker_does(browser, server):
    page, ready = open_classify(browser, server + "/?backend=wasm")
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        assert page.evaluate("typeof window.tf") == "undefined"
        stats = page.evaluate("belka.worker('stats')")
        assert stats["backend"] == "wasm" and stats["numTensors"] > 0, stats
        assert page.evaluate("belka.worker('start')")["tfjs"].startswith("4.")
        worker_urls = page.evaluate("belka.worker('resources')")
        # TF.js's parts a graph model on wasm needs, and nothing else of TF.js: not the 1.1 MB
        # union bundle, nor the layers API or another backend (loaded when first used)
        tfjs = [url.split("/")[-1] for url in worker_urls if "/vendor/" in url and url.endswith(".js")]
        assert sorted(set(tfjs)) == ["tf-backend-wasm.es2017.min.js", "tf-converter.es2017.min.js",
                                     "tf-core.es2017.min.js"], worker_urls
        assert any("/graph-float16/model.json" in url for url in worker_urls), worker_urls
        # the model's files were fetched early (prefetch.js), while TF.js loaded, and once only:
        # TF.js's loader took those responses
        model_files = [url for url in worker_urls if "/models/" in url]
        assert len(model_files) == len(set(model_files)) and any(".bin?v=" in url for url in model_files), model_files
        # the manifest by the version the page's config names (cached for good), and the page's
        # graph model.json asked for before it, not after the manifest came in (one round trip);
        # both before the worker imports anything (TF.js, prefetch.js), as the page named them
        version = page.evaluate("JSON.parse(document.getElementById('belka-config').textContent).modelFiles.version")
        manifest = next(i for i, url in enumerate(worker_urls) if url.endswith(f"/manifest.json?v={version}"))
        graph = next(i for i, url in enumerate(worker_urls) if url.endswith("/graph-float16/model.json"))
        first_import = min(i for i, url in enumerate(worker_urls) if url.endswith((".js", ".mjs")))
        assert graph < manifest < first_import, worker_urls
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_main_thread_stays_responsive_during_occlusion_on_cpu(browser, server, chelsea_png):
    page, ready = open_classify(browser, server + "/?backend=cpu")
    try:
        assert ready == {"ok": True, "backend": "cpu"}, ready
        assert classify_file(page, str(chelsea_png))["top5"]
        watched = page.evaluate(WATCH_EXPLAIN, {"method": "occlusion"})
        assert watched["error"] is None and watched["images"] > 100, watched
        gaps, wall = watched["gaps"], watched["wallMs"]
        # the timer kept firing all along (a batch on the main thread stalled it 0.9-2.9 s, and
        # it fired a few times a second at most); the bound on one gap leaves room for a renderer
        # starved of CPU for half a second by a test running beside this one (seen: 538 ms)
        assert len(gaps) >= wall / 100, (len(gaps), wall)
        assert max(gaps) < 1000, (max(gaps), watched["longTasks"])
        # on the main thread, every batch was a long task: ~100% of the time
        assert sum(watched["longTasks"]) < 0.25 * wall, (watched["longTasks"], wall)
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_worker_errors_and_cancel_reach_the_page(browser, server, chelsea_png):
    page, ready = open_classify(browser, server + "/?backend=cpu")
    try:
        assert ready["ok"], ready
        # before any image, the worker has nothing to explain: its message, not a crash
        failed = page.evaluate("belka.worker('gradcam', {classIndex: 0}).catch((e) => [e.name, e.message])")
        assert failed == ["Error", "Classify an image first."], failed
        unknown = page.evaluate("belka.worker('nonsense').catch((e) => e.message)")
        assert unknown == 'Unknown operation "nonsense".'
        assert classify_file(page, str(chelsea_png))["top5"]
        tensors = page.evaluate("belka.numTensors()")
        cancelled = page.evaluate("""async () => {
          const running = window.belka.explain({method: 'occlusion', patch: 8, stride: 4});
          await new Promise((resolve) => setTimeout(resolve, 300));
          window.belka.cancelExplain();
          return running;
        }""")
        assert cancelled is None  # cancelled, between two batches, in the worker
        assert page.locator("#explain-status").inner_text() == "Cancelled."
        assert page.evaluate("belka.numTensors()") == tensors
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_tfjs_that_does_not_load_is_a_clear_message(browser, server):
    page = new_page(browser, dedicated_worker=True)  # its worker's requests are routed
    page.route("**/tfjs-core/dist/tf-core.es2017.min.js", lambda route: route.fulfill(status=404, body="gone"))
    try:
        page, ready = open_classify(browser, server + "/?backend=wasm", page=page)
        assert ready["ok"] is False and "TensorFlow.js did not load" in ready["error"], ready
        banner = page.locator(".banner-error").inner_text()
        assert "The page cannot run models." in banner and "make setup" in banner, banner
    finally:
        page.context.close()


def test_a_reload_finds_the_tabs_model_running_and_a_duplicated_tab_gets_its_own(browser, server, chelsea_png):
    """The worker is the tab's SharedWorker, kept a moment after its page goes (engine-client.js):
    a reload answers from the model already loaded, with nothing fetched again and nothing of the
    last page's left (its picture); a tab opened with a copy of this one's sessionStorage (a
    duplicated tab) gets an engine of its own, and both keep working."""
    page, ready = open_classify(browser, server + "/?backend=wasm")
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        before = classify_file(page, str(chelsea_png))
        calls = page.evaluate("belka.worker('stats')")["modelCalls"]
        assert calls >= 2  # the warm-up and the photo
        tab = page.evaluate("sessionStorage.getItem('belka-tab')")
        assert tab

        page.reload()
        assert page.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        assert page.evaluate("sessionStorage.getItem('belka-tab')") == tab
        # the same engine: its model's call count goes on, and this page's requests fetched nothing
        assert page.evaluate("belka.worker('stats')")["modelCalls"] > calls
        assert page.evaluate("belka.worker('resources', {thisPage: true})") == []
        # the last page's picture is gone with it
        failed = page.evaluate("belka.worker('gradcam', {classIndex: 0}).catch((e) => e.message)")
        assert failed == "Classify an image first.", failed
        assert classify_file(page, str(chelsea_png))["top5"] == before["top5"]

        with page.context.expect_page() as opened:
            page.evaluate("window.open(location.href)")  # copies this tab's sessionStorage
        twin = opened.value
        twin.wait_for_function("() => !!window.belka")
        assert twin.evaluate("window.belka.ready") == {"ok": True, "backend": "wasm"}
        assert twin.evaluate("sessionStorage.getItem('belka-tab')") not in (None, tab)
        twin_files = twin.evaluate("belka.worker('resources', {thisPage: true})")
        assert any("/models/" in entry["url"] for entry in twin_files), twin_files  # loaded its own
        assert twin.evaluate("belka.worker('stats')")["modelCalls"] == 1  # its warm-up only
        assert classify_file(twin, str(chelsea_png))["top5"] == before["top5"]
        # the first tab's engine still has its own picture to explain
        heatmap = page.evaluate("""async () => {
          const {defaultLayer} = await belka.worker('gradcamLayers');
          return (await belka.worker('gradcam', {classIndex: 0, layer: defaultLayer})).shape.length;
        }""")
        assert heatmap == 2
        assert not page.errors, page.errors
    finally:
        page.context.close()


# Engine modules a classify page's first answer does not need: its worker imports them on first
# use (engine.js `later`), or when it lists what an offline visit needs.
LATER_MODULES = {"detector.js", "gradcam.js", "head.js", "heatmap.js", "occlusion-map.js", "occlusion.js",
                 "random.js", "custom-layers.js"}


def fetched_modules(entries) -> set[str]:
    return {(e if isinstance(e, str) else e["url"]).split("?")[0].split("/")[-1] for e in entries}


def test_the_worker_imports_only_what_the_first_answer_needs(browser, server, chelsea_png):
    page = new_page(browser)
    try:
        page.goto(server + "/?backend=wasm")
        # what the worker fetched for this page, as soon as it is ready (before the offline copy,
        # which waits for the worker to be quiet, imports the rest)
        at_ready = page.evaluate("window.belka.ready.then(() => belka.worker('resources', {thisPage: true}))")
        modules = fetched_modules(at_ready)
        assert {"engine.js", "model.js", "backend.js"} <= modules and not modules & LATER_MODULES, modules
        classify_file(page, str(chelsea_png))
        # Grad-CAM imports its module (and the layers registered with TF.js's gradients) on first use
        layers = page.evaluate("belka.worker('gradcamLayers')")
        assert layers["layers"], layers
        assert {"gradcam.js", "custom-layers.js"} <= fetched_modules(page.evaluate("belka.worker('resources')"))
        heatmap = page.evaluate("""async () => {
          const {defaultLayer} = await belka.worker('gradcamLayers');
          const {heatmap, shape} = await belka.worker('gradcam', {classIndex: 0, layer: defaultLayer});
          return (await belka.worker('heatmapImage', {heatmap, shape, width: 8, height: 8})).data.length;
        }""")
        assert heatmap == 8 * 8 * 4
        # what an offline visit needs: every module, imported now if it was not yet
        assert LATER_MODULES <= fetched_modules(page.evaluate("belka.worker('resources')"))
        assert not page.errors, page.errors
    finally:
        page.context.close()


def test_a_photo_sent_behind_a_backend_and_model_change_waits_for_them(browser, server, chelsea_png):
    """The worker runs backend and model changes one after the other, and a classification sent
    right behind them (not after their answers) runs on what they made (engine.js `changing`)."""
    page, ready = open_classify(browser, server + "/?backend=wasm")
    try:
        assert ready == {"ok": True, "backend": "wasm"}, ready
        photo = base64.b64encode(chelsea_png.read_bytes()).decode()
        out = page.evaluate("""async (b64) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const image = () => new Blob([bytes], {type: 'image/png'});
          const [backend, loaded, answer] = await Promise.all([
            belka.worker('backend', {choice: 'cpu'}),
            belka.worker('loadClassifier', {name: belka.model(), weights: 'float32'}),
            belka.worker('classify', {image: image()}),
          ]);
          const stats = await belka.worker('stats');
          const again = await belka.worker('classify', {image: image()});
          return {backend: backend.backend, changed: backend.changed, dtype: loaded.weights.dtype, stats,
                  first: Array.from(answer.probabilities), again: Array.from(again.probabilities)};
        }""", photo)
        assert out["backend"] == "cpu" and out["changed"] and out["dtype"] == "float32", out
        # the photo ran on the model loaded on cpu, as its first call: not on the wasm model before it
        assert out["stats"] == {**out["stats"], "backend": "cpu", "modelCalls": 1}, out["stats"]
        assert out["first"] == out["again"]
    finally:
        page.context.close()
