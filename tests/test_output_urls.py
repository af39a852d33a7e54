"""Output URLs come from whoever wrote the model: only the API's own origin, or https to public
addresses, are fetched, and every redirect hop is checked before it is sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from reelwatch import exceptions, serving
from reelwatch.providers import output_urls

pytestmark = pytest.mark.asyncio
NOW = datetime(2026, 12, 5, tzinfo=UTC)


class Listener:
    """A loopback server that counts what reaches it and redirects where it is told."""

    def __init__(self) -> None:
        self.hits = 0
        self.app = Starlette(
            routes=[
                Route("/file.mp4", self.file),
                Route("/redirect", self.redirect),
                Route("/gone", lambda _: Response(status_code=410)),
            ]
        )

    async def file(self, request: Request) -> Response:
        self.hits += 1
        return Response(b"\0" * 1024, media_type="video/mp4")

    async def redirect(self, request: Request) -> Response:
        self.hits += 1
        return RedirectResponse(request.query_params["to"], status_code=302)


@pytest.fixture
def api() -> Iterator[tuple[str, Listener]]:
    listener = Listener()
    with serving.in_thread(listener.app, host="127.0.0.1", name="api") as origin:
        yield origin, listener


@pytest.fixture
def elsewhere() -> Iterator[tuple[str, Listener]]:
    listener = Listener()
    with serving.in_thread(listener.app, host="127.0.0.2", name="elsewhere") as origin:
        yield origin, listener


async def read(fetcher: output_urls.Fetcher, url: str) -> bytes:
    async with fetcher.open(url, NOW) as download:
        return b"".join([chunk async for chunk in download.chunks()])


async def test_the_apis_own_origin_is_fetched(api: tuple[str, Listener]) -> None:
    origin, listener = api
    fetcher = output_urls.Fetcher(timeout_s=5, trusted=origin + "/replicate")
    try:
        assert len(await read(fetcher, origin + "/file.mp4")) == 1024
        with pytest.raises(exceptions.AssetGone):
            await read(fetcher, origin + "/gone")
    finally:
        await fetcher.aclose()
    assert listener.hits == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # plain http off the API's origin
        "https://localhost/file.mp4",  # loopback
        "https://10.0.0.8/file.mp4",  # a private network
        "https://[::1]/file.mp4",
        "https://169.254.169.254/latest/meta-data/",  # link-local (cloud metadata)
        "ftp://example.com/file.mp4",
    ],
)
async def test_other_hosts_must_be_https_and_public(url: str, api: tuple[str, Listener]) -> None:
    origin, _ = api
    fetcher = output_urls.Fetcher(timeout_s=5, trusted=origin)
    try:
        with pytest.raises(exceptions.ProviderRejected) as refused:
            await read(fetcher, url)
    finally:
        await fetcher.aclose()
    assert refused.value.error_code == "bad_output_url"


async def test_a_redirect_off_the_origin_is_checked_before_it_is_followed(
    api: tuple[str, Listener], elsewhere: tuple[str, Listener]
) -> None:
    origin, listener = api
    other, target = elsewhere
    fetcher = output_urls.Fetcher(timeout_s=5, trusted=origin)
    try:
        with pytest.raises(exceptions.ProviderRejected, match="only https"):
            await read(fetcher, f"{origin}/redirect?to={other}/file.mp4")
        # A redirect back to the API's own origin is fine.
        assert len(await read(fetcher, f"{origin}/redirect?to={origin}/file.mp4")) == 1024
    finally:
        await fetcher.aclose()
    assert target.hits == 0 and listener.hits == 3
