"""bench/page_bench.py's set-up: the model (MobileNetV2 converted with the real CLI), the photo,
and the two servers the pages come from.

- ``convert``: `belka convert mobilenet-v2 --weights none` into a folder; ``chelsea_jpeg``: the
  photo both pages classify, as base64;
- ``serve_belka``: `belka serve` for Belka's classify page; ``serve_bare``: this module run as a
  script, Belka's own app (``bare_app``: the same file routes, caching, compression and
  security headers) with bench/bare_page/ as its static folder and the bare page at ``/``.

    .venv/bin/python bench/page_setup.py MODELS_DIR PORT   # the bare page's server (serve_bare runs it)
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

from fastapi import Request  # (the bare page's route; a module global for FastAPI's annotations)

from harness.server import belka_command, free_port, run_server

REPO = Path(__file__).resolve().parent.parent
BARE_DIR = Path(__file__).resolve().parent / "bare_page"


def chelsea_jpeg() -> str:
    """scikit-image's chelsea (451x300, a cat) as a JPEG, base64."""
    import skimage.data
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def convert(out: Path, timeout: float) -> str:
    """MobileNetV2 1.0/224 with the real CLI; returns the model's name (its folder in ``out``)."""
    cmd = [*belka_command(), "convert", "mobilenet-v2", "--weights", "none", "--out", str(out), "--json", "--quiet"]
    print("$ belka convert mobilenet-v2 --weights none --out TMPDIR --json --quiet", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        sys.exit(f"conversion failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    name = json.loads(proc.stdout)["name"]
    print(f"  {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return name


@contextlib.contextmanager
def server(cmd: list[str], env: dict, port: int, what: str):
    """Runs ``cmd`` (a server on 127.0.0.1:port), waits for /healthz (at most 120 s), yields its
    base URL and always stops it (harness.server.run_server: its log goes to a temporary file)."""
    with run_server(cmd, port, env=env, what=what, seconds=120, cwd=REPO) as running:
        yield running.url


def serve_belka(models_dir: Path, model: str):
    """`belka serve` on a free port with the classify page's model set to ``model``."""
    port = free_port()
    cmd = [*belka_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    return server(cmd, {"BELKA_MODELS_DIR": str(models_dir), "BELKA_MODEL": model}, port, "belka serve")


def serve_bare(models_dir: Path):
    """This module as a script (bare_app under uvicorn) on a free port."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), str(models_dir), str(port)]
    return server(cmd, {}, port, "the bare page's server")


BACKEND_BUNDLES = {"wasm": "tfjs-backend-wasm/dist/tf-backend-wasm.es2017.min.js",
                   "webgpu": "tfjs-backend-webgpu/dist/tf-backend-webgpu.es2017.min.js"}


def bare_app(models_dir: Path):
    """The bare page's server: Belka's own app (``create_app``: the same file routes, caching,
    compression and security headers) with bench/bare_page/ as its static folder and the bare
    page at ``/`` in front of Belka's. Run without lifespan (``lifespan="off"``): the server-side
    models are never loaded, as the page needs none of the API."""
    from fastapi.responses import HTMLResponse

    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings.from_env(models_dir=models_dir, static_dir=BARE_DIR))
    assets = getattr(app.state, "assets", None)  # content-hashed URLs, when the app has them

    def prefix(kind: str) -> str:
        url_of = getattr(assets, f"{kind}_url", None)
        return url_of("") if url_of else f"/{kind}/"

    def page(request: Request) -> HTMLResponse:
        vendor = prefix("vendor")
        bundle = BACKEND_BUNDLES.get(request.query_params.get("backend", "wasm"))
        script = f'<script defer src="{vendor}{bundle}"></script>' if bundle else ""
        html = ((BARE_DIR / "index.html").read_text().replace("__VENDOR__", vendor)
                .replace("__STATIC__", prefix("static")).replace("__BACKEND_SCRIPT__", script))
        return HTMLResponse(html)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.router.routes.insert(0, app.router.routes.pop())  # before Belka's classify page
    return app


def run_bare_server(models_dir: Path, port: int) -> None:
    import uvicorn

    # as `belka serve` runs Belka's app (app/cli.py), without the lifespan that loads the models
    uvicorn.run(bare_app(models_dir), host="127.0.0.1", port=port, log_level="info", lifespan="off")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: page_setup.py MODELS_DIR PORT (the bare page's server, which page_bench.py starts)")
    run_bare_server(Path(sys.argv[1]), int(sys.argv[2]))
