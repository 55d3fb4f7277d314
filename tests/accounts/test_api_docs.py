"""The OpenAPI schema at /api/v1/schema/ and the browsable docs page, served without a CDN."""

from accounts.models import ApiClient


def test_the_docs_page_is_for_signed_in_users_and_loads_swagger_ui_from_our_static_files(client, ann, nora):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    client.force_login(nora)  # no role
    assert client.get("/api/v1/docs/").status_code == 403
    client.force_login(ann)  # an analyst reads the docs
    page = client.get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert "/api/v1/schema/" in page


def test_the_schema_documents_the_delivery_api_with_its_scopes_and_the_trailing_slash_url_works(client, db):
    token = ApiClient.issue("docs", ["delivery-lists:read"])[1]
    schema = client.get("/api/v1/schema/", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT="application/json").json()
    for path in ("/api/v1/decisions", "/api/v1/events", "/api/v1/campaigns/{id}/delivery-list"):
        assert path in schema["paths"], path
    params = {p["name"] for p in schema["paths"]["/api/v1/campaigns/{id}/delivery-list"]["get"]["parameters"]}
    assert {"placement", "list", "after", "size", "batches", "format"} <= params
