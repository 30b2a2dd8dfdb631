"""What a page fetched, for bench/page_bench.py: ``Wire`` listens to a page's network through the
Chrome DevTools Protocol (bytes on the wire, cache hits, revalidations), ``worker_requests``
reads what its model worker fetched (Resource Timing), ``kind_of`` sorts a URL into html, app
code, TF.js, wasm or model."""
from __future__ import annotations


def kind_of(url: str) -> str:
    path = url.split("://", 1)[-1].partition("/")[2].split("?", 1)[0]
    if path.endswith(".wasm"):
        return "wasm"
    if path.startswith("vendor/"):
        return "tfjs"
    if path.startswith("models/"):
        return "model"
    if path in ("", "detect"):
        return "html"
    return "app"  # /static (Belka's modules, css, icon; bare.js), favicon


class Wire:
    """A page's network as Chromium reports it (CDP Network events): per request its URL, status,
    whether it came from the cache and its encodedDataLength (bytes on the wire, headers included)."""

    def __init__(self, page):
        self.requests: dict[str, dict] = {}
        self.session = page.context.new_cdp_session(page)
        self.session.on("Network.requestWillBeSent", self._sent)
        self.session.on("Network.requestServedFromCache", self._cached)
        self.session.on("Network.responseReceived", self._response)
        self.session.on("Network.responseReceivedExtraInfo", self._raw_response)
        self.session.on("Network.loadingFinished", self._finished)
        self.session.on("Network.loadingFailed", self._failed)
        self.session.send("Network.enable")

    def reset(self) -> None:
        self.requests = {}

    def _entry(self, request_id: str) -> dict:
        return self.requests.setdefault(request_id, {"url": None, "status": None, "raw_status": None,
                                                     "cache": False, "bytes": None, "failed": False})

    def _sent(self, event):
        if event["request"]["url"].startswith("http"):
            self._entry(event["requestId"])["url"] = event["request"]["url"]

    def _cached(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["cache"] = True

    def _response(self, event):
        if event["requestId"] in self.requests:
            entry = self.requests[event["requestId"]]
            entry["status"] = event["response"]["status"]
            entry["cache"] = entry["cache"] or bool(event["response"].get("fromDiskCache"))

    def _raw_response(self, event):
        # the status as it came off the network: a revalidation is a 304 here, while
        # responseReceived shows the cached 200 it revalidated
        self._entry(event["requestId"])["raw_status"] = event["statusCode"]

    def _finished(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["bytes"] = int(event["encodedDataLength"])

    def _failed(self, event):
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["failed"] = True

    def summary(self, workers: list[dict] | None = None) -> dict:
        """Totals of the page's requests plus ``workers``' (entries from worker_requests: CDP on the
        page's target does not see a dedicated worker's network)."""
        entries = [e for e in self.requests.values() if e["url"]]  # (ExtraInfo may name other targets' ids)
        entries += workers or []
        by_kind: dict[str, dict] = {}
        for e in entries:
            k = by_kind.setdefault(kind_of(e["url"]), {"requests": 0, "bytes": 0, "cached": 0, "revalidated": 0})
            k["requests"] += 1
            k["bytes"] += e["bytes"] or 0
            k["cached"] += e["cache"]
            k["revalidated"] += 304 in (e["status"], e["raw_status"])
        return {
            "bytes": sum(e["bytes"] or 0 for e in entries), "requests": len(entries),
            "cached": sum(e["cache"] for e in entries),
            "revalidated": sum(304 in (e["status"], e["raw_status"]) for e in entries),
            "unfinished": sum(e["bytes"] is None and not e["failed"] for e in entries),
            "failed": sum(e["failed"] for e in entries), "by_kind": by_kind,
            "list": [{"path": "/" + e["url"].split("://", 1)[-1].partition("/")[2],
                      "status": e["raw_status"] or e["status"], "cache": e["cache"], "bytes": e["bytes"]}
                     for e in entries],
        }


def worker_requests(page) -> list[dict]:
    """What the page's workers fetched for this page (Belka's model worker: TF.js, WASM, the
    model), from their Resource Timing: bytes = transferSize (headers and encoded body; 0 when
    served from the cache), as Wire's entries. Belka's worker is the tab's SharedWorker, which
    Playwright does not list: the page's ``belka.worker('resources', {thisPage: true})`` reads it
    (nothing on a reload that found the model loaded); a dedicated worker is read directly."""
    rows = []
    for worker in page.workers:
        try:
            rows += worker.evaluate("performance.getEntriesByType('resource').map((e) => "
                                    "[e.name, e.transferSize, e.encodedBodySize, e.responseStatus ?? null])")
        except Exception:  # a worker that ended meanwhile
            continue
    if not page.workers:
        try:
            rows = page.evaluate("window.belka?.worker ? belka.worker('resources', {thisPage: true}).then((list) => "
                                 "list.map((e) => [e.url, e.transferSize, e.encodedBodySize, e.status])) : []")
        except Exception:
            rows = []
    return [{"url": url, "status": status, "raw_status": None, "bytes": transfer,
             "cache": transfer == 0 and body > 0, "failed": False, "worker": True}
            for url, transfer, body, status in rows]
