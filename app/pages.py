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

from app.api.deps import assets_of, registry_of, settings_of
from app.headers import META_CONTENT_SECURITY_POLICY
from app.registry import ModelInfo
from app.settings import Settings

PAGE_TASKS = {"classification": ("an image classifier", "/"), "detection": ("an object detector", "/detect")}
COOKIE_MAX_AGE = 365 * 24 * 3600


def asset_urls(request: Request) -> dict:
    """What every template uses to name files and pages: content-hashed URLs (app/assets.py),
    ``url("/detect")`` for a page, and what the site is (``base_path``, ``static_site``)."""
    assets = assets_of(request)
    settings = settings_of(request)
    return {"static_url": assets.static_url, "vendor_url": assets.vendor_url,
            "module_preloads": assets.module_preloads, "base_path": settings.base_path,
            "static_site": settings.static_site, "url": lambda path: page_url(settings, path),
            "static_site_csp": META_CONTENT_SECURITY_POLICY}


def model_page_folder(page: str, name: str, default: ModelInfo | None) -> str:
    """Where an exported static site keeps ``page`` (e.g. "/detect") for the model ``name``: the
    page's own folder for its default model, else "<page>/m/<name>/"."""
    folder = page.strip("/")
    if default is not None and name == default.name:
        return f"/{folder}"
    return f"/{folder}/m/{name}" if folder else f"/m/{name}"


def page_url(settings: Settings, path: str) -> str:
    """A page's address: ``/detect`` on the server; on a static site a folder under the base
    path (``/demo/detect/``: its index.html), with any ``#fragment`` kept."""
    path, hash_mark, fragment = path.partition("#")
    if not settings.static_site:
        return path + hash_mark + fragment
    folder = path.strip("/")
    return settings.base_path + (f"{folder}/" if folder else "") + hash_mark + fragment


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
    other = registry_of(request).get(asked)
    if other is not None and other.task in PAGE_TASKS and other.task != task:
        other_kind, page = PAGE_TASKS[other.task]
        return f'"{asked}" is {other_kind}, not {kind}: open it on {page}?model={asked}.'
    if not candidates:
        return f'There is no model "{asked}" in this server\'s models folder.'
    return (f'There is no {kind.split(" ", 1)[1]} "{asked}" in this server\'s models folder; '
            f'pick one of: {", ".join(m.name for m in candidates)}.')


def model_page(request: Request, template: str, task: str, candidates: list[ModelInfo],
               default: ModelInfo | None, extra: dict | None = None, more: dict | None = None) -> HTMLResponse:
    """``template`` for the picked model; ``extra`` goes into the page's config, ``more`` into the
    template's context."""
    model, note, remember = pick_model(request, task, candidates, default)
    config = {"model": model.name if model else None, "models": [m.name for m in candidates], **(extra or {})}
    if model:  # what the model's worker fetches first, named here so it starts at once (start-worker.js)
        config["modelFiles"] = {"version": model.manifest_version, "formats": list(model.manifest["formats"]),
                                "page_weights": model.manifest.get("page_weights"),
                                "quantization": model.manifest.get("quantization")}
    settings = settings_of(request)
    if settings.static_site:  # no ?model= on a static host: a page per model (app/site.py)
        config["modelPages"] = {m.name: page_url(settings, model_page_folder(request.url.path, m.name, default))
                                for m in candidates}
    context = {"config": config, "model": model, "model_note": note,
               "model_options": [picker_option(m) for m in candidates], **(more or {})}
    response = TEMPLATES.TemplateResponse(request, template, context)
    if remember:
        response.set_cookie(cookie_name(task), model.name, max_age=COOKIE_MAX_AGE, path="/",
                            samesite="lax", httponly=True)
    return response


@router.get("/", response_class=HTMLResponse)
def classify_page(request: Request):
    settings = settings_of(request)
    models = registry_of(request).all()
    classifiers = [m for m in models.values() if m.task == "classification"]
    return model_page(request, "classify.html", "classification", classifiers,
                      default_classifier(models, settings),
                      {"squirrelClasses": list(settings.squirrel_classes)})


@router.get("/detect", response_class=HTMLResponse)
def detect_page(request: Request):
    models = registry_of(request).all()
    detectors = [m for m in models.values() if m.task == "detection" and "graph" in m.manifest["formats"]]
    default = next((m for m in detectors if m.name == "coco-ssd"), detectors[0] if detectors else None)
    return model_page(request, "detect.html", "detection", detectors, default)


@router.get("/teach", response_class=HTMLResponse)
def teach_page(request: Request):
    """Teach your own classes (issue 14): a head trained in the page on a classifier's features."""
    settings = settings_of(request)
    models = registry_of(request).all()
    classifiers = [m for m in models.values() if m.task == "classification"]
    bases = [m for m in classifiers if (m.manifest.get("features") or {}).get("node")]
    preferred = default_classifier(models, settings)
    default = preferred if preferred in bases else (bases[0] if bases else None)
    return model_page(request, "teach.html", "classification", bases, default,
                      # float32 features: the numbers the saved model computes on the server
                      {"weights": "float32", "saves": settings.allow_saves,
                       "tokenNeeded": bool(settings.admin_token)},
                      {"picker_note": not_a_base_note([m for m in classifiers if m not in bases])})


def not_a_base_note(others: list[ModelInfo]) -> str | None:
    """Why the teach page's picker leaves these classifiers out, or None when it leaves none out."""
    onnx_only = [m.name for m in others if "graph" not in m.manifest["formats"]]
    no_features = [m.name for m in others if "graph" in m.manifest["formats"]]
    parts = []
    if onnx_only:
        parts.append(f"{', '.join(onnx_only)} (a new head learns from a TF.js model's features, and "
                     f"{'these run' if len(onnx_only) > 1 else 'it runs'} in ONNX Runtime Web only)")
    if no_features:
        parts.append(f"{', '.join(no_features)} (no dense head whose features a new head could learn from)")
    return f"Not offered as a base: {'; '.join(parts)}." if parts else None


# ------------------------------------------------------------------ /learn (issue 15)

# The course the /learn index reads as, in order: (address, title, what it teaches). One list:
# the index and each lesson's "previous / next" links come from it.
COURSE = [
    ("/learn/line", "Fitting a line", "Gradient descent finds a and b in y = a x + b, one small step at a time."),
    ("/learn/convolution", "Convolution", "A 3x3 grid of numbers slid over your photo blurs it, sharpens it or "
                                          "finds its edges; a network's first layer is many such grids."),
    ("/", "A pretrained network", "MobileNetV2 says what is in your photo: 1000 classes, in your browser."),
    ("/#explain", "Where it looked", "Grad-CAM and occlusion show which parts of the photo made the answer."),
    ("/learn/pca", "Your photos in 2D", "The network turns each photo into 1280 numbers; PCA shows them on a page."),
    ("/teach", "Your own classes", "A small new layer on those numbers learns classes of your own."),
]


def samples(request: Request) -> list[dict]:
    """The sample photos (static/img/samples/index.json, made by scripts/make_samples.py):
    [{url, title}]."""
    import json

    assets = assets_of(request)
    folder = settings_of(request).static_dir / "img" / "samples"
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return []
    return [{"url": assets.static_url(f"img/samples/{entry['file']}"), "title": entry["title"]} for entry in index]


def lesson(request: Request, template: str, path: str, extra: dict | None = None,
           model_task: str | None = None, needs_features: bool = False) -> HTMLResponse:
    """A /learn page: its place in the course (previous / next), the sample photos and, for the
    lessons that use a network, the classifier (picked as on the other pages)."""
    index = [entry[0] for entry in COURSE].index(path)
    context = {
        "step": index + 1,
        "previous": COURSE[index - 1] if index > 0 else None,
        "next": COURSE[index + 1] if index + 1 < len(COURSE) else None,
    }
    config = {"samples": samples(request), **(extra or {})}
    if model_task is None:
        return TEMPLATES.TemplateResponse(request, template, {**context, "config": config})
    settings = settings_of(request)
    models = registry_of(request).all()
    candidates = [m for m in models.values() if m.task == "classification" and "graph" in m.manifest["formats"]
                  and (not needs_features or (m.manifest.get("features") or {}).get("node"))]
    preferred = default_classifier(models, settings)
    default = preferred if preferred in candidates else (candidates[0] if candidates else None)
    return model_page(request, template, model_task, candidates, default, config, context)


@router.get("/learn", response_class=HTMLResponse)
def learn_index(request: Request):
    """The lessons, as a short course."""
    return TEMPLATES.TemplateResponse(request, "learn_index.html", {
        "course": [{"url": url, "title": title, "text": text} for url, title, text in COURSE]})


@router.get("/learn/line", response_class=HTMLResponse)
def learn_line(request: Request):
    """Fitting y = a x + b by gradient descent, next to the exact answer."""
    return lesson(request, "learn_line.html", "/learn/line")


@router.get("/learn/convolution", response_class=HTMLResponse)
def learn_convolution(request: Request):
    """Kernels on your photo, then the first layer of the classifier."""
    return lesson(request, "learn_convolution.html", "/learn/convolution", model_task="classification")


@router.get("/learn/pca", response_class=HTMLResponse)
def learn_pca(request: Request):
    """Photos as the classifier's features, in 2D by PCA."""
    return lesson(request, "learn_pca.html", "/learn/pca", model_task="classification", needs_features=True)
