"""HTML pages. Each page gets its configuration as a JSON data block (no inline script).

The classify page and /detect each run one model, picked in this order:
1. ``?model=NAME`` in the address, when NAME is a model of the page's kind (then remembered in a
   cookie, ``belka_model_<task>``, for the next visit; an unknown name is said on the page);
2. the remembered one, while it is still in the models folder;
3. the default: ``BELKA_MODEL`` (classify) or ``coco-ssd`` (detect), else the first by name.
The list is read from the models folder on every request, so a model converted while the
server runs is in the picker on the next page load.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app.registry import ModelInfo
from app.settings import Settings

PAGE_TASKS = {"classification": ("an image classifier", "/"), "detection": ("an object detector", "/detect")}
COOKIE_MAX_AGE = 365 * 24 * 3600


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


def format_mb(size: int) -> str:
    """Bytes as the pages write them (static/js/format.js formatMB): "7.11 MB", "14.1 MB"."""
    mb = size / 1e6
    return f"{mb:.1f} MB" if mb >= 10 else f"{mb:.2f} MB"


def picker_option(info: ModelInfo) -> dict:
    """A model as the picker lists it: "mobilenet-v2 · 224×224 · 7.11 MB float16"."""
    download = info.page_download
    facts = [info.name]
    if info.input_size:
        facts.append("{}×{}".format(*info.input_size))
    facts.append(f"{format_mb(download['bytes'])} {download['dtype']}")
    return {"name": info.name, "label": " · ".join(facts), "bytes": download["bytes"], "dtype": download["dtype"]}


def cookie_name(task: str) -> str:
    return f"belka_model_{task}"


def pick_model(request: Request, task: str, candidates: list[ModelInfo],
               default: ModelInfo | None) -> tuple[ModelInfo | None, str | None, bool]:
    """(the model, a note about the address's ?model= when it names none of ``candidates``,
    whether to remember the choice)."""
    by_name = {m.name: m for m in candidates}
    asked = request.query_params.get("model")
    note = None
    if asked is not None:
        if asked in by_name:
            return by_name[asked], None, True
        note = unknown_model_note(request, task, asked, candidates)
    remembered = by_name.get(request.cookies.get(cookie_name(task), ""))
    return remembered or default, note, False


def unknown_model_note(request: Request, task: str, asked: str, candidates: list[ModelInfo]) -> str:
    kind, _ = PAGE_TASKS[task]
    other = request.app.state.registry.get(asked)
    if other is not None and other.task in PAGE_TASKS and other.task != task:
        other_kind, page = PAGE_TASKS[other.task]
        return f'"{asked}" is {other_kind}, not {kind}: open it on {page}?model={asked}.'
    if not candidates:
        return f'There is no model "{asked}" in this server\'s models folder.'
    return (f'There is no {kind.split(" ", 1)[1]} "{asked}" in this server\'s models folder; '
            f'pick one of: {", ".join(m.name for m in candidates)}.')


def model_page(request: Request, template: str, task: str, candidates: list[ModelInfo],
               default: ModelInfo | None, extra: dict | None = None) -> HTMLResponse:
    model, note, remember = pick_model(request, task, candidates, default)
    config = {"model": model.name if model else None, "models": [m.name for m in candidates], **(extra or {})}
    context = {"config": config, "model": model, "model_note": note,
               "model_options": [picker_option(m) for m in candidates]}
    response = TEMPLATES.TemplateResponse(request, template, context)
    if remember:
        response.set_cookie(cookie_name(task), model.name, max_age=COOKIE_MAX_AGE, path="/",
                            samesite="lax", httponly=True)
    return response


@router.get("/", response_class=HTMLResponse)
def classify_page(request: Request):
    settings = request.app.state.settings
    models = request.app.state.registry.all()
    classifiers = [m for m in models.values() if m.task == "classification"]
    return model_page(request, "classify.html", "classification", classifiers,
                      default_classifier(models, settings),
                      {"squirrelClasses": list(settings.squirrel_classes)})


@router.get("/detect", response_class=HTMLResponse)
def detect_page(request: Request):
    models = request.app.state.registry.all()
    detectors = [m for m in models.values() if m.task == "detection" and "graph" in m.manifest["formats"]]
    default = next((m for m in detectors if m.name == "coco-ssd"), detectors[0] if detectors else None)
    return model_page(request, "detect.html", "detection", detectors, default)


@router.get("/teach", response_class=HTMLResponse)
def teach_page(request: Request):
    """Teach your own classes (issue 14): a head trained in the page on a classifier's features."""
    settings = request.app.state.settings
    models = request.app.state.registry.all()
    bases = [m for m in models.values() if m.task == "classification" and (m.manifest.get("features") or {}).get("node")]
    preferred = default_classifier(models, settings)
    default = preferred if preferred in bases else (bases[0] if bases else None)
    return model_page(request, "teach.html", "classification", bases, default,
                      # float32 features: the numbers the saved model computes on the server
                      {"weights": "float32", "saves": settings.allow_saves,
                       "tokenNeeded": bool(settings.admin_token)})
