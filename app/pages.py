"""HTML pages. Each page gets its configuration as a JSON data block (no inline script)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.registry import ModelInfo
from app.settings import Settings

def asset_urls(request: Request) -> dict:
    """What every template uses to name files: content-hashed URLs (app/assets.py)."""
    assets = request.app.state.assets
    return {"static_url": assets.static_url, "vendor_url": assets.vendor_url,
            "module_preloads": assets.module_preloads}


TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"),
                            context_processors=[asset_urls])

router = APIRouter(include_in_schema=False)


def default_classifier(models: dict[str, ModelInfo], settings: Settings) -> ModelInfo | None:
    """The model the classify page opens with: settings.default_model, else the first classifier."""
    preferred = models.get(settings.default_model)
    if preferred is not None and preferred.task == "classification":
        return preferred
    return next((m for m in models.values() if m.task == "classification"), None)


@router.get("/", response_class=HTMLResponse)
def classify_page(request: Request):
    settings = request.app.state.settings
    models = request.app.state.registry.all()
    model = default_classifier(models, settings)
    config = {
        "model": model.name if model else None,
        "models": [m.name for m in models.values() if m.task == "classification"],
        "squirrelClasses": list(settings.squirrel_classes),
    }
    return TEMPLATES.TemplateResponse(request, "classify.html", {"config": config, "model": model})


@router.get("/detect", response_class=HTMLResponse)
def detect_page(request: Request):
    models = request.app.state.registry.all()
    detectors = [m for m in models.values() if m.task == "detection" and "graph" in m.manifest["formats"]]
    model = next((m for m in detectors if m.name == "coco-ssd"), detectors[0] if detectors else None)
    config = {"model": model.name if model else None, "models": [m.name for m in detectors]}
    return TEMPLATES.TemplateResponse(request, "detect.html", {"config": config, "model": model})
