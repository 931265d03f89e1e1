"""Turn an image/video source (path, file://, data:, http(s)://, bytes) into bytes or a local path.

Remote fetches have a timeout and a byte limit; both, and remote access itself, are options.
"""
import base64
import binascii
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from .errors import SourceFetchError, UnsupportedSourceError


@dataclass(frozen=True)
class FetchOptions:
    allow_remote: bool = True          # False: http(s) sources raise UnsupportedSourceError
    timeout: float = 10.0              # seconds per http(s) request
    max_bytes: int = 64 * 1024 * 1024  # larger downloads / data: payloads are refused


def _scheme(source):
    head = source[:16].lower()
    for scheme in ("data:", "file://", "http://", "https://"):
        if head.startswith(scheme):
            return scheme
    if "://" in head:
        return head.split("://", 1)[0] + "://"
    return ""


def _decode_data_url(source, max_bytes):
    # data:[<mediatype>][;base64],<payload>; only base64 payloads carry binary media.
    header, sep, payload = source.partition(",")
    if not sep or not header.endswith(";base64"):
        raise UnsupportedSourceError(
            f"data: URLs must be base64 encoded ('data:image/png;base64,...'), got {source[:40]!r}")
    if len(payload) * 3 // 4 > max_bytes:
        raise SourceFetchError(f"data: URL payload exceeds max_bytes={max_bytes}")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SourceFetchError(f"data: URL has invalid base64 payload: {e}") from None


def _download(url, options):
    if not options.allow_remote:
        raise UnsupportedSourceError(
            f"remote sources are disabled (allow_remote=False); download {url!r} yourself and pass a path")
    try:
        with urllib.request.urlopen(url, timeout=options.timeout) as response:
            data = response.read(options.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SourceFetchError(f"could not download {url!r}: {e}") from None
    if len(data) > options.max_bytes:
        raise SourceFetchError(f"download of {url!r} exceeds max_bytes={options.max_bytes}")
    return data


def _local_path(path):
    if not os.path.isfile(path):
        raise SourceFetchError(f"file not found: {path!r}")
    return path


def resolve(source, options=FetchOptions()):
    """Return bytes (data:, http(s)://, bytes input) or a local file path (path, file://)."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if not isinstance(source, str):
        raise UnsupportedSourceError(f"unsupported source type {type(source).__name__}")
    scheme = _scheme(source)
    if scheme == "data:":
        return _decode_data_url(source, options.max_bytes)
    if scheme in ("http://", "https://"):
        return _download(source, options)
    if scheme == "file://":
        return _local_path(source[len("file://"):])
    if scheme:
        raise UnsupportedSourceError(
            f"unsupported URL scheme {scheme!r} in {source[:60]!r}; use a path, file://, data: or http(s)://")
    return _local_path(source)
