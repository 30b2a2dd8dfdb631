"""Files for the browser: headers, content types, caching, and no way out of the roots."""
from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import hashlib
import json
import re
import shutil
import time

import pytest
from fastapi.testclient import TestClient

from app.assets import RECHECK_SECONDS
from app.main import create_app
from app.settings import Settings


@pytest.fixture
def site(small_mobilenet, tmp_path):
    """A models folder holding a copy of the small model, a static folder, and a client."""
    models = tmp_path / "models"
    shutil.copytree(small_mobilenet["dir"], models / "tiny")
    static = tmp_path / "static"
    static.mkdir()
    (static / "app.js").write_text("export const x = 1;\n")
    (static / ".secret").write_text("hidden")
    (tmp_path / "outside.txt").write_text("outside")
    settings = Settings(models_dir=models, static_dir=static)
    app = create_app(settings)
    return {"app": app, "client": TestClient(app), "models": models, "static": static, "root": tmp_path}


def raw_get(app, path: str) -> int:
    """Send ``path`` to the app exactly as written (HTTP clients would normalise the dots)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"testserver")], "server": ("testserver", 80),
             "client": ("127.0.0.1", 1234)}
    # In a thread of its own: Playwright's sync API may hold an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    return sent[0]["status"]


def test_security_headers_on_pages_and_files(site):
    for url in ("/", "/healthz", "/models/tiny/manifest.json", "/vendor/tfjs/dist/tf.min.js", "/nope"):
        headers = site["client"].get(url).headers
        assert headers["cross-origin-opener-policy"] == "same-origin", url
        assert headers["cross-origin-embedder-policy"] == "require-corp", url
        assert headers["x-content-type-options"] == "nosniff", url
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self' 'wasm-unsafe-eval'" in csp, url
        assert "unsafe-inline" not in csp and "*" not in csp, url


@pytest.mark.parametrize("url, content_type", [
    ("/models/tiny/manifest.json", "application/json"),
    ("/models/tiny/graph/model.json", "application/json"),
    ("/models/tiny/layers/model.json", "application/json"),
    ("/models/tiny/graph/group1-shard1of2.bin", "application/octet-stream"),
    ("/vendor/tfjs/dist/tf.min.js", "text/javascript; charset=utf-8"),
    ("/vendor/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm", "application/wasm"),
    ("/static/app.js", "text/javascript; charset=utf-8"),
    ("/vendor/swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    ("/vendor/swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
])
def test_content_types(site, url, content_type):
    response = site["client"].get(url)
    assert response.status_code == 200, url
    assert response.headers["content-type"] == content_type


def test_etag_and_304_for_every_kind_of_file(site):
    client = site["client"]
    for url in ("/models/tiny/manifest.json", "/models/tiny/graph/model.json",
                "/models/tiny/graph/group1-shard1of2.bin", "/vendor/tfjs/dist/tf.min.js", "/static/app.js"):
        first = client.get(url)
        etag = first.headers["etag"]
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304, url
        assert again.content == b"" and again.headers["etag"] == etag
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_weights_are_content_addressed_and_cached_forever(site):
    client = site["client"]
    manifest = json.loads((site["models"] / "tiny" / "manifest.json").read_text())
    hashes = {f["path"]: f["sha256"] for f in manifest["files"]}
    model = client.get("/models/tiny/graph/model.json")
    assert model.headers["cache-control"] == "no-cache"  # revalidated: it names the current shards
    paths = [p for group in model.json()["weightsManifest"] for p in group["paths"]]
    assert paths and all("?v=" in p for p in paths)
    for p in paths:
        name, version = p.split("?v=")
        assert hashes[f"graph/{name}"].startswith(version)
        shard = client.get(f"/models/tiny/graph/{p}")
        assert shard.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert len(shard.content) == (site["models"] / "tiny" / "graph" / name).stat().st_size
    stale = client.get("/models/tiny/graph/" + paths[0].split("?v=")[0] + "?v=0000")
    assert stale.headers["cache-control"] == "no-cache"


def test_pages_name_the_manifest_by_its_hash_and_that_url_is_cached_forever(site):
    """The page's config names the manifest's version (its sha256 prefix) and the graph model it
    will load, so the model's worker fetches manifest.json?v=<version> (immutable: a return visit
    asks the server nothing for it) side by side with model.json."""
    client = site["client"]
    path = site["models"] / "tiny" / "manifest.json"
    version = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    html = client.get("/?model=tiny").text
    config = json.loads(re.search(r'<script type="application/json" id="belka-config">(.*?)</script>', html, re.S)[1])
    manifest = json.loads(path.read_text())
    assert config["modelFiles"] == {"version": version, "formats": list(manifest["formats"]),
                                    "page_weights": manifest.get("page_weights"),
                                    "quantization": manifest.get("quantization")}
    named = client.get(f"/models/tiny/manifest.json?v={version}")
    assert named.status_code == 200 and named.headers["cache-control"] == IMMUTABLE
    assert named.content == path.read_bytes()
    for stale in ("0" * 16, version[:4], ""):  # another version, too short to name it, none
        response = client.get(f"/models/tiny/manifest.json?v={stale}")
        assert response.status_code == 200 and response.headers["cache-control"] == "no-cache", stale
    # a re-converted model: a new manifest, a new version in the next page
    manifest["weights"]["provenance"] = "re-converted"
    path.write_text(json.dumps(manifest))
    again = json.loads(re.search(r'id="belka-config">(.*?)</script>', client.get("/?model=tiny").text, re.S)[1])
    assert again["modelFiles"]["version"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16] != version
    assert client.get(f"/models/tiny/manifest.json?v={version}").headers["cache-control"] == "no-cache"


def test_reconverted_model_gets_new_urls_and_etags(site):
    client = site["client"]
    before = client.get("/models/tiny/graph/model.json")
    folder = site["models"] / "tiny"
    shard = folder / "graph" / "group1-shard1of2.bin"
    data = bytearray(shard.read_bytes())
    data[0] ^= 1
    shard.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == "graph/group1-shard1of2.bin":
            entry["sha256"] = "f" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    after = client.get("/models/tiny/graph/model.json", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200  # the registry noticed the new manifest
    assert after.json()["weightsManifest"][0]["paths"][0].endswith("?v=ffffffffffffffff")


@pytest.mark.parametrize("path", [
    "/models/tiny/../tiny/manifest.json",
    "/models/tiny/graph/../../tiny/manifest.json",
    "/models/tiny/graph/../../../outside.txt",
    "/models/tiny/%2e%2e/%2e%2e/outside.txt",
    "/models/tiny/saved_model/saved_model.pb",
    "/models/tiny/graph/",
    "/models/nope/manifest.json",
    "/static/../outside.txt",
    "/static/.secret",
    "/static/%2esecret",
    "/vendor/../package.json",
    "/vendor/tfjs/../../../pyproject.toml",
    "/vendor/swagger-ui/../../package.json",
    "/vendor/swagger-ui/",
    "/static/0123456789abcdef/../outside.txt",
    "/static/0123456789abcdef/.secret",
    "/vendor/0123456789abcdef/../package.json",
])
def test_no_way_out_of_the_roots(site, path):
    assert raw_get(site["app"], path) == 404


def test_symlinks_and_hidden_folders_are_404(site):
    models, static, root = site["models"], site["static"], site["root"]
    (static / "link.js").symlink_to(root / "outside.txt")
    (static / "dir").symlink_to(root)
    assert site["client"].get("/static/link.js").status_code == 404
    assert site["client"].get("/static/dir/outside.txt").status_code == 404
    shard = models / "tiny" / "graph" / "group1-shard2of2.bin"
    shard.rename(root / "moved.bin")
    shard.symlink_to(root / "moved.bin")
    assert site["client"].get("/models/tiny/graph/group1-shard2of2.bin").status_code == 404
    shutil.copytree(models / "tiny", models / ".tiny.tmp-1-abc")
    assert site["client"].get("/models/.tiny.tmp-1-abc/manifest.json").status_code == 404
    assert site["client"].get("/healthz").json()["models"] == ["tiny"]


def test_errors_have_one_json_shape(site):
    response = site["client"].get("/models/nope/manifest.json")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found", "detail": None}}


# -- content-hashed code and styles, compression -------------------------------------------------

IMMUTABLE = "public, max-age=31536000, immutable"


def test_pages_name_only_content_hashed_files(small_mobilenet, tmp_path):
    """The real pages and static tree: every script, module, style and icon under a version;
    each module the page imports, directly or not, is preloaded; all of them cached for good."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(small_mobilenet["dir"], target_is_directory=True)
    client = TestClient(create_app(Settings(models_dir=models)))
    assets = client.app.state.assets
    for page in ("/", "/docs"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="(/(?:static|vendor)/[^"]*)"', html)
        assert urls, page
        for url in urls:
            assert re.match(r"/(static|vendor)/[0-9a-f]{16}/", url), (page, url)
            response = client.get(url)
            assert response.status_code == 200 and response.headers["cache-control"] == IMMUTABLE, url
    html = client.get("/").text
    preloaded = set(re.findall(r'<link rel="modulepreload" href="([^"]+)"', html))
    version = assets.static_version()
    # the page's modules; not the engine the worker imports once TF.js is loaded, nor the worker's
    # own script, whose URL carries the page's query (a preload of the bare URL fetched nothing used)
    for module in ("explain.js", "preprocess.js", "view.js", "engine-client.js", "prefetch.js", "vendor.js"):
        assert f"/static/{version}/js/{module}" in preloaded, module
    for module in ("engine.js", "model.js", "gradcam.js", "backend.js", "engine-worker.js"):
        assert f"/static/{version}/js/{module}" not in preloaded, module
    assert f"/static/{version}/js/classify.js" not in preloaded  # the entry itself is a <script>
    # the worker is started by a small module of its own, ahead of the page's module and of the
    # page's first frame (render-blocking: the first layout would hold it back); TF.js is
    # loaded (and compiled) by the worker alone, not parsed on the page too
    scripts = re.findall(r'<script type="module" ((?:async blocking="render" )?)src="([^"]+)"', html)
    assert scripts == [('async blocking="render" ', f"/static/{version}/js/start-worker.js"),
                       ("", f"/static/{version}/js/classify.js")], scripts
    assert "tf-core" not in html and "tf.es2017.min.js" not in html
    assert "tf-backend-webgpu" not in html and "tf-backend-wasm" not in html  # loaded on first use
    assert f'data-vendor="/vendor/{assets.vendor_version()}/"' in html


def test_a_changed_file_changes_every_static_url(site):
    client, static = site["client"], site["static"]
    before = client.app.state.assets.static_version()
    assert client.get(f"/static/{before}/app.js").headers["cache-control"] == IMMUTABLE
    (static / "app.js").write_text("export const x = 2;\n")
    time.sleep(RECHECK_SECONDS + 0.1)  # the tree is looked at once a second
    after = client.app.state.assets.static_version()
    assert after != before
    old = client.get(f"/static/{before}/app.js")  # an old page asking: the current file, revalidated
    assert old.headers["cache-control"] == "no-cache" and "x = 2" in old.text
    assert client.get(f"/static/{after}/app.js").headers["cache-control"] == IMMUTABLE
    assert client.get("/static/app.js").headers["cache-control"] == "no-cache"


def test_text_files_are_gzipped_and_weights_are_not(site):
    client = site["client"]
    vendor = client.app.state.assets.vendor_version()
    bundle = f"/vendor/{vendor}/tfjs-core/dist/tf-core.es2017.min.js"
    zipped = client.get(bundle, headers={"accept-encoding": "gzip"})
    plain = client.get(bundle, headers={"accept-encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip" and "accept-encoding" in zipped.headers["vary"].lower()
    assert "content-encoding" not in plain.headers
    assert zipped.content == plain.content  # httpx undid the gzip: the same bytes
    assert int(zipped.headers["content-length"]) < len(plain.content) / 3
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = client.get(bundle, headers={"accept-encoding": "gzip", "if-none-match": zipped.headers["etag"]})
    assert again.status_code == 304
    for url in ("/models/tiny/graph/model.json", "/models/tiny/manifest.json", "/", "/api/models"):
        response = client.get(url, headers={"accept-encoding": "gzip"})
        assert response.headers.get("content-encoding") == "gzip", url
    shard = client.get("/models/tiny/graph/group1-shard1of2.bin", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in shard.headers


def test_gzip_bytes_are_a_valid_gzip_stream(site):
    """What the browser gets really is gzip (read without httpx's transparent decoding)."""
    client = site["client"]
    with client.stream("GET", "/models/tiny/graph/model.json", headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert json.loads(gzip.decompress(raw))["format"] == "graph-model"


def test_the_service_worker_is_served_at_the_root(small_mobilenet, tmp_path):
    """/sw.js (static/sw.js) at the site's root, so its scope can be the whole site; always
    revalidated, so a new release's worker is picked up."""
    client = TestClient(create_app(Settings(models_dir=tmp_path)))
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "self.addEventListener('fetch'" in response.text


def test_module_preloads_are_the_static_imports_only(tmp_path):
    """What a page preloads (app/assets.py module_preloads): every module its entry imports
    statically, directly or not, multi-line import lists included; not a dynamic import(),
    nor a worker's script named by new URL(..., import.meta.url) (its real URL carries a query)."""
    from app.assets import Assets

    js = tmp_path / "static" / "js"
    js.mkdir(parents=True)
    (js / "entry.js").write_text(
        "import {\n  a,\n  b as c,\n} from './a.js';\nimport './side.js';\nexport * from './re.js';\n"
        "export class Engine {\n  constructor() {\n    this.url = new URL('./worker.js', import.meta.url);\n  }\n}\n"
        "import('./later.js');\n")
    (js / "a.js").write_text("import x from './deep.js';\nexport const a = 1, b = x;\n")
    for name in ("side.js", "re.js", "deep.js", "worker.js", "later.js"):
        (js / name).write_text("export {};\n")
    assets = Assets(tmp_path / "static", tmp_path / "node_modules")
    named = [url.rsplit("/", 1)[-1] for url in assets.module_preloads("js/entry.js")]
    assert sorted(named) == ["a.js", "deep.js", "re.js", "side.js"], named
