"""The FastAPI app: create_app(settings) wires the pages, the model files and /healthz."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.registry import load_models
from app.settings import Settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="Belka", version=__version__)
    app.state.settings = settings
    app.state.models = load_models(settings.models_dir)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "models": sorted(app.state.models)}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        return TEMPLATES.TemplateResponse(request, "index.html", {"models": app.state.models.values()})

    return app
