"""Input images given as http(s) URLs in API requests (`init_images`, `mask`, later ControlNet
images; a1111-compat.md §3.3).

A URL is fetched only when the option `api_enable_requests` allows it, and (with
`api_forbid_local_requests`, default on) never from a loopback, private, link-local, multicast,
reserved or otherwise non-global address: the host is resolved and every address it resolves to
is checked, again for each redirect hop (redirects are followed by hand, so a hop to a local
address is refused before it is requested). Downloads have a time and a size limit. Unlike A1111,
a refused or failed URL is a 4xx with a message, not a 500.

Known limit: the HTTP client resolves the host again when it connects, so a DNS server that
answers differently within that window (DNS rebinding) is not caught here.
"""
from __future__ import annotations

import io
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

import httpx
from PIL import Image, UnidentifiedImageError

Resolver = Callable[[str, int], list[str]]   # (host, port) → IP address strings

MAX_IMAGE_BYTES = 50 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0
MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 * 1024


class RemoteImageError(Exception):
    """A URL that is refused or cannot be turned into an image; `status_code` is a 4xx."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified and shared
    (carrier-grade NAT) addresses, including IPv4 ones written as IPv4-mapped IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])   # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast \
            or ip.is_reserved or ip.is_unspecified:
        return False
    return ip.is_global


@dataclass(frozen=True)
class RemoteImagePolicy:
    """What may be fetched and how: the API options plus fixed limits."""
    enabled: bool = True
    forbid_local: bool = True
    user_agent: str = ""
    timeout_s: float = FETCH_TIMEOUT_S
    max_bytes: int = MAX_IMAGE_BYTES
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_options(cls, options: Any) -> "RemoteImagePolicy":
        """api_enable_requests, api_forbid_local_requests, api_useragent; a registry that lacks
        one of them gets the safe default."""
        def option(key: str, default: Any) -> Any:
            try:
                value = options.get(key)
            except KeyError:
                return default
            return default if value is None else value

        return cls(enabled=bool(option("api_enable_requests", True)),
                   forbid_local=bool(option("api_forbid_local_requests", True)),
                   user_agent=str(option("api_useragent", "")))


class RemoteImageFetcher:
    """Fetches image URLs under a policy. `resolver` and `transport` (an httpx transport, e.g.
    httpx.MockTransport) are injectable so tests never touch the network."""

    def __init__(self, policy: RemoteImagePolicy, *, resolver: Resolver = system_resolver,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.transport = transport

    def check_url(self, url: httpx.URL) -> None:
        """Raise RemoteImageError unless `url` is http(s) and (with forbid_local) every address
        of its host is public."""
        if url.scheme not in ("http", "https") or not url.host:
            raise RemoteImageError(f"Not an http(s) URL: {url}")
        if not self.policy.forbid_local:
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = [str(ipaddress.ip_address(url.host))]   # an IP literal needs no lookup
        except ValueError:
            try:
                addresses = self.resolver(url.host, port)
            except (OSError, UnicodeError) as error:
                raise RemoteImageError(f"Cannot resolve host {url.host!r}") from error
        if not addresses or not all(is_public_address(address) for address in addresses):
            raise RemoteImageError("Request to local resource not allowed", status_code=403)

    def fetch_bytes(self, url: str) -> bytes:
        policy = self.policy
        if not policy.enabled:
            raise RemoteImageError("Requests not allowed: the api_enable_requests setting is off",
                                   status_code=403)
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as error:
            raise RemoteImageError(f"Invalid URL: {error}") from error
        headers = {"User-Agent": policy.user_agent} if policy.user_agent else {}
        deadline = time.monotonic() + policy.timeout_s
        with httpx.Client(transport=self.transport, timeout=policy.timeout_s, headers=headers,
                          follow_redirects=False, trust_env=False) as client:
            for _ in range(policy.max_redirects + 1):
                self.check_url(current)
                try:
                    with client.stream("GET", current) as response:
                        if not response.is_redirect:
                            return self._read_body(response, current, deadline)
                        location = response.headers.get("location", "")
                    current = current.join(location)
                except httpx.InvalidURL as error:
                    raise RemoteImageError(f"Invalid redirect from {current}: {error}") from error
                except httpx.TimeoutException as error:
                    raise RemoteImageError(f"Timed out fetching {current}") from error
                except httpx.HTTPError as error:
                    raise RemoteImageError(f"Could not fetch {current}: {error}") from error
        raise RemoteImageError(f"Too many redirects fetching {url}")

    def _read_body(self, response: httpx.Response, url: httpx.URL, deadline: float) -> bytes:
        if response.status_code != 200:
            raise RemoteImageError(f"Could not fetch {url}: HTTP {response.status_code}")
        limit = self.policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RemoteImageError(f"Image at {url} is larger than {limit} bytes", 413)
        body = bytearray()
        for chunk in response.iter_bytes(_CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                raise RemoteImageError(f"Image at {url} is larger than {limit} bytes", 413)
            # httpx's timeout is per read; this bounds a server that drips bytes forever
            if time.monotonic() > deadline:
                raise RemoteImageError(f"Timed out fetching {url}")
        return bytes(body)

    def fetch_image(self, url: str,
                    check_size: Callable[[int, int], None] | None = None) -> Image.Image:
        """The image at `url`; `check_size(width, height)` may refuse it from its header,
        before its pixels are decoded."""
        data = self.fetch_bytes(url)
        try:
            image = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise RemoteImageError(f"The file at {url} is not an image") from error
        if check_size is not None:
            check_size(*image.size)
        try:
            image.load()
        except (OSError, ValueError) as error:
            raise RemoteImageError(f"The file at {url} is not an image") from error
        return image


def remote_image_loader(options: Any, *, resolver: Resolver = system_resolver,
                        transport: httpx.BaseTransport | None = None
                        ) -> Callable[[str], Image.Image]:
    """url → image under the current options (read now, so a settings change applies to the
    next request)."""
    return RemoteImageFetcher(RemoteImagePolicy.from_options(options), resolver=resolver,
                              transport=transport).fetch_image
