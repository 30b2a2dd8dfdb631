"""/docs: Swagger UI from npm (no CDN) renders the OpenAPI schema under the CSP."""
from __future__ import annotations

from tests.browser.conftest import new_page


def test_api_docs_render_without_console_errors(browser, server):
    page = new_page(browser)
    try:
        page.goto(server + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/models" in paths and "/api/models/{name}/predict" in paths
        assert page.errors == []
    finally:
        page.context.close()
