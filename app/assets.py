"""Content-hashed URLs for the browser's code, styles and libraries.

Our ES modules import each other by relative paths (``./backend.js``) and there is no
build step, so the version goes in the path, not in a query string: a page loads
``/static/<version>/js/classify.js``, whose imports then resolve to
``/static/<version>/js/backend.js``, all under the same version. ``<version>`` is 16
hex digits of a SHA-256 over the whole static tree (every file's path and bytes): any
change to any file gives every URL a new version, and a URL with the current version
names content that never changes, so app/files.py serves it ``immutable`` for a year.
The libraries from npm get ``/vendor/<version>/...`` the same way, the version from the
installed packages' names and versions (npm packages never change under a version).

The tree is re-hashed only when a file's size or modification time changed, and those are
checked at most once a second (a few dozen ``stat`` calls, ~1.4 ms: a page and its 20-odd
modules ask for the version once each), so editing a module during development shows on a
reload a second later.

Module preloading: ``module_preloads(entry)`` lists every module an entry module imports,
directly or not (read from its ``import ... from './x.js'`` lines), so the page can
name them all in ``<link rel="modulepreload">`` and the browser fetches them in parallel
instead of one import level after another.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from pathlib import Path

VERSION_LENGTH = 16
RECHECK_SECONDS = 1.0  # how stale the static version may be (see above)
VERSION = re.compile(rf"[0-9a-f]{{{VERSION_LENGTH}}}")
# The modules a page's module needs at once, named by relative URLs: its static imports
# (`import x from './a.js'`, `import './a.js'`, `export ... from './a.js'`; between the keyword
# and the URL only names, braces, commas and `*`). Not what is imported later with import():
# the model worker's engine loads after TF.js, and preloading it on the page held up the page's
# own modules, six connections at a time. Nor the worker's own script (`new URL('./a.js',
# import.meta.url)`): its URL carries the page's query (static/js/engine-client.js), so a
# preload of the bare URL was a request for nothing.
_MODULE_REFERENCES = [
    re.compile(r"""^\s*(?:import|export)\s+(?:[\w*${}\s,]+?\s*from\s*)?['"](\.{1,2}/[^'"]+)['"]""", re.M),
]
# the npm packages served under /vendor (app/files.py)
VENDOR_PACKAGE_FILES = ("@tensorflow/*/package.json", "swagger-ui-dist/package.json", "onnxruntime-web/package.json")


class Assets:
    """The current versions of /static and /vendor, and URLs under them."""

    def __init__(self, static_dir: Path, node_modules: Path, base_path: str = "/"):
        self.static_dir = Path(static_dir)
        self.node_modules = Path(node_modules)
        self.base_path = base_path  # where the site lives: "/", or an exported site's sub-path
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._static_version = ""
        self._checked_at = float("-inf")  # time.monotonic() of the last look at the tree
        self._vendor_version: str | None = None
        self._preloads: dict[tuple[str, str], list[str]] = {}  # (static version, entry) -> URLs

    def static_version(self) -> str:
        with self._lock:
            if time.monotonic() - self._checked_at < RECHECK_SECONDS:
                return self._static_version
        files = _tree(self.static_dir)
        signature = tuple((rel, st.st_size, st.st_mtime_ns) for rel, st in files)
        with self._lock:
            if signature != self._signature:
                digest = hashlib.sha256()
                for rel, _ in files:
                    digest.update(rel.encode() + b"\0")
                    digest.update(hashlib.sha256((self.static_dir / rel).read_bytes()).digest())
                self._static_version = digest.hexdigest()[:VERSION_LENGTH]
                self._signature = signature
            self._checked_at = time.monotonic()
            return self._static_version

    def vendor_version(self) -> str:
        if self._vendor_version is None:
            digest = hashlib.sha256()
            for pattern in VENDOR_PACKAGE_FILES:
                for path in sorted(self.node_modules.glob(pattern)):
                    try:
                        package = json.loads(path.read_text())
                    except (OSError, ValueError):
                        continue
                    digest.update(f"{package.get('name')}@{package.get('version')}\n".encode())
            self._vendor_version = digest.hexdigest()[:VERSION_LENGTH]
        return self._vendor_version

    def static_url(self, path: str) -> str:
        """``/static/<version>/<path>`` (under the base path): cached by browsers for good."""
        return f"{self.base_path}static/{self.static_version()}/{path.lstrip('/')}"

    def vendor_url(self, path: str) -> str:
        """``/vendor/<version>/<path>`` (``path`` as under /vendor, e.g. ``tfjs-core/dist/tf-core.es2017.min.js``)."""
        return f"{self.base_path}vendor/{self.vendor_version()}/{path.lstrip('/')}"

    def module_preloads(self, entry: str) -> list[str]:
        """The static URLs of every module ``entry`` (e.g. ``js/classify.js``) imports, directly or
        not; read from the modules once per static version."""
        key = (self.static_version(), entry)
        if key not in self._preloads:
            self._preloads = {k: v for k, v in self._preloads.items() if k[0] == key[0]}
            self._preloads[key] = self._imports(entry)
        return self._preloads[key]

    def _imports(self, entry: str) -> list[str]:
        seen: list[str] = []
        pending = [entry]
        while pending:
            module = pending.pop()
            try:
                source = (self.static_dir / module).read_text()
            except OSError:
                continue
            for target in (t for pattern in _MODULE_REFERENCES for t in pattern.findall(source)):
                resolved = _resolve(module, target)
                if resolved and resolved not in seen and resolved != entry:
                    seen.append(resolved)
                    pending.append(resolved)
        return [self.static_url(m) for m in sorted(seen)]


def split_version(relative: str) -> tuple[str | None, str]:
    """("<version>", "rest") for "<version>/rest", else (None, relative)."""
    first, _, rest = relative.partition("/")
    if rest and VERSION.fullmatch(first):
        return first, rest
    return None, relative


def _tree(root: Path) -> list[tuple[str, object]]:
    """(relative path, stat) of every regular, visible, non-symlink file under ``root``, sorted."""
    files = []
    if not root.is_dir():
        return files
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.is_symlink() or not path.is_file():
            continue
        files.append((rel.as_posix(), path.stat()))
    return sorted(files, key=lambda item: item[0])


def _resolve(module: str, target: str) -> str | None:
    """``target`` ("./a.js", "../x/b.js") relative to ``module``'s folder; None if it leaves the root."""
    parts = module.split("/")[:-1]
    for piece in target.split("/"):
        if piece == "..":
            if not parts:
                return None
            parts.pop()
        elif piece not in (".", ""):
            parts.append(piece)
    return "/".join(parts)
