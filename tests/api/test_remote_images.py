"""Image URLs in API requests (a1111-compat.md §3.3): allowed only by the options, never to local
or private addresses (also after redirects), with size and time limits. No test reaches the
internet: refusals happen before any connection, the allowed path runs over httpx.MockTransport
with a fake resolver, and the route-level fetch uses a server on 127.0.0.1 with
api_forbid_local_requests turned off."""
from __future__ import annotations

import base64
import http.server
import io
import threading

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from modules.api.app import configure_app
from modules.api.remote_images import (RemoteImageError, RemoteImageFetcher, RemoteImagePolicy,
                                       is_public_address, remote_image_loader)
from modules.api.routes_img2img import img2img_router
from modules.app.options import OptionInfo
from tests.api.test_api_inprocess import FakeRunner, assert_envelope, make_ctx

PUBLIC_IP = "93.184.216.34"


def png_bytes(size=(16, 12), color=(200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def fake_resolver(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]
    return resolve


def no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a refused URL was requested: {request.url}")


def fetcher(routes=None, *, resolver=None, **policy) -> RemoteImageFetcher:
    def handle(request: httpx.Request) -> httpx.Response:
        return routes(request) if routes else no_network(request)
    return RemoteImageFetcher(RemoteImagePolicy(**policy),
                              resolver=resolver or fake_resolver({"images.example": [PUBLIC_IP]}),
                              transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("address, public", [
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.10", False), ("172.16.5.4", False),
    ("169.254.169.254", False), ("224.0.0.1", False), ("0.0.0.0", False), ("240.0.0.1", False),
    ("100.64.0.1", False), ("::1", False), ("fe80::1%eth0", False), ("fc00::1", False),
    ("::ffff:127.0.0.1", False), ("ff02::1", False),
    (PUBLIC_IP, True), ("8.8.8.8", True), ("2606:4700:4700::1111", True)])
def test_public_address_classification(address, public):
    assert is_public_address(address) is public


@pytest.mark.parametrize("url", [
    "http://localhost/x.png", "http://127.0.0.1/x.png", "http://127.0.0.1:8080/x.png",
    "https://10.0.0.5/a.png", "http://192.168.1.1/a.png", "http://[::1]/a.png",
    "http://169.254.169.254/latest/meta-data", "http://loopback.example/a.png",
    "http://mixed.example/a.png"])
def test_local_and_private_urls_are_refused_before_any_request(url):
    resolver = fake_resolver({"localhost": ["127.0.0.1", "::1"],
                              "loopback.example": ["127.0.0.1"],
                              # one private address among public ones is enough to refuse
                              "mixed.example": [PUBLIC_IP, "10.0.0.1"]})
    with pytest.raises(RemoteImageError) as refused:
        fetcher(resolver=resolver).fetch_image(url)
    assert refused.value.status_code == 403
    assert refused.value.message == "Request to local resource not allowed"


def test_allowed_url_is_fetched_with_the_user_agent():
    seen = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=png_bytes(), headers={"content-type": "image/png"})

    image = fetcher(serve, user_agent="my-agent/1.0").fetch_image("https://images.example/cat.png")
    assert image.size == (16, 12) and image.getpixel((3, 3)) == (200, 30, 60)
    assert [str(request.url) for request in seen] == ["https://images.example/cat.png"]
    assert seen[0].headers["user-agent"] == "my-agent/1.0"


def test_redirect_to_a_private_address_is_refused_and_not_followed():
    requested = []

    def serve(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        if request.url.host == "images.example":
            return httpx.Response(302, headers={"location": "http://internal.example/secret"})
        return httpx.Response(200, content=png_bytes())

    resolver = fake_resolver({"images.example": [PUBLIC_IP], "internal.example": ["10.0.0.7"]})
    with pytest.raises(RemoteImageError, match="local resource"):
        fetcher(serve, resolver=resolver).fetch_image("http://images.example/a.png")
    assert requested == ["http://images.example/a.png"]


def test_public_redirect_is_followed_and_redirect_loops_stop():
    def serve(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/moved":
            return httpx.Response(301, headers={"location": "/real.png"})
        if request.url.path == "/loop":
            return httpx.Response(302, headers={"location": "/loop"})
        return httpx.Response(200, content=png_bytes(size=(5, 7)))

    assert fetcher(serve).fetch_image("http://images.example/moved").size == (5, 7)
    with pytest.raises(RemoteImageError, match="Too many redirects"):
        fetcher(serve, max_redirects=3).fetch_image("http://images.example/loop")


def test_disabled_requests_size_limit_errors_and_non_images():
    with pytest.raises(RemoteImageError, match="Requests not allowed") as refused:
        fetcher(enabled=False).fetch_image("http://images.example/a.png")
    assert refused.value.status_code == 403

    big = png_bytes(size=(64, 64))
    serve_big = lambda request: httpx.Response(200, content=big)  # noqa: E731
    with pytest.raises(RemoteImageError, match="larger than 100 bytes") as too_big:
        fetcher(serve_big, max_bytes=100).fetch_image("http://images.example/big.png")
    assert too_big.value.status_code == 413

    serve_404 = lambda request: httpx.Response(404, text="nope")  # noqa: E731
    with pytest.raises(RemoteImageError, match="HTTP 404"):
        fetcher(serve_404).fetch_image("http://images.example/missing.png")

    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)
    with pytest.raises(RemoteImageError, match="Timed out"):
        fetcher(time_out).fetch_image("http://images.example/slow.png")

    serve_text = lambda request: httpx.Response(200, text="<html>not an image</html>")  # noqa
    with pytest.raises(RemoteImageError, match="not an image"):
        fetcher(serve_text).fetch_image("http://images.example/page.html")

    with pytest.raises(RemoteImageError, match="Cannot resolve"):
        fetcher().fetch_image("http://unknown.example/a.png")


def test_policy_comes_from_the_options_with_safe_defaults(tmp_path):
    ctx = make_ctx([], tmp_path / "config.json")   # its registry has none of the three keys
    assert RemoteImagePolicy.from_options(ctx.options) == RemoteImagePolicy()
    with pytest.raises(RemoteImageError, match="local resource"):
        remote_image_loader(ctx.options)("http://127.0.0.1:1/a.png")
    add_options(ctx.options, api_enable_requests=False, api_useragent="agent/3")
    policy = RemoteImagePolicy.from_options(ctx.options)
    assert (policy.enabled, policy.forbid_local, policy.user_agent) == (False, True, "agent/3")
    with pytest.raises(RemoteImageError, match="Requests not allowed"):
        remote_image_loader(ctx.options)("https://images.example/a.png")


# -- through POST /sdapi/v1/img2img -----------------------------------------------------------------
class _OneImageHandler(http.server.BaseHTTPRequestHandler):
    body = png_bytes(size=(24, 16), color=(10, 200, 90))
    user_agents: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).user_agents.append(self.headers.get("User-Agent", ""))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


def add_options(options, **values) -> None:
    for key, value in values.items():
        options.add_option(key, OptionInfo(default=value, restrict_api=True))


def img2img_client(tmp_path, img2img_runner=None, **option_values):
    """The configured app (middleware, envelope) with the img2img route over a fake runner."""
    ctx = make_ctx(["--nowebui"], tmp_path / "config.json")
    add_options(ctx.options, **option_values)
    app = FastAPI()
    configure_app(app, ctx, ui_mode=False)
    app.include_router(img2img_router(ctx,
                                      img2img_runner=img2img_runner or FakeRunner()))
    return TestClient(app), ctx


def img2img_payload(url: str) -> dict:
    return {"init_images": [url], "steps": 2, "width": 16, "height": 16,
            "denoising_strength": 0.5}


@pytest.mark.parametrize("url", ["http://localhost:9/a.png", "http://127.0.0.1:9/a.png",
                                 "http://10.0.0.1/a.png", "http://192.168.0.1/a.png",
                                 "http://[::1]:9/a.png"])
def test_img2img_route_refuses_local_urls_with_a_4xx(tmp_path, url):
    client, ctx = img2img_client(tmp_path)
    try:
        response = client.post("/sdapi/v1/img2img", json=img2img_payload(url))
        body = assert_envelope(response, 403, "HTTPException")
        assert body["detail"] == "Request to local resource not allowed"
        assert ctx.jobs.pending_ids() == []
    finally:
        ctx.jobs.shutdown()


def test_img2img_route_refuses_urls_when_requests_are_disabled(tmp_path):
    client, ctx = img2img_client(tmp_path, api_enable_requests=False)
    try:
        response = client.post("/sdapi/v1/img2img",
                               json=img2img_payload("https://images.example/a.png"))
        body = assert_envelope(response, 403, "HTTPException")
        assert body["detail"].startswith("Requests not allowed")
    finally:
        ctx.jobs.shutdown()


@pytest.fixture
def local_image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneImageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_img2img_route_fetches_an_allowed_url(tmp_path, local_image_server):
    """With api_forbid_local_requests off (a user's choice), the route downloads the init image
    and processing receives the decoded picture."""
    runner = FakeRunner()
    client, ctx = img2img_client(tmp_path, runner, api_forbid_local_requests=False,
                                 api_useragent="tester/2")
    try:
        response = client.post("/sdapi/v1/img2img",
                               json=img2img_payload(local_image_server + "/init.png"))
        assert response.status_code == 200, response.text
        init = runner.seen[0][0].init_images[0]
        assert init.size == (24, 16) and init.convert("RGB").getpixel((1, 1)) == (10, 200, 90)
        assert _OneImageHandler.user_agents[-1] == "tester/2"
        assert base64.b64decode(response.json()["images"][0])[:4] == b"\x89PNG"
    finally:
        ctx.jobs.shutdown()


def test_a_fetched_image_above_the_size_check_is_refused_before_decoding():
    from tests.oversized_requests import huge_png

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=huge_png(9000, 9000),
                              headers={"content-type": "image/png"})

    seen_sizes = []

    def refuse(width: int, height: int) -> None:
        seen_sizes.append((width, height))
        raise ValueError(f"{width}x{height} is too large")

    with pytest.raises(ValueError, match="9000x9000 is too large"):
        fetcher(serve).fetch_image("https://images.example/big.png", check_size=refuse)
    assert seen_sizes == [(9000, 9000)]
