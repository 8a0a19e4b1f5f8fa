"""Fetch one file from its mirrors: resume, retry with backoff, fall over, verify, then rename into place.

Verification: the size (manifest, record or the server's Content-Length) and the SHA-256
(published in the manifest, given by the user, or recorded at this folder's first download). A file that
fails is moved to ``<name>.bad``, never left where the engine would load it. A resume asks for the rest of
the same version of the file only (``If-Range``); a connection that stalls or crawls is dropped and tried
again, and a mirror that sends nothing for minutes is given up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from .answers import MirrorUnusable, TryAgain, check_answer, discarded_reason, host, if_range, reason, version_of
from .errors import DownloadCancelled, DownloadError
from .local_files import DownloadLock, PartFile, ensure_free_space, human, move_aside, sha256_of
from .manifest import FileSpec, auth_headers, resolve_url
from .progress import ProgressCallback, Reporter, SlowWindow, State
from .records import Records

CHUNK = 64 * 1024  # the most read at once; whatever has arrived is written at once (a drop loses nothing)
USER_AGENT = "llama-desk-downloader/1"
PUBLISHED = "the published checksum"
GIVEN = "the checksum you gave"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5            # tries per mirror, counted again from 1 whenever bytes arrive
    unanswered_attempts: int = 2  # tries for a mirror that never answered (dead host, blocked site)
    first_delay_s: float = 1.0   # then doubled at every try
    max_delay_s: float = 30.0
    connect_timeout_s: float = 20.0
    read_timeout_s: float = 30.0  # no byte at all for this long: the connection is dropped and tried again
    min_speed_bps: float = 1000.0  # fewer bytes per second than this over slow_window_s: dropped and tried again
    slow_window_s: float = 60.0
    stall_s: float = 150.0       # no new byte from a mirror for this long, over all its tries: the next mirror

    def delay(self, attempt: int) -> float:
        return min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s)


@dataclass(frozen=True)
class Expectation:
    size: int | None
    sha256: str | None
    source: str  # where the hash comes from, said in messages; "" when there is none
    recorded: bool = False  # size and hash come from .verified.json (a reset may be needed one day)


class FileFetcher:
    """Downloads one ``FileSpec`` into ``folder``; ``run()`` returns the verified path.

    ``checksum_source`` says whose SHA-256 ``spec.sha256`` is (the manifest's, or the user's own ``--sha256``,
    which may be mistyped: a file on disk that does not match it is then left alone).
    """

    def __init__(self, spec: FileSpec, folder: Path, *, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None, pause: threading.Event | None = None,
                 retry: RetryPolicy = RetryPolicy(), session: requests.Session | None = None,
                 record: bool = True, checksum_source: str = PUBLISHED):
        self.spec, self.folder, self.retry, self.record = spec, Path(folder), retry, record
        self.cancel, self.pause, self.checksum_source = cancel, pause, checksum_source
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
            self.rep.total = part.keep_what_is_known() or None  # while hashing what an earlier run left
            part.open(lambda n: self.rep.bytes(n, State.CHECKING), lambda: self._stop_if_cancelled(part))
            self._say_what_was_dropped(part)
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
                part.discard_info()

    def _say_what_was_dropped(self, part: PartFile) -> None:
        name = self.spec.name
        if part.untrusted:
            self.rep.emit(State.RESTARTING, 0, f"{name}: {part.path.name} ({human(part.untrusted)}) was not left by "
                                               f"this downloader ({part.info_path.name} is missing), so nothing says "
                                               "which file it is part of: starting again from zero")
        elif part.refetch:
            self.rep.emit(State.CHECKING, part.size, f"{name}: the last {human(part.refetch)} of {part.path.name} "
                                                     "may not have reached the disk (the last run did not end "
                                                     "cleanly): fetching them again")

    def expectation(self) -> Expectation:
        spec, record = self.spec, self.records.get(self.spec.name)
        if spec.sha256:
            return Expectation(spec.size, spec.sha256, self.checksum_source)
        if record and (spec.size is None or spec.size == record.size):
            return Expectation(record.size, record.sha256,
                               f"the checksum recorded at its first download ({record.recorded})", recorded=True)
        return Expectation(spec.size, None, "")

    def _existing_is_good(self, expect: Expectation) -> bool:
        name, size = self.spec.name, self.target.stat().st_size
        self.rep.total = size
        if expect.size is not None and size != expect.size and expect.source != GIVEN:
            bad = move_aside(self.target)
            self.rep.emit(State.RESTARTING, 0, f"{name} on disk has {size:,} bytes instead of {expect.size:,}: "
                                               f"moved it to {bad.name} and downloading it again")
            return False
        actual = sha256_of(self.target, lambda n: self.rep.bytes(n, State.CHECKING), self._stop_if_cancelled).hexdigest()
        if expect.sha256 and actual != expect.sha256:
            if expect.source == GIVEN:  # a typo must not cost a good file and a download
                raise DownloadError(f"{self.target} is already there, but its sha256 {actual} does not match "
                                    f"{GIVEN} ({expect.sha256}). It was left as it is: check the checksum "
                                    "(a typo?), or delete the file to download it again.")
            bad = move_aside(self.target)
            self.rep.emit(State.RESTARTING, 0, f"{name} on disk does not match {expect.source} (sha256 {actual}): "
                                               f"moved it to {bad.name} and downloading it again")
            return False
        if expect.sha256:
            note = f"already downloaded; sha256 matches {expect.source}"
        elif self.record:
            note = self._record(name, size, actual, "present on disk",
                                f"already present; no published checksum: recorded its sha256 {actual} in "
                                f"{self.records.path} so later runs detect a damaged copy (this copy itself could "
                                "not be checked)")
        else:
            note = f"already present; not verified (no checksum given); its sha256 is {actual}"
        self.rep.emit(State.DONE, size, f"{name}: {note}")
        return True

    def _record(self, name: str, size: int, sha256: str, source: str, note: str) -> str:
        """Write the record and return ``note``; a record that cannot be written is said, not fatal."""
        try:
            self.records.put(name, size, sha256, source)
        except OSError as exc:
            return (f"sha256 {sha256}; it could not be recorded in {self.records.path} ({exc.strerror or exc}), so "
                    "later runs cannot tell a damaged copy")
        return note

    def _download(self, part: PartFile, expect: Expectation) -> tuple[int | None, str]:
        failures, network = [], False
        for i, mirror in enumerate(self.spec.mirrors):
            url = resolve_url(mirror)
            self.rep.mirror = url
            try:
                return self._from_mirror(url, part, expect), url
            except MirrorUnusable as exc:
                failures.append(f"{host(url)} {exc}")
                network = network or exc.network
                if i + 1 < len(self.spec.mirrors):  # after the last one, the FAILED event says it all
                    self.rep.emit(State.MIRROR_FAILED, part.size, f"{self.spec.name}: {url} {exc}; trying the next mirror")
        kept = f" {part.path.name} keeps the {human(part.size)} already received." if part.size else ""
        if network:
            advice = " Check the network connection and run the download again (it resumes)."
            if any(m.startswith("hf://") for m in self.spec.mirrors):
                advice += " If Hugging Face is blocked, set HF_ENDPOINT=https://hf-mirror.com."
        elif expect.recorded and any("not the same file" in f for f in failures):
            advice = (" The size and checksum expected are the ones recorded at its first download; if the file "
                      f"was updated on the server, {self.records.reset_hint(self.spec.name)}.")
        else:
            advice = " The address may have moved: give another mirror (see python -m checkpoint_download --help)."
        message = f"Could not download {self.spec.name}: {'; '.join(failures)}.{kept}{advice}"
        self.rep.emit(State.FAILED, part.size, message)
        raise DownloadError(message)

    def _from_mirror(self, url: str, part: PartFile, expect: Expectation) -> int:
        """Read from one mirror until the file is complete; retries what may pass, gives up a stalled mirror."""
        failures, answered, progressed = 0, False, time.monotonic()
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
                progressed = time.monotonic()  # paused: not a stall
            except TryAgain as exc:
                answered = answered or exc.answered
                if part.size > before and not exc.slow:
                    failures, progressed = 1, time.monotonic()
                else:
                    failures += 1
                limit = self.retry.attempts if answered else min(self.retry.unanswered_attempts, self.retry.attempts)
                if failures >= limit:
                    raise MirrorUnusable(f"{exc} (tried {failures} times)", network=True) from None
                delay = self.retry.delay(failures)
                if time.monotonic() + delay - progressed > self.retry.stall_s:
                    raise MirrorUnusable(f"{exc}; nothing new arrived for {self.retry.stall_s:g} s",
                                          network=True) from None
                self.rep.emit(State.RETRYING, part.size, f"{self.spec.name}: {host(url)} {exc}; "
                                                         f"trying again in {delay:g} s (try {failures + 1} of {limit})")
                self._sleep(delay, part)

    def _read(self, url: str, part: PartFile, expect: Expectation):
        """One request: the total size when the file is complete, False when paused."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **auth_headers(url)}
        start = part.size
        if start:
            headers["Range"] = f"bytes={start}-"
            version = if_range(part.info)
            if version:
                headers["If-Range"] = version  # the rest of this version of the file, else all of the new one
        try:
            response = self.session.get(url, headers=headers, stream=True, allow_redirects=True,
                                        timeout=(self.retry.connect_timeout_s, self.retry.read_timeout_s))
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
            raise MirrorUnusable("is not an http(s) address") from None
        except requests.TooManyRedirects:
            raise MirrorUnusable("redirects in a loop (too many redirects): the address is wrong or the server is "
                                  "misconfigured") from None
        except requests.RequestException as exc:
            raise TryAgain(f"cannot be reached ({reason(exc)})", answered=False) from None
        with response:
            discarded = part.size
            total, complete = check_answer(response, url, part, self.spec.name, expect.size, expect.recorded,
                                           lambda message: self.rep.emit(State.RESTARTING, 0, message))
            if complete:
                return total
            discarded -= part.size
            if total is None:
                total = expect.size or part.info.get("size")  # the server did not say: the manifest, record, or before
            part.remember(url=url, size=total, **(version_of(response) or {k: v for k, v in part.info.items()
                                                                             if k in ("etag", "last_modified")}))
            self.rep.total = total
            if expect.size is None and total is not None:
                ensure_free_space(self.folder, total - part.size, self.spec.name)
            resumed = f", resuming at {human(part.size)}" if part.size else ""
            self.rep.meter.reset()
            self.rep.emit(State.DOWNLOADING, part.size, f"{self.spec.name}: from {url}{resumed}")
            if discarded:
                self.rep.emit(State.RESTARTING, 0, f"{self.spec.name}: {host(url)} {discarded_reason(response, headers)}"
                                                   f": the {human(discarded)} already received are discarded and the "
                                                   "file starts again from zero")
            if not self._receive(response, part):
                return False
        if total is not None and part.size > total:
            part.restart()  # those bytes cannot be trusted
            raise TryAgain(f"sent more than the {total:,} bytes it announced", answered=True)
        if total is not None and part.size < total:
            raise TryAgain(f"closed the connection at {part.size:,} of {total:,} bytes", answered=True)
        return part.size if total is None else total

    def _receive(self, response: requests.Response, part: PartFile) -> bool:
        """Write the body as it arrives; False when paused. A crawling connection is dropped (a TryAgain)."""
        window = SlowWindow(self.retry.min_speed_bps, self.retry.slow_window_s)
        try:
            while True:
                chunk = response.raw.read1(CHUNK)  # what has arrived, not a full CHUNK: a drop loses nothing
                if not chunk:
                    return True
                part.write(chunk)
                self.rep.bytes(part.size)
                self._stop_if_cancelled(part)
                if self.pause is not None and self.pause.is_set():
                    part.sync()
                    return False  # closes the connection: a long pause would time it out anyway
                slow = window.add(len(chunk))
                if slow:
                    raise TryAgain(f"is too slow ({slow}) at {human(part.size)}", answered=True, slow=True)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TryAgain(f"broke the connection at {human(part.size)} ({reason(exc)})", answered=True) from None

    def _verify_and_place(self, part: PartFile, expect: Expectation, total: int | None, url: str) -> Path:
        name, actual = self.spec.name, part.sha256()
        if expect.size is not None and part.size != expect.size:
            bad = part.reject()
            part.discard_info()
            message = (f"{name} has {part.size:,} bytes instead of {expect.size:,}. It was moved to {bad} "
                       "and will not be loaded; run the download again to fetch it afresh.")
            self.rep.emit(State.FAILED, 0, message)
            raise DownloadError(message)
        if expect.sha256 and actual != expect.sha256:
            bad = part.reject()
            part.discard_info()
            if expect.source == GIVEN:
                message = (f"{name}'s sha256 is {actual}, which does not match {GIVEN} ({expect.sha256}). It was "
                           f"moved to {bad} and will not be loaded; check the checksum (a typo?), then run the "
                           "download again.")
            else:
                again = ("run the download again to fetch it afresh" if expect.source == PUBLISHED else
                         f"run the download again; if the copy recorded first was the damaged one, "
                         f"{self.records.reset_hint(name)}")
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
                note = self._record(name, size, actual, url, f"{checked}; no published checksum: recorded sha256 "
                                                             f"{actual} in {self.records.path} for later runs")
            else:
                note = f"{checked}; not verified (no checksum given): sha256 {actual}"
        path = part.place()
        part.discard_info()
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
