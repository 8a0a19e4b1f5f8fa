"""The Starlette application: OpenAI's routes over one loaded ChatEngine.

Each generation request is read (size-limited), checked, checked again against
the context (so a prompt too long is a 400 before any streaming starts), queued,
and answered whole or as server-sent events. A client that disconnects, while
waiting or mid-answer, gets its job withdrawn or stopped at once.
"""

from __future__ import annotations

import json
import logging
import re
import time

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from engine import ChatEngine, ChatPrompt, Completion, ContextOverflow, EngineError, GenerationError

from .access_guard import AccessGuard
from .errors import ApiError, error_body, invalid
from .generation_queue import GenerationQueue, Job, QueueClosed, QueueFull
from .openai_requests import GenerationRequest, parse_chat, parse_completion
from .openai_responses import SSE_DONE, AnswerShape, shape_for, sse

log = logging.getLogger("api_server")
MAX_BODY_BYTES = 1 << 20
# How many of a chat's oldest messages were left out so that it fits the context (0: none).
DROPPED_HEADER = "X-Context-Dropped-Messages"
DRAIN_LIMIT_BYTES = 32 << 20   # read (and drop) this much of a too-large body so the client sees the 413


def model_id(engine: ChatEngine) -> str:
    """The name clients pass as "model": the built-in model's name, else the checkpoint's file name."""
    return engine.info.model_id


class ApiService:
    """The routes' shared state: the engine, its queue, the limits."""

    def __init__(self, engine: ChatEngine, queue: GenerationQueue, max_body_bytes: int = MAX_BODY_BYTES,
                 lookup: str = "auto"):
        self.engine = engine
        self.queue = queue
        self.lookup = lookup                 # for requests that leave the ``lookup`` field out
        if not engine.memory_slots.enabled:
            engine.keep_prompts_in_memory()  # clients take turns: each one's prompt rows wait in RAM
        self.max_body_bytes = max_body_bytes
        self.model = model_id(engine)
        self.created = int(time.time())
        tokenizer = engine.tokenizer
        self.token_bytes = tokenizer.longest_token_bytes if tokenizer is not None else None  # once, not per request

    # -- routes -----------------------------------------------------------------

    async def health(self, request: Request) -> JSONResponse:
        """For load balancers and gateways: 200 with the model while a request would be taken, else 503 (every
        waiting place taken, or stopping). While the model loads, ``run_model.py --serve`` does not listen yet."""
        queue = self.queue
        body = {"status": "ok" if queue.accepting else "busy", "model": self.model, "running": queue.running,
                "waiting": queue.waiting, "max_waiting": queue.max_waiting, "parallel": queue.parallel}
        return JSONResponse(body, status_code=200 if queue.accepting else 503,
                            headers={} if queue.accepting else {"Retry-After": "1"})

    async def list_models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def get_model(self, request: Request) -> JSONResponse:
        self._check_model(request.path_params["model_id"])
        return JSONResponse(self._model_card())

    async def chat_completions(self, request: Request):
        return await self._generate(request, parse_chat(await self._json_body(request), self.lookup))

    async def completions(self, request: Request):
        return await self._generate(request, parse_completion(await self._json_body(request), self.lookup))

    # -- steps ------------------------------------------------------------------

    def _model_card(self) -> dict:
        return {"id": self.model, "object": "model", "created": self.created, "owned_by": "llama-desk",
                "context_length": self.engine.context_length}

    def _check_model(self, name: str | None) -> None:
        """GET /v1/models/{name}: only the loaded model is there."""
        accepted = {self.model.lower(), self.engine.info.name.lower()}
        if name and name.strip().lower() not in accepted:
            raise ApiError(404, f"The model {name!r} is not served here; this server serves {self.model!r} "
                                "(see GET /v1/models).", param="model", code="model_not_found")

    def _refuse_by_length(self, req: GenerationRequest) -> None:
        """A prompt whose text alone needs more tokens than the context holds is a 400 before any tokenizing
        (no token stands for more than ``longest_token_bytes`` bytes): a megabyte costs a division, not a second
        of tokenizing and tens of MB. In a chat, what always stays (the system message, the last one) counts."""
        context = self.engine.context_length
        if self.token_bytes is None:
            return
        if req.kind == "chat":
            kept = req.prompt[:1] if req.prompt[0]["role"] == "system" else []
            size = sum(len(m["content"].encode("utf-8", "replace")) for m in kept + req.prompt[-1:])
            room, param = context - min(req.settings.max_new_tokens, context // 4), "messages"
        else:
            size, room, param = len(req.prompt.encode("utf-8", "replace")), context, "prompt"
        at_least = -(-size // self.token_bytes)
        if at_least >= room:
            raise invalid(f"The prompt is too long: its {size:,} bytes of text are at least {at_least:,} tokens, "
                          f"but {room} fit in the context. Shorten it.", param, code="context_length_exceeded")

    async def _json_body(self, request: Request) -> dict:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            # also what keeps web pages from posting here: a JSON body needs a CORS preflight we never grant
            raise ApiError(415, "Send the request body as JSON, with the header 'Content-Type: application/json'.",
                           code="unsupported_media_type")
        body = await self._read_limited(request)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise invalid(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
        if not isinstance(parsed, dict):
            raise invalid("The request body must be a JSON object.", code="invalid_json")
        return parsed

    async def _read_limited(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        too_large = ApiError(413, f"The request body is larger than this server accepts ({limit:,} bytes).",
                             code="request_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > DRAIN_LIMIT_BYTES:
            raise too_large
        body, size = bytearray(), 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > DRAIN_LIMIT_BYTES:
                    break
                if size <= limit:
                    body += chunk
        except ClientDisconnect:  # gone, or dropped for sending too slowly: nobody reads an answer
            raise ApiError(400, "The client closed the connection before the body arrived.",
                           code="client_closed") from None
        if size > limit:
            raise too_large
        return bytes(body)

    async def _generate(self, request: Request, req: GenerationRequest):
        # whatever "model" names, the one loaded model answers (clients send "gpt-4o" or their own names)
        self._refuse_by_length(req)
        prompt = await self._prepare(req)
        job = Job(self.engine, req, prompt)
        try:
            self.queue.submit(job)
        except QueueFull as full:
            raise ApiError(429, f"The model is busy and its queue is full ({self.queue.waiting} waiting). "
                                f"Try again in about {full.retry_after} s.", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": str(full.retry_after)}) from None
        except QueueClosed as exc:
            raise ApiError(503, str(exc), type="server_error", code="server_stopping") from None
        shape = shape_for(req.kind, self.model)
        headers = {DROPPED_HEADER: str(prompt.dropped)} if isinstance(prompt, ChatPrompt) else {}
        if req.stream:
            return EventStream(self._stream(job, shape, req.include_usage), on_close=lambda: self._left(job),
                               headers=headers)
        completion = await self._wait_for(job, request)
        return JSONResponse(shape.whole(completion), headers=headers)

    async def _prepare(self, req: GenerationRequest) -> ChatPrompt | list[int]:
        """The prompt, encoded once, here; one the context cannot hold is a 400 now, not in the middle of a stream."""
        try:
            if req.kind == "chat":
                return await anyio.to_thread.run_sync(self.engine.prepare_chat, req.prompt,
                                                      req.settings.max_new_tokens)
            if not req.prompt.strip():
                raise GenerationError("The prompt is empty: send some text to continue.")
            ids = await anyio.to_thread.run_sync(self.engine.text_ids, req.prompt)
        except GenerationError as exc:
            raise _engine_refusal(exc, "messages" if req.kind == "chat" else "prompt") from None
        if len(ids) >= self.engine.context_length:
            raise invalid(f"The prompt is too long: {len(ids)} tokens, but the context holds "
                          f"{self.engine.context_length}. Shorten it.", "prompt", code="context_length_exceeded")
        return ids

    async def _wait_for(self, job: Job, request: Request) -> Completion:
        """The job's result; if the client disconnects first, the job is withdrawn or stopped."""
        outcome: dict[str, object] = {}
        async with anyio.create_task_group() as group:
            async def watch_disconnect() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                self._left(job)
                group.cancel_scope.cancel()

            group.start_soon(watch_disconnect)
            try:
                outcome["completion"] = await job.outcome()
            except Exception as exc:
                outcome["error"] = exc
            group.cancel_scope.cancel()
        if "error" in outcome:
            raise _engine_refusal(outcome["error"])
        if "completion" not in outcome:
            raise ApiError(499, "The client closed the connection.", code="client_closed")  # nobody reads it
        completion = outcome["completion"]
        if completion.stats.finish_reason == "cancelled":
            raise ApiError(503, "The server stopped before the answer was finished.", type="server_error",
                           code="server_stopping")
        return completion

    async def _stream(self, job: Job, shape: AnswerShape, include_usage: bool):
        shape.stream_usage = include_usage
        for chunk in shape.opening_chunks():
            yield sse(chunk)
        async for kind, value in job.events():
            if kind == "text":
                yield sse(shape.chunk(value))
            elif kind == "error":
                yield sse(_engine_refusal(value).body())
            elif value.stats.finish_reason == "cancelled":
                yield sse(error_body("The server stopped before the answer was finished.", "server_error"))
            else:
                yield sse(shape.final_chunk(value))
                if include_usage:
                    yield sse(shape.usage_chunk(value))
        yield SSE_DONE

    def _left(self, job: Job) -> None:
        if not job.record.finish_reason:
            self.queue.abandon(job)


class EventStream(StreamingResponse):
    """Server-sent events that call ``on_close`` however the response ends (finished, or the client left)."""

    media_type = "text/event-stream"

    def __init__(self, content, on_close, headers: dict | None = None):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})
        self.on_close = on_close

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _engine_refusal(exc: Exception, param: str | None = None) -> ApiError:
    """The client's share of an engine error: its own mistakes are 400s, the rest 500/503."""
    if isinstance(exc, GenerationError):
        code = "context_length_exceeded" if isinstance(exc, ContextOverflow) else "invalid_value"
        return invalid(str(exc), param, code=code)
    if isinstance(exc, QueueClosed):
        return ApiError(503, str(exc), type="server_error", code="server_stopping")
    if isinstance(exc, EngineError):
        return ApiError(500, str(exc), type="server_error")
    return ApiError(500, "The server failed while answering; its log says why.", type="server_error")


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own 404/405 in OpenAI's shape."""
    message = {404: f"There is no {request.url.path} here; the API is under /v1 (e.g. /v1/chat/completions).",
               405: f"{request.method} is not allowed on {request.url.path}."}.get(exc.status_code, exc.detail)
    code = re.sub(r"\W+", "_", str(exc.detail).lower())
    return JSONResponse(error_body(message, code=code), status_code=exc.status_code, headers=exc.headers)


def create_app(engine: ChatEngine, queue: GenerationQueue, *, api_key: str | None = None,
               loopback_only: bool = True, max_body_bytes: int = MAX_BODY_BYTES, lookup: str = "auto"):
    """The ASGI app: the guard (key, Host) in front of the OpenAI routes. No CORS: browsers' pages get nothing."""
    service = ApiService(engine, queue, max_body_bytes, lookup)
    routes = [
        Route("/health", service.health, methods=["GET"]),
        Route("/v1/models", service.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", service.get_model, methods=["GET"]),
        Route("/v1/chat/completions", service.chat_completions, methods=["POST"]),
        Route("/v1/completions", service.completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error, HTTPException: _http_error})
    return AccessGuard(app, api_key, loopback_only)
