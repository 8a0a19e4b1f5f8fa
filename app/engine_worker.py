"""The model on its own thread (GPT4All's pattern): the window talks to it only through queued signals.

``EngineWorker`` lives on the engine thread and owns the ``ChatEngine``: loading, answering and
closing all run there, so MindSpore is imported there too and the window never waits on it. The
local API server over that model is ``ApiController``'s, on the same thread (``api_controller.py``).
``EngineHost`` is the window's handle on both. Every request carries its own ``threading.Event``, set by
the window to stop an answer (checked between tokens and between prefill chunks) or a load; a
stop therefore cannot be lost between two requests. Streamed text is gathered and sent every
``BATCH_S`` seconds, so a fast model cannot flood the window's event loop.
"""

from __future__ import annotations

import logging
import threading
import time

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from .api_controller import ApiController
from .engine_messages import localized
from .preferences import API_STREAMS, ModelChoice
from .worker_thread import WorkerThread

BATCH_S = 0.03
STATE_FLUSH_S = 30     # at most this long waiting for a conversation's state to be written, to measure it
PROGRESS_S = 0.05
log = logging.getLogger(__name__)


def _hint(exc) -> dict:
    """What the window needs to offer a way out of an engine error (never the traceback)."""
    return {"subject": getattr(exc, "subject", None), "path": str(exc.path) if getattr(exc, "path", None) else None,
            "suggested_format": getattr(exc, "suggested_format", None),
            "suggested_version": getattr(exc, "suggested_version", None)}


def _unexpected(what: str, exc: BaseException) -> str:
    log.exception("%s failed", what)
    return QCoreApplication.translate("EngineWorker", "{0} failed unexpectedly ({1}: {2}). The details are in the log "
                                                      "file.").format(what, type(exc).__name__, exc)


class EngineWorker(QObject):
    progress = Signal(str, int, int)              # stage, done, total
    loaded = Signal(object)                       # engine.ModelInfo
    loadFailed = Signal(str, object)              # message, hint dict
    unloading = Signal()                          # the model is about to close (emitted on the engine thread)
    unloaded = Signal()
    contextReport = Signal(str, int, int, int)    # answer uid, dropped messages, prompt tokens, context length
    tokens = Signal(str, str)                     # answer uid, text added
    tokenCount = Signal(str, int)                 # answer uid, tokens generated so far (with each text batch)
    prefillProgress = Signal(str, int, int, bool)  # answer uid, prompt tokens computed, of how many, state restored
    stateCacheSize = Signal(object)               # bytes the saved conversation states take on disk
    finished = Signal(str, object)                # answer uid, result dict
    failed = Signal(str, str)                     # answer uid, message

    def __init__(self):
        super().__init__()
        self.engine = None
        self.choice: ModelChoice | None = None
        self.streams = 1                          # answers the next model computes together (ApiController sets it)
        self.loaded_streams = 1                   # and those the loaded one was asked for

    # -- loading ------------------------------------------------------------------------------------

    @Slot(object, object, object)
    def load(self, choice: ModelChoice, cancel: threading.Event, weights_gb: float | None = None) -> None:
        """Load ``choice`` (``weights_gb``: the size limit of the quantized weights kept on disk, None: the
        engine's default)."""
        if self.engine is not None and choice == self.choice and self.streams == self.loaded_streams:
            self.loaded.emit(self.engine.info)
            return
        if cancel.is_set():  # a newer choice came in while this one waited its turn
            self.loadFailed.emit(self.tr("Loading was cancelled."), {"cancelled": True})
            return
        try:
            self._check(choice)            # bad files are refused while the current model keeps working
            self._close_engine()           # then memory is freed before the next model takes it
            self.engine = self._load(choice, cancel, weights_gb)
            self.choice, self.loaded_streams = choice, self.streams
        except Exception as exc:  # noqa: BLE001 - every failure becomes a message in the window
            from engine import EngineError
            if isinstance(exc, EngineError):
                self.loadFailed.emit(localized(exc), _hint(exc))
            elif isinstance(exc, MemoryError):
                self.loadFailed.emit(self.tr("The computer ran out of memory while loading the model. Close other "
                                             "programs, or choose 8-bit weights."), {"subject": "memory"})
            else:
                self.loadFailed.emit(_unexpected(self.tr("Loading the model"), exc), {})
            return
        self.loaded.emit(self.engine.info)
        if self.engine.can_save_state:
            self._report_state_size()

    def _check(self, choice: ModelChoice) -> None:
        """The files against each other (no weights read) and a first memory check, with the numbers."""
        if choice.source == "builtin":  # its check would convert it, without progress: load_engine does both
            return
        from engine import EngineError, available_bytes, check_model_files
        summary = check_model_files(choice.model_source())
        free = available_bytes()
        if free is not None and self.engine is not None:  # the current model is closed before loading
            free += self.engine.info.memory_estimate
        need = summary["weight_bytes"] // {"int8": 2, "int4": 3}.get(choice.weight_format, 1)
        if free is not None and need > free:
            raise EngineError(self.tr("This model's weights alone take {0:.1f} GB of memory and only {1:.1f} GB is "
                                      "free. Close other programs, or choose 8-bit weights or a smaller model.")
                              .format(need / 1e9, free / 1e9), subject="memory")

    def _load(self, choice: ModelChoice, cancel: threading.Event, weights_gb: float | None = None):
        from engine import load_engine
        last = [0.0, ""]

        def report(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if stage != last[1] or done >= total or now - last[0] >= PROGRESS_S:
                last[:] = [now, stage]
                self.progress.emit(stage, int(done), int(total))
        return load_engine(choice.model_source(), choice.run_options(self.streams, weights_gb), progress=report,
                           cancel=cancel)

    def _close_engine(self) -> None:
        if self.engine is not None:
            self.unloading.emit()
            engine, self.engine, self.choice = self.engine, None, None
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing must not stop the next load
                log.exception("closing the engine failed")
            self.unloaded.emit()

    # -- answering ----------------------------------------------------------------------------------

    @Slot(str, object, object, str, object, object)
    def chat(self, uid: str, messages: list, values: dict, answer_start: str, state: dict,
             cancel: threading.Event) -> None:
        """Answer ``messages``; ``answer_start``: an answer cut short, to be written on from its end;
        ``state``: the conversation's key and the saved states' size limit, or {}."""
        from engine import Cancelled, EngineError, GenerationSettings

        if self.engine is None:
            self.failed.emit(uid, self.tr("No model is loaded: choose one in Settings > Model."))
            return
        pending, last, count = [], [time.monotonic()], [0]

        def flush() -> None:
            if pending:
                self.tokens.emit(uid, "".join(pending))
                pending.clear()
            self.tokenCount.emit(uid, count[0])
            last[0] = time.monotonic()

        def on_token(_token: int, text: str) -> None:
            count[0] += 1
            if text:
                pending.append(text)
            if time.monotonic() - last[0] >= BATCH_S:
                flush()
        shown = [0.0]

        def on_prefill(done: int, total: int, restored: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - shown[0] >= PROGRESS_S:
                shown[0] = now
                self.prefillProgress.emit(uid, done, total, restored > 0)
        try:
            settings = GenerationSettings(**values)
            started = self.engine.count_tokens(answer_start) if answer_start else 0
            prompt = self.engine.prepare_chat(messages, settings.max_new_tokens + started)  # built once, used as is
            self.contextReport.emit(uid, prompt.dropped, len(prompt.ids) + started, self.engine.context_length)
            state_file = self._state_file(state)
            completion = self.engine.chat(prompt, settings, on_token=on_token, cancel=cancel, on_prefill=on_prefill,
                                          answer_start=answer_start, **state_file)
        except Cancelled:                 # stopped while another request (the local API) had the model
            flush()
            self.finished.emit(uid, {"text": answer_start, "finish_reason": "cancelled", "prompt_tokens": 0,
                                     "generated_tokens": 0, "context_length": self.engine.context_length})
            return
        except EngineError as exc:
            flush()
            self.failed.emit(uid, localized(exc))
            return
        except Exception as exc:  # noqa: BLE001
            flush()
            self.failed.emit(uid, _unexpected(self.tr("The answer"), exc))
            return
        flush()
        s = completion.stats
        self.finished.emit(uid, {
            "text": answer_start + completion.text, "finish_reason": s.finish_reason, "prompt_tokens": s.prompt_tokens,
            "cached_tokens": s.cached_tokens, "generated_tokens": s.generated_tokens, "ttft_s": round(s.ttft_s, 3),
            "tokens_per_s": round(s.decode_tokens_per_s, 2), "prefill_tokens_per_s": round(s.prefill_tokens_per_s, 1),
            "dropped_messages": completion.dropped_messages, "context_length": self.engine.context_length,
            "drafted_tokens": s.drafted_tokens, "accepted_tokens": s.accepted_tokens})
        if state_file:
            self.engine.flush_states(timeout=STATE_FLUSH_S)   # the answer is shown; now its state is on disk
            self._report_state_size()

    def _state_file(self, state: dict) -> dict:
        """The conversation's saved-state keywords for ``engine.chat`` (none without a key or a backend for it)."""
        if not state.get("key") or not self.engine.can_save_state or state.get("budget", 0) <= 0:
            return {}
        from engine.generation.prompt_states import state_file_name
        from engine.paths import prompt_states_dir
        name = state_file_name(state["key"], self.engine.info.state_identity)
        return {"state_file": prompt_states_dir() / name, "state_budget": state["budget"]}

    def _report_state_size(self) -> None:
        from engine.generation.prompt_states import states_size
        from engine.paths import prompt_states_dir
        try:
            self.stateCacheSize.emit(states_size(prompt_states_dir()))
        except OSError:  # a folder being cleared or unreadable: the status bar just keeps its last figure
            log.warning("could not measure the saved states", exc_info=True)

    @Slot()
    def shutdown(self) -> None:
        self._close_engine()
        self.moveToThread(QCoreApplication.instance().thread())
        QThread.currentThread().quit()


class EngineHost(QObject):
    """The window's handle on the engine thread. Only ``stop``/``cancel_load`` touch shared state."""

    _load = Signal(object, object, object)
    _chat = Signal(str, object, object, str, object, object)
    _api = Signal(bool, int, str, int)
    _shutdown = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.thread = WorkerThread("engine")
        self.worker = EngineWorker()
        self.api = ApiController(self.worker)
        self.worker.moveToThread(self.thread)
        self.api.moveToThread(self.thread)
        self._load.connect(self.worker.load)
        self._chat.connect(self.worker.chat)
        self._api.connect(self.api.set_wanted)
        self._shutdown.connect(self.api.shutdown)     # first: no request may reach a closing model
        self._shutdown.connect(self.worker.shutdown)
        self.worker.finished.connect(self._answer_done)
        self.worker.failed.connect(self._answer_done)
        self.worker.loaded.connect(self._loaded)
        self.worker.loadFailed.connect(self._load_failed)
        self.worker.unloaded.connect(self._unloaded)
        self.info = None                  # the loaded model's ModelInfo, None while there is none
        self.choice: ModelChoice | None = None   # what was asked for the model that is loaded
        self.failed_choice: ModelChoice | None = None   # the last choice that could not be loaded
        self._load_cancel: threading.Event | None = None
        self._requested: list[ModelChoice] = []  # loads asked for: each ends with one loaded or loadFailed
        self.weights_gb: float | None = None  # the quantized weights kept on disk, at most (Settings > General)
        self._answers: dict[str, threading.Event] = {}
        self.thread.start()

    @property
    def loading(self) -> bool:
        return bool(self._requested)

    @property
    def answering(self) -> str | None:
        return next(iter(self._answers), None)

    def load(self, choice: ModelChoice) -> None:
        if self._load_cancel is not None:
            self._load_cancel.set()
        self._load_cancel = threading.Event()
        self._requested.append(choice)
        self._load.emit(choice, self._load_cancel, self.weights_gb)

    def cancel_load(self) -> None:
        if self._load_cancel is not None:
            self._load_cancel.set()

    def chat(self, uid: str, messages: list[dict], values: dict, answer_start: str = "",
             state: dict | None = None) -> None:
        """Answer the last message; ``answer_start``: an answer cut short, to be written on from its end;
        ``state``: {"key": conversation uid, "budget": bytes} to keep the conversation's state on disk."""
        self._answers[uid] = threading.Event()
        self._chat.emit(uid, messages, values, answer_start, state or {}, self._answers[uid])

    def stop(self, uid: str | None = None) -> None:
        """Stop one answer (or all): takes effect at the next token or prefill chunk."""
        for key, event in self._answers.items():
            if uid is None or key == uid:
                event.set()

    def set_api_server(self, wanted: bool, port: int, api_key: str = "", streams: int = API_STREAMS) -> None:
        """Serve the loaded model (and each one loaded after it) on 127.0.0.1:``port``, or stop serving;
        with ``api_key``, only to programs that send it; models loaded from now on answer ``streams`` at once."""
        self._api.emit(wanted, port, api_key, streams)

    @Slot(str, object)
    def _answer_done(self, uid: str, _result) -> None:
        self._answers.pop(uid, None)

    @Slot(object)
    def _loaded(self, info) -> None:
        self.info = info
        if self._requested:
            self.choice = self._requested.pop(0)

    @Slot(str, object)
    def _load_failed(self, _message: str, _hint) -> None:
        if self._requested:
            self.failed_choice = self._requested.pop(0)

    @Slot()
    def _unloaded(self) -> None:
        self.info = self.choice = None

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop everything, close the model on its thread and end the thread."""
        self.stop()
        self.cancel_load()
        if not self.thread.isRunning():
            return True
        self._shutdown.emit()
        return self.thread.wait(timeout_ms)
