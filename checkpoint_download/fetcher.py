"""Fetch one file from its mirrors: resume, retry with backoff, fall over, verify, then rename into place.

Verification: the size (manifest, record or the server's Content-Length) and the SHA-256
(published in the manifest, or recorded at this folder's first download). A file that fails is
moved to ``<name>.bad``, never left where the engine would load it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .errors import DownloadCancelled, DownloadError
from .local_files import DownloadLock, PartFile, ensure_free_space, human, move_aside, sha256_of
from .manifest import FileSpec, auth_headers, is_hugging_face, resolve_url
from .progress import ProgressCallback, Reporter, State
from .records import Records

CHUNK = 64 * 1024  # pause and cancel are looked at after every chunk
USER_AGENT = "llama-desk-downloader/1"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5            # tries per mirror, counted again from 1 whenever bytes arrive
    unanswered_attempts: int = 2  # tries for a mirror that never answered (dead host, blocked site)
    first_delay_s: float = 1.0   # then doubled at every try
    max_delay_s: float = 30.0
    connect_timeout_s: float = 20.0
    read_timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s)


@dataclass(frozen=True)
class Expectation:
    size: int | None
    sha256: str | None
    source: str  # where the hash comes from, said in messages; "" when there is none


class _MirrorUnusable(Exception):
    """This mirror cannot serve the file (missing, refused, another file, unreachable): try the next one."""

    def __init__(self, reason: str, network: bool = False):
        super().__init__(reason)
        self.network = network  # True when retrying might have helped later (connection, busy server)


class _Transient(Exception):
    """A failure that may pass (network, busy server): try the same mirror again after a pause."""

    def __init__(self, reason: str, answered: bool):
        super().__init__(reason)
        self.answered = answered


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc if parts.scheme in ("http", "https") and parts.netloc else url


def _reason(exc: requests.RequestException) -> str:
    """A few words for a network error, instead of urllib3's nested object reprs."""
    text = str(exc)
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ReadTimeout) or "timed out" in text:
        return "no data within the time limit"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS/SSL error"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken"
    if re.search(r"resolve|getaddrinfo|Name or service not known|nodename nor servname", text):
        return "its name could not be resolved"
    if "refused" in text.lower():
        return "connection refused"
    errno = re.search(r"\[(?:Errno|WinError) -?\d+\] [^'\")]+", text)
    return errno.group(0) if errno else type(exc).__name__


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes 100-199/1000`` or ``bytes */1000``."""
    try:
        span, total = header.split(" ", 1)[1].split("/")
        first = None if span == "*" else int(span.split("-")[0])
        return first, None if total == "*" else int(total)
    except (AttributeError, IndexError, ValueError):
        return None, None


class FileFetcher:
    """Downloads one ``FileSpec`` into ``folder``; ``run()`` returns the verified path."""

    def __init__(self, spec: FileSpec, folder: Path, *, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None, pause: threading.Event | None = None,
                 retry: RetryPolicy = RetryPolicy(), session: requests.Session | None = None,
                 record: bool = True):
        self.spec, self.folder, self.retry, self.record = spec, Path(folder), retry, record
        self.cancel, self.pause = cancel, pause
        self.session = session or requests.Session()
        self.records = Records(self.folder)
        self.rep = Reporter(spec.name, progress)
        self.target = self.folder / spec.name

    # -- the steps --------------------------------------------------------------------------

    def run(self) -> Path:
        try:
            with DownloadLock(self.target):
                return self._run()
        except DownloadError as exc:
            if self.rep.last_state not in (State.FAILED, State.CANCELLED):  # e.g. no disk space: say it there too
                self.rep.emit(State.FAILED, 0, str(exc))
            raise

    def _run(self) -> Path:
        expect = self.expectation()
        self.rep.total = expect.size
        if self.target.exists() and self._existing_is_good(expect):
            return self.target
        part = PartFile(self.target)
        try:
            if part.path.exists():
                self.rep.total = part.path.stat().st_size  # while hashing what an earlier run left
            part.open(lambda n: self.rep.bytes(n, State.CHECKING), lambda: self._stop_if_cancelled(part))
            self.rep.total = expect.size
            if expect.size is not None and part.size > expect.size:
                part.restart()  # longer than the file: not a prefix of it
            if expect.size is not None:
                ensure_free_space(self.folder, expect.size - part.size, self.spec.name)
            total, url = self._download(part, expect)
            return self._verify_and_place(part, expect, total, url)
        finally:
            part.close()
            if part.size == 0:
                part.path.unlink(missing_ok=True)  # nothing received: leave no empty .part behind

    def expectation(self) -> Expectation:
        spec, record = self.spec, self.records.get(self.spec.name)
        if spec.sha256:
            return Expectation(spec.size, spec.sha256, "the published checksum")
        if record and (spec.size is None or spec.size == record.size):
            return Expectation(record.size, record.sha256, f"the checksum recorded at its first download ({record.recorded})")
        return Expectation(spec.size, None, "")

    def _existing_is_good(self, expect: Expectation) -> bool:
        name, size = self.spec.name, self.target.stat().st_size
        self.rep.total = size
        if expect.size is not None and size != expect.size:
            bad = move_aside(self.target)
            self.rep.emit(State.RESTARTING, 0, f"{name} on disk has {size:,} bytes instead of {expect.size:,}: "
                                               f"moved it to {bad.name} and downloading it again")
            return False
        actual = sha256_of(self.target, lambda n: self.rep.bytes(n, State.CHECKING), self._stop_if_cancelled).hexdigest()
        if expect.sha256 and actual != expect.sha256:
            bad = move_aside(self.target)
            self.rep.emit(State.RESTARTING, 0, f"{name} on disk does not match {expect.source} (sha256 {actual}): "
                                               f"moved it to {bad.name} and downloading it again")
            return False
        if expect.sha256:
            note = f"already downloaded; sha256 matches {expect.source}"
        elif self.record:
            self.records.put(name, size, actual, "present on disk")
            note = (f"already present; no published checksum: recorded its sha256 {actual} in {self.records.path} "
                    "so later runs detect a damaged copy (this copy itself could not be checked)")
        else:
            note = f"already present; not verified (no checksum given); its sha256 is {actual}"
        self.rep.emit(State.DONE, size, f"{name}: {note}")
        return True

    def _download(self, part: PartFile, expect: Expectation) -> tuple[int | None, str]:
        failures, network = [], False
        for i, mirror in enumerate(self.spec.mirrors):
            url = resolve_url(mirror)
            self.rep.mirror = url
            try:
                return self._from_mirror(url, part, expect), url
            except _MirrorUnusable as exc:
                failures.append(f"{_host(url)} {exc}")
                network = network or exc.network
                if i + 1 < len(self.spec.mirrors):  # after the last one, the FAILED event says it all
                    self.rep.emit(State.MIRROR_FAILED, part.size, f"{self.spec.name}: {url} {exc}; trying the next mirror")
        kept = f" {part.path.name} keeps the {human(part.size)} already received." if part.size else ""
        if network:
            advice = " Check the network connection and run the download again (it resumes)."
            if any(m.startswith("hf://") for m in self.spec.mirrors):
                advice += " If Hugging Face is blocked, set HF_ENDPOINT=https://hf-mirror.com."
        else:
            advice = " The address may have moved: give another mirror (see python -m checkpoint_download --help)."
        message = f"Could not download {self.spec.name}: {'; '.join(failures)}.{kept}{advice}"
        self.rep.emit(State.FAILED, part.size, message)
        raise DownloadError(message)

    def _from_mirror(self, url: str, part: PartFile, expect: Expectation) -> int:
        """Read from one mirror until the file is complete; retries what may pass."""
        failures, answered = 0, False
        while True:
            self._stop_if_cancelled(part)
            self._wait_while_paused(part)
            if expect.size is not None and part.size == expect.size:
                return expect.size
            before = part.size
            try:
                total = self._read(url, part, expect)
                answered = True
                if total is not False:
                    return total
            except _Transient as exc:
                answered = answered or exc.answered
                failures = 1 if part.size > before else failures + 1
                limit = self.retry.attempts if answered else min(self.retry.unanswered_attempts, self.retry.attempts)
                if failures >= limit:
                    raise _MirrorUnusable(f"{exc} (tried {failures} times)", network=True) from None
                delay = self.retry.delay(failures)
                self.rep.emit(State.RETRYING, part.size, f"{self.spec.name}: {_host(url)} {exc}; "
                                                         f"trying again in {delay:g} s (try {failures + 1} of {limit})")
                self._sleep(delay, part)

    def _read(self, url: str, part: PartFile, expect: Expectation):
        """One request: the total size when the file is complete, False when paused."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **auth_headers(url)}
        start = part.size
        if start:
            headers["Range"] = f"bytes={start}-"
        try:
            response = self.session.get(url, headers=headers, stream=True, allow_redirects=True,
                                        timeout=(self.retry.connect_timeout_s, self.retry.read_timeout_s))
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise _MirrorUnusable("is not an http(s) address") from None
        except requests.RequestException as exc:
            raise _Transient(f"cannot be reached ({_reason(exc)})", answered=False) from None
        with response:
            discarded = part.size
            total, complete = self._accept(response, url, part, expect)
            if complete:
                return total
            discarded -= part.size
            if total is None:
                total = expect.size  # the server did not say: the manifest or the record does
            self.rep.total = total
            if expect.size is None and total is not None:
                ensure_free_space(self.folder, total - part.size, self.spec.name)
            resumed = f", resuming at {human(part.size)}" if part.size else ""
            self.rep.meter.reset()
            self.rep.emit(State.DOWNLOADING, part.size, f"{self.spec.name}: from {url}{resumed}")
            if discarded:
                self.rep.emit(State.RESTARTING, 0, f"{self.spec.name}: {_host(url)} does not support resuming "
                                                   f"(no HTTP Range): the {human(discarded)} already received are "
                                                   "discarded and the file starts again from zero")
            try:
                for chunk in response.iter_content(CHUNK):
                    part.write(chunk)
                    self.rep.bytes(part.size)
                    self._stop_if_cancelled(part)
                    if self.pause is not None and self.pause.is_set():
                        return False  # closes the connection: a long pause would time it out anyway
            except requests.RequestException as exc:
                raise _Transient(f"broke the connection at {human(part.size)} ({_reason(exc)})", answered=True) from None
        if total is not None and part.size > total:
            part.restart()  # those bytes cannot be trusted
            raise _Transient(f"sent more than the {total:,} bytes it announced", answered=True)
        if total is not None and part.size < total:
            raise _Transient(f"closed the connection at {part.size:,} of {total:,} bytes", answered=True)
        return part.size if total is None else total

    def _accept(self, response: requests.Response, url: str, part: PartFile, expect: Expectation):
        """Check the answer's status and size; returns (total size or None, already complete)."""
        status, start, name = response.status_code, part.size, self.spec.name
        if status == 416 and start:
            _, total = _content_range(response.headers.get("Content-Range"))
            if total == start:
                return total, True  # an earlier run stopped between the last byte and the rename
            part.restart()
            self.rep.emit(State.RESTARTING, 0, f"{name}: the partial file is longer than the file on "
                                               f"{_host(url)}: starting again from zero")
            raise _Transient("refused the range of the partial file", answered=True)
        if status in (401, 403):
            gated = (" (a gated repository: accept its licence on the model's page, then set HF_TOKEN)"
                     if is_hugging_face(url) else "")
            raise _MirrorUnusable(f"refused access (HTTP {status}){gated}")
        if status in (404, 410):
            raise _MirrorUnusable(f"does not have the file (HTTP {status})")
        if status in (408, 425, 429) or status >= 500:
            raise _Transient(f"answered HTTP {status} ({response.reason})", answered=True)
        if status not in (200, 206):
            raise _MirrorUnusable(f"answered HTTP {status} ({response.reason})")
        if status == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            if first != start:
                raise _MirrorUnusable(f"answered the range request with the wrong bytes (from {first}, not {start})")
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expect.size is not None and total is not None and total != expect.size:
            raise _MirrorUnusable(f"serves {total:,} bytes but {name} is {expect.size:,} bytes: not the same file")
        if status == 200 and start:
            part.restart()  # the caller says so
        return total, False

    def _verify_and_place(self, part: PartFile, expect: Expectation, total: int | None, url: str) -> Path:
        name, actual = self.spec.name, part.sha256()
        if expect.size is not None and part.size != expect.size:
            bad = part.reject()
            message = (f"{name} has {part.size:,} bytes instead of {expect.size:,}. It was moved to {bad} "
                       "and will not be loaded; run the download again to fetch it afresh.")
            self.rep.emit(State.FAILED, 0, message)
            raise DownloadError(message)
        if expect.sha256 and actual != expect.sha256:
            bad = part.reject()
            again = ("run the download again to fetch it afresh" if expect.source == "the published checksum" else
                     "run the download again; if the copy recorded first was the damaged one, delete "
                     f"{self.records.path} to accept a new copy")
            message = (f"{name} is corrupt: its sha256 is {actual} but {expect.source} is {expect.sha256}. "
                       f"It was moved to {bad} and will not be loaded; {again}.")
            self.rep.emit(State.FAILED, 0, message)
            raise DownloadError(message)
        size = part.size
        if expect.sha256:
            note = f"size and sha256 match {expect.source}"
        else:
            checked = ("size checked against the manifest" if expect.size is not None else
                       "size checked against the server's Content-Length" if total is not None else
                       "size not checked (the server did not say it)")
            if self.record:
                self.records.put(name, size, actual, url)
                note = f"{checked}; no published checksum: recorded sha256 {actual} in {self.records.path} for later runs"
            else:
                note = f"{checked}; not verified (no checksum given): sha256 {actual}"
        path = part.place()
        self.rep.emit(State.DONE, size, f"{name}: {human(size)} in {path}; {note}")
        return path

    # -- pause and cancel ----------------------------------------------------------------------

    def _stop_if_cancelled(self, part: PartFile | None = None) -> None:
        if self.cancel is None or not self.cancel.is_set():
            return
        done = part.size if part else 0
        kept = (f"{part.path.name} keeps the {human(done)} already received; run the download again to resume"
                if part and done else "nothing was received; run the download again to continue")
        message = f"Cancelled {self.spec.name}: {kept}."
        self.rep.emit(State.CANCELLED, done, message)
        raise DownloadCancelled(message)

    def _wait_while_paused(self, part: PartFile) -> None:
        if self.pause is None or not self.pause.is_set():
            return
        self.rep.meter.reset()
        self.rep.emit(State.PAUSED, part.size, f"{self.spec.name}: paused at {human(part.size)}")
        while self.pause.is_set():
            self._sleep(0.1, part)

    def _sleep(self, seconds: float, part: PartFile) -> None:
        if self.cancel is not None:
            self.cancel.wait(seconds)
        else:
            time.sleep(seconds)
        self._stop_if_cancelled(part)
