"""The local API server over the app's loaded model: its own object on the engine thread.

It follows the model: a wanted server starts once a model is loaded, stops before that model is
closed (``EngineWorker.unloading``, called directly on the engine thread, so no request reaches a
closed engine) and starts again on the next one. The window only says whether it wants a server and
on which port (``set_wanted``) and hears back through ``state``.

While a server is wanted, the next model loads with the KV caches Settings asks for (``streams``, 1-4;
``API_STREAMS`` = 2 by default, ``--serve --parallel``'s default on the cpu backend): the app's own chat and
the server's clients then answer in the same decode steps instead of queueing behind each other. A model
loaded before the server was wanted (or before the number changed) keeps its caches until it is loaded
again; the memory estimate counts every cache.
"""

from __future__ import annotations

import importlib.util
import logging

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal, Slot

from .preferences import API_STREAMS

log = logging.getLogger(__name__)


class ApiController(QObject):
    state = Signal(bool, str)                     # running, address or the reason it is not

    def __init__(self, worker):
        super().__init__()
        self.worker = worker                      # the EngineWorker whose model is served
        self.wanted, self.port, self.api_key, self.streams = False, 0, "", API_STREAMS
        self.handle = None
        # the worker lives on the same thread: direct calls, in order with its loading and closing
        worker.loaded.connect(self._model_loaded, Qt.ConnectionType.DirectConnection)
        worker.unloading.connect(self._stop, Qt.ConnectionType.DirectConnection)

    @Slot(bool, int, str, int)
    def set_wanted(self, wanted: bool, port: int, api_key: str = "", streams: int = API_STREAMS) -> None:
        """Serve on 127.0.0.1:``port``; with ``api_key``, only to programs that send it; models loaded from now on
        compute ``streams`` answers at once."""
        asked = (wanted, port, api_key, streams)
        if self.handle is not None and asked == (self.wanted, self.port, self.api_key, self.streams):
            self.state.emit(True, str(self.handle.url))  # e.g. a rebuilt window asking again
            return
        self.wanted, self.port, self.api_key, self.streams = asked
        self.worker.streams = streams if wanted else 1
        self._stop()
        if not wanted:
            self.state.emit(False, "")
        elif self.worker.engine is not None:
            self._start()                         # else: once a model is loaded

    @Slot(object)
    def _model_loaded(self, _info) -> None:
        if self.wanted and self.handle is None:
            self._start()

    def _start(self) -> None:
        if importlib.util.find_spec("api_server") is None:
            self.state.emit(False, "The local API server is not installed in this version.")
            return
        try:
            import api_server
            self.handle = api_server.start_background(self.worker.engine, host="127.0.0.1", port=self.port,
                                                      api_key=self.api_key or None)
        except Exception as exc:  # noqa: BLE001 - a port in use must not take the app down
            self.state.emit(False, f"The local API server could not start: {exc}")
            return
        self.state.emit(True, str(self.handle.url))

    @Slot()
    def _stop(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                handle.stop()
            except Exception:  # noqa: BLE001
                log.exception("stopping the API server failed")

    @Slot()
    def shutdown(self) -> None:
        """Stop serving and hand this object back to the main thread before the engine thread ends."""
        self.wanted = False
        self._stop()
        self.moveToThread(QCoreApplication.instance().thread())
