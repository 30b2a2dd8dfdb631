"""`belka export-site DIR`: Belka's pages as a static site, for any static host or CDN.

The pages run the models in the visitor's browser, so once the models are converted they need
no Python: only files. The export renders every page through the app itself (create_app with
``static_site`` and the site's ``base_path``, asked in this process through ASGI: the same
templates and the same page logic as `belka serve`), and writes beside them what those pages
load:

    DIR/index.html                  the classify page, for the default classifier
    DIR/m/<model>/index.html        the classify page for each other classifier
    DIR/detect/, DIR/teach/, DIR/learn/..., each with m/<model>/ where the page has a picker
    DIR/static/<version>/...        our ES modules, styles and sample photos (content-hashed)
    DIR/vendor/<version>/...        TF.js and its WASM and WebGPU backends, from npm (and ONNX
                                    Runtime Web's builds when a model has an ONNX model)
    DIR/models/<model>/...          manifest.json, the TF.js graph (and layers) models and the
                                    ONNX model: no SavedModel, which only the server runs
    DIR/sw.js                       the service worker: offline after one visit
    DIR/_headers                    the headers the host should send (Netlify / Cloudflare Pages
                                    syntax), DIR/README.md: what they do and how to send them
                                    elsewhere

What needs the server is not there, and the pages say so where a user would look for it (a
static ``<html data-site>``: static/js/site.js): the REST API and /docs, Grad-CAM computed by the
server, saving a taught model, the lessons' checks against Python.

Atomic like a conversion: built in a hidden folder next to DIR, then swapped in; a failure leaves
DIR as it was. DIR must be new, empty, or an earlier export (it holds ``.belka-site``).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from app import __version__
from app.convert.errors import BadInput
from app.headers import SECURITY_HEADERS

MARKER = ".belka-site"
# what the pages load from npm (static/js/vendor.js: TF_PARTS, TF_LAYERS, BACKEND_BUNDLES; the
# WASM backend picks one of its three binaries on the visitor's machine)
VENDOR_FILES = (
    "tfjs-core/dist/tf-core.es2017.min.js",
    "tfjs-converter/dist/tf-converter.es2017.min.js",
    "tfjs-layers/dist/tf-layers.es2017.min.js",
    "tfjs-backend-cpu/dist/tf-backend-cpu.es2017.min.js",
    "tfjs-backend-webgl/dist/tf-backend-webgl.es2017.min.js",
    "tfjs-backend-wasm/dist/tf-backend-wasm.es2017.min.js",
    "tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm",
    "tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
    "tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm",
    "tfjs-backend-webgpu/dist/tf-backend-webgpu.es2017.min.js",
)
# ONNX Runtime Web, for models with an ONNX model (static/js/vendor.js ORT_BUILDS: each back end's
# module, the Emscripten glue it imports and the binary that glue fetches), under node_modules/
ORT_FILES = tuple(f"onnxruntime-web/dist/{name}" for name in (
    "ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm",
))
BASE_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")
# the model folders a page loads (app/files.py MODEL_FORMAT_DIRS)
PAGE_FORMATS = ("graph", "graph-float16", "layers", "onnx", "onnx-float16")


def export_site(out: Path, models_dir: Path, names: list[str] | None = None, base_path: str = "/",
                static_dir: Path | None = None, node_modules: Path | None = None) -> dict:
    """Writes the site into ``out`` (see the module doc) and returns what it wrote:
    {path, base_path, models, pages, bytes}. BadInput, with nothing written, for a bad base path,
    a missing model or an ``out`` that is not an earlier export."""
    from app.registry import Registry
    from app.settings import Settings

    base_path = normalise_base_path(base_path)
    out = Path(out)
    check_target(out)
    registry = Registry(Path(models_dir))
    available = {name: info for name, info in registry.all().items() if page_runnable(info.manifest)}
    chosen = choose(available, names, Path(models_dir))
    settings = Settings(models_dir=Path(models_dir), base_path=base_path, static_site=True, allow_saves=False)
    if static_dir is not None:
        settings = _replace(settings, static_dir=Path(static_dir))
    if node_modules is not None:
        settings = _replace(settings, node_modules=Path(node_modules))
    vendor = {settings.node_modules / "@tensorflow" / f: f for f in VENDOR_FILES}
    if any("onnx" in available[name].manifest["formats"] for name in chosen):
        vendor.update({settings.node_modules / f: f for f in ORT_FILES})
    missing = [path for path in vendor if not path.is_file()]
    if missing:
        raise BadInput(f"the pages' libraries are not installed ({missing[0]} is missing): run `make setup` "
                       "(npm ci) first")
    with staging(out) as site:
        models = site / "models"
        for name in chosen:
            copy_model(available[name].path, models / name)
        app_settings = _replace(settings, models_dir=models)
        pages = render_pages(app_settings, site)
        assets = _assets(app_settings)
        shutil.copytree(settings.static_dir, site / "static" / assets.static_version(),
                        ignore=shutil.ignore_patterns(".*", "sw.js"))
        shutil.copy2(settings.static_dir / "sw.js", site / "sw.js")
        for path, relative in vendor.items():
            target = site / "vendor" / assets.vendor_version() / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        writecontent_addressed_model_json(app_settings, models, chosen)
        (site / "_headers").write_text(headers_file(base_path))
        (site / "README.md").write_text(readme(base_path, chosen))
        size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        summary = {"path": str(out), "base_path": base_path, "models": chosen, "pages": sorted(pages),
                   "bytes": size, "belka": __version__,
                   "exported": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (site / MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _replace(settings, **changes):
    from dataclasses import replace

    return replace(settings, **changes)


def _assets(settings):
    from app.assets import Assets

    return Assets(settings.static_dir, settings.node_modules, settings.base_path)


def normalise_base_path(base_path: str) -> str:
    """"/demo" -> "/demo/"; BadInput for anything that is not a plain path."""
    text = (base_path or "/").strip()
    if not text.startswith("/"):
        text = "/" + text
    if not text.endswith("/"):
        text += "/"
    if not BASE_PATH.fullmatch(text) or any(part in (".", "..") for part in text.split("/")):
        raise BadInput(f"--base-path {base_path!r}: a path such as /demo/ (letters, digits, '.', '_', '~', '-')")
    return text


def check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise BadInput(f"{out} holds files that are not a Belka site export: pick a new or empty folder "
                       "(an earlier export there is replaced)")
    parent = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not os.access(parent if parent != out else out.parent, os.W_OK):
        raise BadInput(f"{parent} is not writable")


def page_runnable(manifest: dict) -> bool:
    """Whether a page can run the model: a TF.js graph model, or (a classifier) an ONNX model."""
    formats = manifest["formats"]
    return "graph" in formats or (manifest["task"] == "classification" and "onnx" in formats)


def choose(available: dict, names: list[str] | None, models_dir: Path) -> list[str]:
    """The models to export: ``names`` in order (each must be a model a page can run), else all."""
    if not names:
        if not available:
            raise BadInput(f"no models in {models_dir} to export: convert one first (belka convert ...)")
        return sorted(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        have = ", ".join(sorted(available)) or "none"
        raise BadInput(f"--models: no model {unknown[0]!r} with a TF.js graph model or an ONNX model in {models_dir} "
                       f"(there are: {have})")
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def staging(out: Path):
    """A hidden folder next to ``out`` to build in; swapped into place when the block ends
    without error, removed (and ``out`` untouched) when it fails or is interrupted."""
    out.parent.mkdir(parents=True, exist_ok=True)
    site = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = None
    try:
        yield site
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
        site.rename(out)
    except BaseException:
        shutil.rmtree(site, ignore_errors=True)
        if old is not None and not out.exists():
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def copy_model(source: Path, target: Path) -> None:
    """What the pages load of a model: its manifest and TF.js folders (not the SavedModel)."""
    target.mkdir(parents=True)
    shutil.copy2(source / "manifest.json", target / "manifest.json")
    for folder in PAGE_FORMATS:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, ignore=shutil.ignore_patterns(".*"))


def writecontent_addressed_model_json(settings, models: Path, names: list[str]) -> None:
    """Each model.json as the server sends it: weight paths carrying ?v=<hash> (a static host
    ignores the query; the service worker keeps a shard by it and drops it when the hash changes)."""
    from app.files import content_addressed_model_json

    for name in names:
        manifest = json.loads((models / name / "manifest.json").read_text())
        hashes = {f["path"]: f["sha256"] for f in manifest["files"]}
        for path in (models / name).glob("*/model.json"):
            path.write_bytes(content_addressed_model_json(path, hashes))


def render_pages(settings, site: Path) -> list[str]:
    """Every page, for every model its picker offers, rendered by the app and written as
    ``<folder>/index.html``; the folders written (relative to the site)."""
    import asyncio

    from app import pages
    from app.main import create_app

    app = create_app(settings)  # never started: no SavedModel is loaded, only pages rendered
    registry = app.state.registry
    written = []

    def get(path: str) -> str:
        status, html = asyncio.run(_asgi_get(app, path))
        if status != 200:
            raise RuntimeError(f"rendering {path} for the static site answered {status}")
        return html

    def write(folder: str, html: str) -> None:
        folder = folder.strip("/")
        target = site / folder / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(html)
        written.append(f"{folder}/" if folder else "")

    for path in ("/learn", "/learn/line"):
        write(path, get(path))
    for path in ("/", "/detect", "/teach", "/learn/convolution", "/learn/pca"):  # the pages with a picker
        html = get(path)
        write(path, html)
        config = _config(html)
        default = registry.get(config.get("model") or "")
        for name in config.get("models", []):
            if default is None or name != default.name:
                write(pages.model_page_folder(path, name, default), get(f"{path}?model={name}"))
    return written


async def _asgi_get(app, target: str) -> tuple[int, str]:
    """GET ``target`` ("/path?query") from the ASGI app in this process, as a browser with no
    cookies would: (status, body). (No HTTP client needed: the export runs where `belka` is
    installed without the test tools.)"""
    path, _, query = target.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": [(b"host", b"localhost")], "client": ("127.0.0.1", 0),
             "server": ("localhost", 80)}
    status, body = 500, bytearray()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, body.decode()


def _config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="belka-config">(.*?)</script>', html, re.S)
    return json.loads(found[1]) if found else {}


def headers_file(base: str) -> str:
    """``_headers`` (Netlify and Cloudflare Pages read it as it is; README.md says what the rules
    mean for other hosts). Those hosts merge every rule that matches a path, so each header is set
    by one rule only; what is not named here (pages, model.json) gets their default caching,
    which revalidates."""
    security = "\n".join(f"  {name}: {value}" for name, value in SECURITY_HEADERS.items())
    immutable = "  Cache-Control: public, max-age=31536000, immutable"
    return "\n".join([
        "# Belka static site: the headers to send (Netlify / Cloudflare Pages syntax; see README.md).",
        f"{base}*", security,
        f"{base}static/*", immutable,
        f"{base}vendor/*", immutable,
        "",
    ])


def readme(base: str, models: list[str]) -> str:
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    try_it = ("`python3 -m http.server 8080` in this folder" if base == "/" else
              f"`python3 -m http.server 8080` in a folder where this one is at `.{base}` (its path under it)")
    return f"""# Belka, as a static site

Made by `belka export-site` (Belka {__version__}) for the base path `{base}`, with the models
{", ".join(f"`{m}`" for m in models)}. Everything here runs in the visitor's browser: copy this
folder to any static host or CDN, so that its `index.html` is served at `{base}`.

Try it here first: {try_it}, then open http://127.0.0.1:8080{base}.

What is not here, because it needs Belka's server (`belka serve`): the REST API and its /docs,
Grad-CAM computed by the server (on a backend that cannot take gradients, use WebGL or CPU), saving
a model taught on /teach (teaching itself works), and the lessons' checks against Python. The pages
say so where they would use them.

## Headers

The host should send these (they are in `_headers`, which Netlify and Cloudflare Pages read as
is):

| Header | On | Why |
| --- | --- | --- |
| `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp` | everything | cross-origin isolation: TF.js's WebAssembly backend can then use threads (without them it runs, single-threaded) |
| `Content-Security-Policy: {csp}` | everything | only this site's code runs (the pages also carry it in a `<meta>`, less `frame-ancestors`, for hosts that send no headers) |
| `Cache-Control: public, max-age=31536000, immutable` | `{base}static/*`, `{base}vendor/*` | their paths hold a hash of their content: they never change |
| `Cache-Control: no-cache` (most hosts' default for what they are not told about) | everything else | pages and `model.json` are checked on each visit, so a new export shows at once |
| `Content-Type: application/wasm` (every common host's default) | `*.wasm` | browsers compile WebAssembly only with this type |

Other hosts:

- **nginx**: `add_header Cross-Origin-Opener-Policy same-origin always;` (and the others) in the
  `location {base}` block, `expires max;` in `location {base}static/` and `{base}vendor/`;
  nginx's `mime.types` already maps `.wasm`.
- **Caddy**: `header {base}* Cross-Origin-Opener-Policy same-origin` and so on, in a `file_server` site.
- **Amazon S3 + CloudFront**: a response headers policy with the security headers; upload
  `static/` and `vendor/` with `--cache-control "public, max-age=31536000, immutable"`.
- **GitHub Pages** sends no custom headers: the site works (the policy is in each page's
  `<meta>`), but WebAssembly runs without threads.
"""
