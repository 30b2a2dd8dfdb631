"""The FastAPI app: create_app(settings) wires the pages, the model files and /healthz."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app import __version__
from app.registry import load_models
from app.settings import PROJECT_ROOT, Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="Belka", version=__version__)
    app.state.settings = settings
    app.state.models = load_models(settings.models_dir)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "models": sorted(app.state.models)}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(PROJECT_ROOT / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return TEMPLATES.TemplateResponse(request, "index.html", {"models": app.state.models.values()})

    # Converted models and the TF.js bundles from npm (no CDN). Hardened serving
    # (content-addressed caching, traversal rules, COOP/COEP) comes with the web app.
    if settings.models_dir.is_dir():
        app.mount("/models", StaticFiles(directory=settings.models_dir), name="models")
    vendor = PROJECT_ROOT / "node_modules" / "@tensorflow"
    if vendor.is_dir():
        app.mount("/vendor", StaticFiles(directory=vendor), name="vendor")
    return app
