"""Which image and video sources a server request may name, and fetching the remote ones safely.

data: URLs always; local files only under an allowed folder; http(s) URLs are fetched here, with a
timeout and a byte limit, only from public addresses: a host that resolves to a private, loopback,
link-local or reserved address is refused, and so is every redirect to one (unless private media
are allowed). Each connection goes to the very addresses that were checked (the Host header and TLS
name stay the URL's), so a second DNS answer cannot send it elsewhere; no proxy is used. The
processor then reads the fetched bytes, never the URL.
"""
import functools
import http.client
import ipaddress
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .protocol import RequestError


@dataclass
class MediaPolicy:
    local_root: Optional[Path] = None      # local files under this folder; None: no local files
    allow_private: bool = False            # fetch from private / loopback addresses too
    timeout: float = 10.0                  # seconds per remote fetch
    max_bytes: int = 64 << 20              # larger remote media are refused

    def check(self, url, param: str) -> Union[str, bytes]:
        """The source to hand the processor: the data: URL, a checked local path, or fetched bytes."""
        if not isinstance(url, str) or not url:
            raise RequestError(f"{param} must be a non-empty URL string", param=param)
        head = url[:8].lower()
        if head.startswith("data:"):
            return url
        if head.startswith(("http://", "https://")):
            return self.fetch(url, param)
        return self._local(url, param)

    def _local(self, url: str, param: str) -> str:
        if self.local_root is None:
            raise RequestError(f"{param}: local files are not served; start the server with "
                               "--allowed-local-media-path DIR, or send a data: URL", param=param)
        path = Path(url[7:] if url[:7].lower() == "file://" else url).expanduser()
        resolved = Path(os.path.realpath(path))
        if not resolved.is_relative_to(self.local_root):
            raise RequestError(f"{param}: {url!r} is outside --allowed-local-media-path {self.local_root}",
                               param=param)
        return str(resolved)

    def fetch(self, url: str, param: str) -> bytes:
        if not urllib.parse.urlsplit(url).hostname:
            raise RequestError(f"{param}: {url!r} has no host", param=param)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _CheckedRedirects(self, param),
                                             _PinnedHTTPHandler(self, param), _PinnedHTTPSHandler(self, param))
        try:
            with opener.open(url, timeout=self.timeout) as response:
                data = response.read(self.max_bytes + 1)
        except RequestError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RequestError(f"{param}: could not fetch {url}: {getattr(exc, 'reason', exc)}", param=param) from None
        if len(data) > self.max_bytes:
            raise RequestError(f"{param}: {url} is over {self.max_bytes} bytes", param=param)
        return data

    def check_host(self, url: str, param: str) -> None:
        """Refuses a URL whose host resolves to a non-public address (unless allow_private)."""
        host = urllib.parse.urlsplit(url).hostname
        if not host:
            raise RequestError(f"{param}: {url!r} has no host", param=param)
        self.addresses(host, param)

    def addresses(self, host: str, param: str) -> list:
        """The addresses `host` resolves to, each checked to be public (unless allow_private)."""
        try:
            addresses = list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, None,
                                                                                      type=socket.SOCK_STREAM)))
        except socket.gaierror as exc:
            raise RequestError(f"{param}: cannot resolve {host}: {exc}", param=param) from None
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not (ip.is_global or self.allow_private):
                raise RequestError(f"{param}: {host} resolves to a non-public address ({ip}); this server "
                                   "fetches only public addresses (--allow-private-media lifts this)",
                                   param=param, code="private_address")
        return addresses


def _connect_checked(connection, policy: MediaPolicy, param: str) -> socket.socket:
    """A socket to one of the checked addresses of the connection's host (tried in order)."""
    error = None
    for address in policy.addresses(connection.host, param):
        try:
            return socket.create_connection((address, connection.port), connection.timeout,
                                            connection.source_address)
        except OSError as exc:
            error = exc
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, policy: MediaPolicy, param: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy, self.param = policy, param

    def connect(self):
        self.sock = _connect_checked(self, self.policy, self.param)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, policy: MediaPolicy, param: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.policy, self.param = policy, param

    def connect(self):
        sock = _connect_checked(self, self.policy, self.param)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)    # certificate of the URL's host


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: MediaPolicy, param: str):
        super().__init__()
        self.connection = functools.partial(_PinnedHTTPConnection, policy=policy, param=param)

    def http_open(self, req):
        return self.do_open(self.connection, req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: MediaPolicy, param: str):
        super().__init__()
        self.connection = functools.partial(_PinnedHTTPSConnection, policy=policy, param=param)

    def https_open(self, req):
        return self.do_open(self.connection, req, context=self._context)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a host the policy would fetch from."""
    max_redirections = 5

    def __init__(self, policy: MediaPolicy, param: str):
        super().__init__()
        self.policy, self.param = policy, param

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            raise RequestError(f"{self.param}: a redirect to {newurl!r} is not followed", param=self.param)
        self.policy.check_host(newurl, self.param)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
