"""Security headers on every response.

- COOP same-origin + COEP require-corp make the page cross-origin isolated, which
  is what lets TF.js's WASM backend use threads (SharedArrayBuffer).
- The CSP allows our own origin only, plus 'wasm-unsafe-eval' (compiling the WASM
  backend). No inline scripts or styles: page configuration travels in a JSON
  data block, which is not executed. Pages must load TF.js's ES2017 bundles
  (tf-core.es2017.min.js...): the ES5 bundles carry core-js/regenerator polyfills
  that call Function("return this") and die under this CSP, leaving `tf` empty.
- nosniff: browsers trust our explicit content types.
"""
from __future__ import annotations

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'wasm-unsafe-eval'",
    "object-src 'none'",
    # a video file the user picks on the detect page plays from a blob: URL
    "media-src 'self' blob:",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

# An exported static site's pages carry the policy in a <meta> too, for hosts that send no
# headers (app/site.py); a <meta> policy cannot hold frame-ancestors (browsers ignore it there).
META_CONTENT_SECURITY_POLICY = "; ".join(part for part in CONTENT_SECURITY_POLICY.split("; ")
                                         if not part.startswith("frame-ancestors"))

# /docs only: Swagger UI's stylesheet draws a few icons as data: SVG images.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY + "; img-src 'self' data:"

SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Plain ASGI middleware (works for streamed file responses too)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        extra = SECURITY_HEADERS
        if scope["path"] == "/docs":
            extra = {**SECURITY_HEADERS, "Content-Security-Policy": DOCS_CONTENT_SECURITY_POLICY}

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.decode().lower() not in _LOWER]
                headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_LOWER = {k.lower() for k in SECURITY_HEADERS}
