"""/api/docs/ works without internet: Swagger UI comes from the installed packages."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings
from django.test import Client, override_settings

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def test_the_docs_page_loads_only_files_the_service_serves_itself(
    client: Client, db: None, tmp_path: Path
) -> None:
    page = client.get("/api/docs/")

    assert page.status_code == 200
    html = page.content.decode()
    assets = ASSET.findall(html)
    assert assets, "the page references no script or stylesheet"
    assert not re.search(r"https?://|//cdn", html), "the page loads something from the internet"
    assert all(asset.startswith("/" + settings.STATIC_URL.lstrip("/")) for asset in assets), assets
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)

    # Served as in production: WhiteNoise in front (it finds the files without collectstatic).
    middleware = ["whitenoise.middleware.WhiteNoiseMiddleware", *settings.MIDDLEWARE]
    with override_settings(
        MIDDLEWARE=middleware, WHITENOISE_USE_FINDERS=True, STATIC_ROOT=tmp_path
    ):
        static = Client()
        for asset in assets:
            response = static.get(asset)
            assert response.status_code == 200, asset
            assert b"".join(response.streaming_content), asset  # type: ignore[attr-defined]
