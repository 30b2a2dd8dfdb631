"""GET /api/models: what the server can run, from the manifests."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.api.schemas import ModelSummary
from app.inference.classifier import runtime_of
from app.registry import ModelInfo

router = APIRouter(prefix="/api", tags=["models"])


def summary(info: ModelInfo) -> ModelSummary:
    m = info.manifest
    return ModelSummary(
        name=info.name, task=m["task"], input=m["input"], output=m["output"],
        preprocessing=m["preprocessing"], weights=m["weights"], formats=m["formats"],
        quantization=m["quantization"], num_labels=len(m.get("labels", [])), files=m["files"],
        manifest_url=f"/models/{info.name}/manifest.json",
        server_runtime=runtime_of(info) if m["task"] == "classification" else "tensorflow")


@router.get("/models", response_model=list[ModelSummary])
def list_models(registry: RegistryDep) -> list[ModelSummary]:
    """Every converted model in the server's models folder."""
    return [summary(info) for info in registry.all().values()]
