"""Static files for the browser: model artifacts (/models), our ES modules (/static) and
the TF.js bundles from npm (/vendor).

Rules, the same for the three roots:
- Nothing outside the root: no "..", no hidden names (dotfiles, the converter's
  staging folders), no symlinks anywhere on the path, regular files only. All 404.
- Explicit content types (JSON, JS modules, WebAssembly, weight shards...).
- Every response has an ETag; If-None-Match gives 304.
- Caching. Everything is content-addressed, and a URL carrying the current content's hash
  is cached for a year as immutable:
  - code and styles: ``/static/<version>/...`` and ``/vendor/<version>/...``, the version
    a hash of the static tree / the npm packages (app/assets.py); pages name only those;
  - model weights: model.json is served with each shard path suffixed by
    ``?v=<sha256 prefix>`` (from the manifest).
  A URL with an old or no version still gets the current file, ``no-cache``: the
  browser keeps it but revalidates it with its ETag. model.json and manifest.json are
  always ``no-cache``, so a re-converted model or a new release shows on the next load.
- Compression: JavaScript, CSS, JSON, SVG and WebAssembly go gzipped to clients that
  accept it (compressed once per file version and kept in memory: TF.js's 1.1 MB bundle
  is 0.3 MB gzipped); weight shards (binary floats, barely compressible) go as they are.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response

from app.assets import split_version

CONTENT_TYPES = {
    ".json": "application/json",
    ".bin": "application/octet-stream",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".wasm": "application/wasm",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".map": "application/json",
}
COMPRESSIBLE = {".json", ".js", ".mjs", ".css", ".svg", ".wasm", ".map", ".html", ".txt"}
GZIP_LEVEL = 6
GZIP_CACHE_BYTES = 64 << 20  # compressed files kept in memory, least recently used dropped first
# what the browser loads; saved_model/ stays server-side
MODEL_FORMAT_DIRS = ("graph", "graph-float16", "layers", "onnx", "onnx-float16")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

router = APIRouter(include_in_schema=False)


def safe_path(root: Path, relative: str) -> Path:
    """``root/relative`` if it is a regular file reached without hidden names or symlinks, else 404."""
    parts = relative.split("/")
    if not relative or any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        raise HTTPException(404)
    path = root
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise HTTPException(404)
    if not path.is_file():
        raise HTTPException(404)
    return path


def _content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match", "")
    return etag in (tag.strip() for tag in header.split(",")) or header.strip() == "*"


def _respond(request: Request, etag: str, cache: str, *, path: Path | None = None,
             body: bytes | None = None, media_type: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache}
    compress = _accepts_gzip(request) and (path is None or path.suffix.lower() in COMPRESSIBLE)
    if compress:
        headers["ETag"] = etag = _gzip_etag(etag)
        headers["Vary"] = "Accept-Encoding"
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    if compress:
        data = gzip.compress(body, GZIP_LEVEL, mtime=0) if body is not None else _GZIPPED.get(path)
        return Response(data, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    if body is not None:
        return Response(body, media_type=media_type, headers=headers)
    return FileResponse(path, media_type=media_type, headers=headers)


def _accepts_gzip(request: Request) -> bool:
    return "gzip" in request.headers.get("accept-encoding", "").lower()  # as Starlette's GZipMiddleware


def _gzip_etag(etag: str) -> str:
    """The gzipped body's ETag: another representation, another (weak) tag."""
    return f'W/"{etag.removeprefix("W/").strip(chr(34))}-gzip"'


class _GzipCache:
    """Files gzipped once per (path, size, mtime) and kept in memory, up to GZIP_CACHE_BYTES."""

    def __init__(self, limit: int):
        self.limit = limit
        self.entries: OrderedDict[tuple, bytes] = OrderedDict()
        self.size = 0
        self.lock = threading.Lock()

    def get(self, path: Path) -> bytes:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                return self.entries[key]
        data = gzip.compress(path.read_bytes(), GZIP_LEVEL, mtime=0)
        with self.lock:
            if key not in self.entries:
                self.entries[key] = data
                self.size += len(data)
            while self.size > self.limit and len(self.entries) > 1:
                _, dropped = self.entries.popitem(last=False)
                self.size -= len(dropped)
        return data


_GZIPPED = _GzipCache(GZIP_CACHE_BYTES)


def _stat_etag(path: Path) -> str:
    stat = path.stat()
    return f'W/"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


@router.api_route("/static/{relative:path}", methods=["GET", "HEAD"])
def static_file(relative: str, request: Request) -> Response:
    version, relative = split_version(relative)
    path = safe_path(request.app.state.settings.static_dir, relative)
    cache = IMMUTABLE if version and version == request.app.state.assets.static_version() else REVALIDATE
    return _respond(request, _stat_etag(path), cache, path=path, media_type=_content_type(path))


# /vendor/<first>/... -> node_modules/<package folder>/...: only these npm packages are served.
VENDOR_PACKAGES = {"swagger-ui": "swagger-ui-dist",  # anything else: node_modules/@tensorflow/<first>
                   "onnxruntime-web": "onnxruntime-web"}


@router.api_route("/vendor/{relative:path}", methods=["GET", "HEAD"])
def vendor_file(relative: str, request: Request) -> Response:
    """Browser libraries from npm: TF.js (/vendor/tfjs-core/dist/tf-core.es2017.min.js is
    node_modules/@tensorflow/tfjs-core/dist/...), ONNX Runtime Web (/vendor/onnxruntime-web/dist/...)
    and Swagger UI for /docs (/vendor/swagger-ui/...)."""
    node_modules = request.app.state.settings.node_modules
    version, relative = split_version(relative)
    cache = IMMUTABLE if version and version == request.app.state.assets.vendor_version() else REVALIDATE
    first, _, rest = relative.partition("/")
    if first in VENDOR_PACKAGES:
        path = safe_path(node_modules / VENDOR_PACKAGES[first], rest)
    else:
        path = safe_path(node_modules / "@tensorflow", relative)
    return _respond(request, _stat_etag(path), cache, path=path, media_type=_content_type(path))


@router.api_route("/models/{name}/{relative:path}", methods=["GET", "HEAD"])
def model_file(name: str, relative: str, request: Request) -> Response:
    info = request.app.state.registry.get(name)
    if info is None:
        raise HTTPException(404)
    hashes = {f["path"]: f["sha256"] for f in info.manifest["files"]}
    if relative == "manifest.json":
        path = safe_path(info.path, relative)
        digest = _sha256(path.read_bytes())
        # ?v=<its hash prefix>, as the pages name it (ModelInfo.manifest_version): cached for good
        cache = IMMUTABLE if _names(request.query_params.get("v"), digest) else REVALIDATE
        return _respond(request, f'"{digest[:32]}"', cache, path=path, media_type="application/json")
    if relative.split("/", 1)[0] not in MODEL_FORMAT_DIRS or relative not in hashes:
        raise HTTPException(404)
    path = safe_path(info.path, relative)
    if path.name == "model.json":
        body = content_addressed_model_json(path, hashes)
        return _respond(request, f'"{_sha256(body)[:32]}"', REVALIDATE, body=body,
                        media_type="application/json")
    cache = IMMUTABLE if _names(request.query_params.get("v"), hashes[relative]) else REVALIDATE
    return _respond(request, f'"{hashes[relative][:32]}"', cache, path=path, media_type=_content_type(path))


def content_addressed_model_json(path: Path, hashes: dict[str, str]) -> bytes:
    """model.json with every weight path suffixed by ?v=<hash>, so shards can be cached forever."""
    model = json.loads(path.read_text())
    folder = path.parent.name
    for group in model.get("weightsManifest", []):
        group["paths"] = [f"{p}?v={hashes[f'{folder}/{p}'][:16]}" if f"{folder}/{p}" in hashes else p
                          for p in group["paths"]]
    return json.dumps(model).encode()


def _names(version: str | None, digest: str) -> bool:
    """Whether ``?v=version`` names this content: a prefix of its sha256 (16 hex digits in the
    URLs Belka writes; at least 8)."""
    return bool(version) and len(version) >= 8 and digest.startswith(version)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
