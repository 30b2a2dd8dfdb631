"""/docs: Swagger UI from npm (no CDN) renders the OpenAPI schema under the CSP."""
from __future__ import annotations

import httpx

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


def test_options_are_documented_once_and_docs_lead_back_to_the_app(browser, server):
    """Options listed both as query parameters and as (prefilled) form fields made "Try it out"
    send top_k=1 and include_logits=true over the query's values: now only the query has them."""
    schema = httpx.get(server + "/openapi.json").json()
    for path, options in {"/api/models/{name}/predict": {"top_k", "include_logits"},
                          "/api/models/{name}/explain": {"method", "class_index", "layer", "patch", "stride"},
                          "/api/models/{name}/detect": {"score_threshold", "iou_threshold", "max_boxes"}}.items():
        operation = schema["paths"][path]["post"]
        assert options <= {p["name"] for p in operation["parameters"] if p["in"] == "query"}, path
        content = operation["requestBody"]["content"]
        assert set(content["multipart/form-data"]["schema"]["properties"]) == {"file"}, path
        assert set(content["application/json"]["schema"]["properties"]) == {"instances"}, path
        assert "query string" in content["multipart/form-data"]["schema"]["description"], path
    page = new_page(browser)
    try:
        page.goto(server + "/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        with page.expect_navigation():
            page.get_by_role("link", name="Is it a squirrel?").click()
        assert page.url.rstrip("/") == server
        page.go_back()
        page.get_by_role("link", name="Belka").click()
        assert page.url.rstrip("/") == server
    finally:
        page.context.close()
