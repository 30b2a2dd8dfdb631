"""Offline after one visit (static/sw.js, a service worker for scope /): the page, its code and
the model it used are kept, so a second visit classifies with the server gone; a re-converted
model replaces the kept files; the REST API stays online-only."""
from __future__ import annotations

import json
import shutil

from harness.server import free_port
from tests.browser.conftest import another_page, classify_file, new_page, serve

KEPT_SHARDS = """async () => {
  const cache = await caches.open('belka-models-v1');
  return (await cache.keys()).map((r) => r.url).filter((u) => u.includes('.bin'));
}"""
KEPT_CODE = "async () => (await (await caches.open('belka-code-v1')).keys()).map((r) => r.url)"
KEPT_MANIFESTS = """async () => {
  const cache = await caches.open('belka-models-v1');
  return (await cache.keys()).map((r) => r.url).filter((u) => u.includes('/manifest.json?v='));
}"""


def test_a_second_visit_works_offline_and_a_new_model_replaces_the_old(browser, small_mobilenet, tmp_path):
    from PIL import Image
    from skimage import data

    models = tmp_path / "models"
    shutil.copytree(small_mobilenet["dir"], models / "tiny")
    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    port = free_port()
    page = new_page(browser)
    try:
        with serve(models, port=port) as url:
            page.goto(f"{url}/?backend=wasm")
            assert page.evaluate("window.belka.ready")["ok"]
            kept = page.evaluate("window.belka.offline")
            assert kept["ok"] and kept["kept"] > 10, kept
            # TF.js's parts the page ran, and its gradients, which the worker loads only for a first
            # explanation (static/js/offline.js): Grad-CAM works offline too
            code = [url.split("/")[-1] for url in page.evaluate(KEPT_CODE)]
            assert {"tf-core.es2017.min.js", "tf-converter.es2017.min.js", "tf-backend-wasm.es2017.min.js",
                    "tf-layers.es2017.min.js"} <= set(code), code
            # and the engine's modules its worker imports only on first use (engine.js `later`)
            assert {"gradcam.js", "occlusion-map.js", "occlusion.js", "heatmap.js", "custom-layers.js",
                    "head.js", "random.js", "detector.js"} <= set(code), code
            online = classify_file(page, photo)
            # a first Grad-CAM downloads the layers model: kept too, so Grad-CAM works offline
            assert page.evaluate("belka.explain({method: 'gradcam'})").get("source") == "page"
            again = page.evaluate("window.belka.offline")
            assert again["ok"], again
            kept_layers = page.evaluate(KEPT_SHARDS)
            assert any("/layers/" in u for u in kept_layers), kept_layers
            old_shards = page.evaluate(KEPT_SHARDS)
            assert old_shards, "the model's shards were not kept"
        # the server is gone: a second visit (a new tab: a model worker of its own, where a
        # reload would find the tab's running) gets the page, its code and the model from the
        # service worker
        first_page, page = page, another_page(page.context)
        first_page.close()
        page.goto(f"{url}/?backend=wasm")
        ready = page.evaluate("window.belka.ready")
        assert ready == {"ok": True, "backend": "wasm"}, ready
        offline = classify_file(page, photo)
        assert offline["top5"] == online["top5"]
        gradcam = page.evaluate("belka.explain({method: 'gradcam'})")
        assert gradcam.get("source") == "page" and not gradcam.get("error"), gradcam
        occlusion = page.evaluate("belka.explain({method: 'occlusion', patch: 48, stride: 48})")
        assert occlusion.get("images") and not occlusion.get("error"), occlusion
        api = page.evaluate("fetch('/api/models').then((r) => r.status, (e) => 'failed')")
        assert api == "failed"  # online-only: never answered from the cache
        assert page.errors == ["Failed to load resource: net::ERR_CONNECTION_REFUSED"], page.errors
        page.errors.clear()  # that refused request was the test's own

        # a re-converted model: new shard bytes, new hash in the manifest
        folder = models / "tiny"
        manifest = json.loads((folder / "manifest.json").read_text())
        graph = manifest["page_weights"]["graph"]  # the graph model the page downloads (float16)
        entry = next(f for f in manifest["files"] if f["path"].startswith(graph) and f["path"].endswith(".bin"))
        shard = folder / entry["path"]
        data_bytes = bytearray(shard.read_bytes())
        data_bytes[0] ^= 1
        shard.write_bytes(bytes(data_bytes))
        entry["sha256"] = "f" * 64
        (folder / "manifest.json").write_text(json.dumps(manifest))
        with serve(models, port=port):
            page.reload()
            assert page.evaluate("window.belka.ready")["ok"]
            shards = page.evaluate(KEPT_SHARDS)
            # the manifest is kept by its version (the one the page named): the new one only
            version = page.evaluate("JSON.parse(document.getElementById('belka-config').textContent)"
                                    ".modelFiles.version")
            page.wait_for_function(f"""async () => {{
              const kept = await ({KEPT_MANIFESTS})();
              return kept.length === 1 && kept[0].endsWith('?v={version}');
            }}""", polling=100, timeout=10000)
            # code nobody kept yet (another page's stylesheet, same release) still loads: the
            # service worker answers from its cache, else from the network
            other = page.evaluate("document.querySelector('link[rel=stylesheet]').href.replace('belka.css', 'learn.css')")
            assert page.evaluate("!!navigator.serviceWorker.controller")
            assert page.evaluate("(u) => fetch(u).then((r) => r.status)", other) == 200
        assert any("v=ffffffffffffffff" in u for u in shards), shards
        replaced = [u for u in old_shards if entry["path"].split("/")[-1] in u]
        assert replaced and not set(replaced) & set(shards), (replaced, shards)
        assert not page.errors, page.errors
    finally:
        page.context.close()
