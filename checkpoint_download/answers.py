"""Reading a server's answer: can this mirror serve the file, its size and version, and a few words for what failed.

A resumed download must come from the same version of the file as the bytes already received. HTTP says
which version a server has with ``ETag`` (or ``Last-Modified``), and ``If-Range`` asks for the rest of the
file only if the version is still that one (else the whole file, from byte 0). Servers that ignore
``If-Range`` are caught by comparing the version they answer with.
"""

from __future__ import annotations

import re
from typing import Callable
from urllib.parse import unquote, urlsplit

import requests
import urllib3

from .errors import DownloadError
from .manifest import is_hugging_face


class MirrorUnusable(Exception):
    """This mirror cannot serve the file (missing, refused, another file, unreachable): try the next one."""

    def __init__(self, reason: str, network: bool = False):
        super().__init__(reason)
        self.network = network  # True when retrying might have helped later (connection, busy server)


class TryAgain(Exception):
    """A failure that may pass (network, busy server): try the same mirror again after a pause."""

    def __init__(self, reason: str, answered: bool, slow: bool = False):
        super().__init__(reason)
        self.answered = answered
        self.slow = slow  # it sent bytes, but too few to count as progress: retrying will not make it faster


def host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc if parts.scheme in ("http", "https") and parts.netloc else url


def reason(exc: Exception) -> str:
    """A few words for a network error, instead of urllib3's nested object reprs."""
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError)) or "timed out" in text:
        return "no data within the time limit"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/SSL error"
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, urllib3.exceptions.ProtocolError)):
        return "connection broken"
    if re.search(r"resolve|getaddrinfo|Name or service not known|nodename nor servname", text):
        return "its name could not be resolved"
    if "refused" in text.lower():
        return "connection refused"
    errno = re.search(r"\[(?:Errno|WinError) -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else type(exc).__name__


def content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes 100-199/1000`` or ``bytes */1000``."""
    try:
        span, total = header.split(" ", 1)[1].split("/")
        first = None if span == "*" else int(span.split("-")[0])
        return first, None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None, None


def version_of(response: requests.Response) -> dict[str, str]:
    """The server's version of the file: its ETag and Last-Modified, where it sends them."""
    found = {"etag": response.headers.get("ETag"), "last_modified": response.headers.get("Last-Modified")}
    return {key: value for key, value in found.items() if value}


def if_range(info: dict) -> str | None:
    """The ``If-Range`` value for resuming what ``info`` describes (a weak ETag may not be used there)."""
    etag = info.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return info.get("last_modified")


def changed_version(info: dict, answer: dict[str, str]) -> str | None:
    """Which validator says the server's file is not the one partly downloaded (None: the same, or unknown)."""
    for key, label in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        if info.get(key) and answer.get(key) and info[key] != answer[key]:
            return f"its {label} changed from {info[key]} to {answer[key]}"
    return None


def file_name_of(url: str) -> str:
    """The file name an address ends with, without its ``?query`` or ``#fragment`` (``%20`` decoded)."""
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if name in ("", ".", "..") or any(c in name for c in '/\\:*?"<>|') or any(ord(c) < 32 for c in name):
        raise DownloadError(f"Cannot tell a file name from {url}: give the file to write, e.g. -o DIR/model.ckpt.")
    return name


def discarded_reason(response: requests.Response, asked: dict) -> str:
    """Why a resume was answered with the whole file: another version of it, or no Range support."""
    if "If-Range" in asked and response.headers.get("Accept-Ranges", "").lower() == "bytes":
        return "has another version of the file than the one partly downloaded (If-Range)"
    return "does not support resuming (no HTTP Range)"


def check_answer(response: requests.Response, url: str, part, name: str, expected_size: int | None,
                 recorded: bool, say_restart: Callable[[str], None]) -> tuple[int | None, bool]:
    """Check an answer's status, size and version against the ``part`` file (a ``PartFile``) and the size
    expected (recorded: the one noted at its first download); returns (total size or None, already complete).
    Raises TryAgain or MirrorUnusable; discards what ``part`` holds when it cannot be the same file's."""
    status, start = response.status_code, part.size
    known = expected_size or part.info.get("size")  # the size the manifest, the record or the server said before
    if status == 416 and start:
        _, total = content_range(response.headers.get("Content-Range"))
        if total == start and (known is None or known == start):
            return total, True  # an earlier run stopped between the last byte and the rename
        if total is not None and total < start:
            part.restart()
            say_restart(f"{name}: the partial file is longer than the file on {host(url)}: starting again from zero")
            raise TryAgain("refused the range of the partial file", answered=True)
        raise MirrorUnusable(f"refused to resume at {start:,} bytes (HTTP 416, file size "
                             f"{'unknown' if total is None else f'{total:,}'}) although the file has "
                             f"{'more' if known is None else f'{known:,}'} bytes: the server is misbehaving")
    if status in (401, 403):
        gated = (" (a gated repository: accept its licence on the model's page, then set HF_TOKEN)"
                 if is_hugging_face(url) else "")
        raise MirrorUnusable(f"refused access (HTTP {status}){gated}")
    if status in (404, 410):
        raise MirrorUnusable(f"does not have the file (HTTP {status})")
    if status in (408, 425, 429) or status >= 500:
        raise TryAgain(f"answered HTTP {status} ({response.reason})", answered=True)
    if status not in (200, 206):
        raise MirrorUnusable(f"answered HTTP {status} ({response.reason})")
    if status == 206:
        first, total = content_range(response.headers.get("Content-Range"))
        if first != start:
            raise MirrorUnusable(f"answered the range request with the wrong bytes (from {first}, not {start})")
        changed = changed_version(part.info, version_of(response))
        if changed:  # a server that ignored If-Range: these bytes belong to another file
            part.restart()
            raise TryAgain(f"has another version of the file than the one partly downloaded ({changed}); "
                           "starting again from zero", answered=True)
    else:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    if expected_size is not None and total is not None and total != expected_size:
        noted = " (its size recorded at its first download)" if recorded else ""
        raise MirrorUnusable(f"serves {total:,} bytes but {name} is {expected_size:,} bytes{noted}: "
                             "not the same file")
    if status == 200 and start:
        part.restart()  # the caller says so
    return total, False
