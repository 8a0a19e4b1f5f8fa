"""llama-desk's local API: one loaded model served to other programs with OpenAI's HTTP API.

    handle = api_server.start_background(engine, port=8080)   # the desktop app
    print(handle.url)        # http://127.0.0.1:8080/v1, the base_url for OpenAI clients
    handle.stop()

    api_server.serve(engine, "127.0.0.1", 8080)               # the command line: until Ctrl-C

Routes: GET /v1/models, POST /v1/chat/completions, POST /v1/completions
(whole or streamed). It listens on 127.0.0.1 unless told otherwise, and then
only with an API key. Modules: ``server`` (uvicorn, start and stop), ``app``
(the routes), ``generation_queue`` (one model, many clients),
``openai_requests``/``openai_responses`` (the wire format), ``access_guard``
(key and Host checks), ``connection_limits`` (how long a request may take to
arrive, how many connections), ``fields`` and ``errors``.
"""

from .connection_limits import ConnectionLimits
from .errors import ApiError, ServerStartError
from .server import ServerHandle, check_address, open_listener, serve, start_background

__all__ = [
    "start_background", "serve", "check_address", "open_listener", "ServerHandle", "ServerStartError", "ApiError",
    "ConnectionLimits",
]
