"""The HTTP API of `sealkit serve` (FastAPI): one backbone, every task in the adapters folder.

    GET  /health                   liveness, seal, batcher statistics
    GET  /ready                    200 once the tasks are loaded and the queue has room, else 503
    GET  /tasks                    the tasks (name, task, method, modality, classes) and refused files
    GET  /tasks/{name}             one task
    POST /tasks/{name}/embed       {"texts": [...]} or {"images": [base64, ...]}, or multipart image files
    POST /tasks/{name}/classify    the same, plus "top_k"
    POST /tasks/{name}/index       the same, plus "ids" (one per item): add to the task's retrieval index
    DELETE /tasks/{name}/index     empty it
    POST /tasks/{name}/retrieve    the same as embed, plus "top_k": the nearest ids in the index
    POST /admin/reload             rescan the adapters folder now
    PUT  /admin/tasks/{name}       upload an adapter file (raw bytes) as NAME.adapter and load it
    DELETE /admin/tasks/{name}     unload a task (its file becomes NAME.adapter.removed)
    GET  /metrics                  Prometheus metrics (per task requests, latency, items; backbone queue and batches)
    /openapi.json, /docs, /redoc   the schema and its browsable forms (Swagger UI assets served locally, no CDN)

Every error is JSON {"error": "..."} with a 4xx status for a bad request (400 malformed, 404 unknown
task, 409 wrong seal or empty index, 413 too large, 415 wrong content type, 503 queue full); a bug
is a 500 with the same shape and no traceback (the traceback goes to the server log).
Never imports torch.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from sealkit import __version__
from sealkit.errors import AdapterMismatchError, SealkitError
from sealkit.runtime.providers import active_providers
from sealkit.serve.errors import BadRequestError, ForbiddenError, TooLargeError, UnauthorizedError, UnsupportedMediaError
from sealkit.serve.metrics import ServeMetrics
from sealkit.serve.server import is_loopback
from sealkit.serve.service import Items

log = logging.getLogger("sealkit.serve")

ADAPTER_UPLOAD_LIMIT = 64 * 2**20
JSON_FIELDS = {"embed": set(), "classify": {"top_k"}, "index": {"ids"}, "retrieve": {"top_k"}}


# --- schema (documentation of the bodies the handlers parse themselves) -------------------------
class ItemsRequest(BaseModel):
    """Send texts or images (base64, optionally as a data: URL), not both."""

    texts: Optional[list[str]] = Field(None, description="Texts (text tasks).", examples=[["a great film"]])
    images: Optional[list[str]] = Field(None, description="Images: base64 of PNG/JPEG/... bytes.")
    top_k: Optional[int] = Field(None, description="classify/retrieve: how many labels or ids per item (default 3).")
    ids: Optional[list[str]] = Field(None, description="index: one id per item.")


class ItemsForm(BaseModel):
    images: Optional[list[bytes]] = Field(None, description="Image files.", json_schema_extra={"items": {"type": "string", "format": "binary"}})
    texts: Optional[list[str]] = None
    top_k: Optional[int] = None
    ids: Optional[list[str]] = None


class ErrorResponse(BaseModel):
    error: str
    type: Optional[str] = None


class TaskInfo(BaseModel):
    name: str
    task: str
    method: str
    modality: str
    modalities: list[str]
    head: Optional[str] = None
    classes: list[str]
    towers: list[str]
    embedding_dim: Optional[int] = None
    entries: bool
    file: str
    metrics: Optional[dict[str, Any]] = None
    loaded_at: float


class TaskList(BaseModel):
    tasks: list[TaskInfo]
    refused: dict[str, str] = Field(description="Adapter files in the folder that were not loaded, with the reason.")


class EmbedResponse(BaseModel):
    task: str
    modality: str
    dim: int
    embeddings: list[list[float]]


class Prediction(BaseModel):
    label: str
    probability: float


class ClassifyResult(BaseModel):
    predictions: list[Prediction]


class ClassifyResponse(BaseModel):
    task: str
    results: list[ClassifyResult]


class IndexResponse(BaseModel):
    task: str
    added: int
    size: int


class Match(BaseModel):
    id: str
    score: float


class RetrieveResult(BaseModel):
    matches: list[Match]


class RetrieveResponse(BaseModel):
    task: str
    results: list[RetrieveResult]


def _items_body(extra: set[str]) -> dict[str, Any]:
    fields = {"texts", "images"} | extra
    json_schema = ItemsRequest.model_json_schema()
    json_schema["properties"] = {k: v for k, v in json_schema["properties"].items() if k in fields}
    form_schema = ItemsForm.model_json_schema()
    form_schema["properties"] = {k: v for k, v in form_schema["properties"].items() if k in fields}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": json_schema}, "multipart/form-data": {"schema": form_schema}},
        }
    }


ERRORS = {code: {"model": ErrorResponse} for code in (400, 404, 409, 413, 415, 503)}


# --- request parsing ------------------------------------------------------------------------------
async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing it (413) as soon as it is over `limit` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequestError(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise TooLargeError(f"the request body is {int(declared)} bytes; the limit is {limit} (send fewer or smaller items)")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise TooLargeError(f"the request body is over {limit} bytes (send fewer or smaller items)")
        chunks.append(chunk)
    return b"".join(chunks)


def _b64(value: Any, i: int) -> bytes:
    if not isinstance(value, str):
        raise BadRequestError(f"images[{i}] must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:"):
        head, _, value = value.partition(",")
        if not head.endswith(";base64"):
            raise BadRequestError(f"images[{i}] is a data: URL without ';base64'")
    try:
        data = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError(f"images[{i}] is not valid base64") from None
    if not data:
        raise BadRequestError(f"images[{i}] is empty")
    return data


def _int_field(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"{name} must be an integer, got {value!r}") from None


async def parse_items(request: Request, op: str, max_items: int, max_bytes: int) -> tuple[Items, dict[str, Any]]:
    """(items, extra fields) from a JSON or multipart body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "multipart/form-data", ""):
        raise UnsupportedMediaError(f"content type {content_type!r} is not supported; send application/json or multipart/form-data")
    body = await read_body(request, max_bytes)
    allowed = {"texts", "images"} | JSON_FIELDS[op]
    if content_type == "multipart/form-data":
        values, extra = await _parse_form(request, body, allowed, max_items)
    else:
        if not body.strip():
            raise BadRequestError('the body is empty; send JSON like {"texts": ["..."]} or {"images": ["<base64>"]}')
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestError(f"the body is not valid JSON ({str(exc)[:120]})") from None
        except RecursionError:
            raise BadRequestError("the body is JSON nested too deeply; send a flat object like {\"texts\": [\"...\"]}") from None
        if not isinstance(data, dict):
            raise BadRequestError('the JSON body must be an object like {"texts": ["..."]} or {"images": ["<base64>"]}')
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise BadRequestError(f"unknown field(s) {unknown}; this endpoint takes {sorted(allowed)}")
        values = {k: data[k] for k in ("texts", "images") if data.get(k) is not None}
        extra = {k: data[k] for k in JSON_FIELDS[op] if k in data}
    if len(values) != 1:
        raise BadRequestError("send either 'texts' or 'images' (a list), not " + ("both" if values else "neither"))
    (field, items), = values.items()
    if not isinstance(items, list):
        raise BadRequestError(f"'{field}' must be a list, got {type(items).__name__}")
    if not items:
        raise BadRequestError(f"'{field}' is empty; send at least one item")
    if len(items) > max_items:
        raise TooLargeError(f"{len(items)} items in one request; the limit is {max_items} (split the request)")
    if field == "images" and content_type != "multipart/form-data":
        items = [_b64(v, i) for i, v in enumerate(items)]
    request.state.items = len(items)  # for the /metrics items-per-request histogram
    return Items("image" if field == "images" else "text", items), extra


async def _parse_form(request: Request, body: bytes, allowed: set[str], max_items: int) -> tuple[dict[str, list], dict[str, Any]]:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=max_items + 1, max_fields=max_items + 8)
    try:
        values: dict[str, list] = {}
        extra: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key not in allowed:
                raise BadRequestError(f"unknown form field {key!r}; this endpoint takes {sorted(allowed)}")
            if isinstance(value, UploadFile):
                if key != "images":
                    raise BadRequestError(f"form field {key!r} must not be a file; upload images as 'images'")
                values.setdefault("images", []).append(await value.read())
            elif key == "images":
                raise BadRequestError("form field 'images' must be a file upload")
            elif key in ("texts", "ids"):
                (values if key == "texts" else extra).setdefault(key, []).append(value)
            elif key == "top_k":
                extra["top_k"] = _int_field(value, "top_k")
        return values, extra
    finally:
        await form.close()


# --- the app --------------------------------------------------------------------------------------
class RequestLog:
    """ASGI middleware: one info line per request (method, path, status, milliseconds)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            log.info("%s %s %d %.1fms", scope.get("method"), scope.get("path"), status, 1000 * (time.perf_counter() - started))


def _scrubber(deployment):
    """Replace the server's folders in a message by nothing: responses name files, never server paths."""
    folders = set()
    for folder in (deployment.registry.dir, deployment.seal.file.path.parent):
        if folder is not None:
            folders |= {str(folder), str(Path(folder).resolve())}
    folders = sorted((f for f in folders if f not in ("", ".")), key=len, reverse=True)

    def scrub(message: str) -> str:
        for folder in folders:
            message = message.replace(folder + "/", "").replace(folder, "")
        return message

    return scrub


def _status(exc: SealkitError) -> int:
    status = getattr(exc, "status", None)
    if status:
        return int(status)
    if isinstance(exc, AdapterMismatchError):
        return 409
    return 400  # DataError, InputError, AdapterError, ...: the request asked for something that cannot be done


def create_app(deployment) -> FastAPI:
    """The FastAPI app over a started (or about to start) Deployment."""
    service, registry, config = deployment.service, deployment.registry, deployment.config
    limits = config.limits
    # FastAPIOffline: /docs (Swagger UI) and /redoc load their scripts and styles from this server
    # (the fastapi-offline package's copies), not from a CDN, so the docs work offline.
    app = FastAPIOffline(
        title="sealkit serve",
        version=__version__,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would otherwise call validator.swagger.io
        description=(
            f"One sealed backbone ({deployment.seal.manifest.name}, seal {deployment.seal.seal_id}) serving many tasks, "
            "each an adapter file. Send texts as JSON, images as base64 JSON or multipart files. Errors are JSON {\"error\": \"...\"}."
        ),
    )

    scrub = _scrubber(deployment)
    app.add_middleware(RequestLog)
    metrics = ServeMetrics(deployment)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # a bug: the 500 handler answers; count it here
            metrics.observe(request.url.path, 500, time.perf_counter() - started, getattr(request.state, "items", None))
            raise
        metrics.observe(request.url.path, response.status_code, time.perf_counter() - started, getattr(request.state, "items", None))
        return response

    @app.get("/metrics", tags=["status"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests, latency and items per request per task; backbone queue depth and batches."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.exception_handler(SealkitError)
    async def sealkit_error(_request: Request, exc: SealkitError) -> JSONResponse:
        status = _status(exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"error": scrub(str(exc)), "type": type(exc).__name__}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s: %s", request.method, request.url.path, exc, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    def require_admin(request: Request) -> None:
        token = config.admin_token
        if token:
            if not hmac.compare_digest(request.headers.get("authorization", "").encode(), f"Bearer {token}".encode()):
                raise UnauthorizedError("admin calls need 'Authorization: Bearer <token>' (the server's SEALKIT_ADMIN_TOKEN)")
            return
        if config.admin_without_token and is_loopback(request.client.host if request.client else None):
            return
        raise ForbiddenError("the admin API is disabled: start the server with SEALKIT_ADMIN_TOKEN set and send 'Authorization: Bearer <token>'")

    # --- status ---------------------------------------------------------------------------------
    @app.get("/health", tags=["status"])
    async def health() -> dict:
        """Liveness: the process answers. Also the seal, the execution providers its sessions run on, task count and batcher statistics."""
        return {"status": "ok", **deployment.status(), "providers": active_providers(deployment.seal)}

    @app.get("/ready", tags=["status"], responses={503: {"model": ErrorResponse}})
    async def ready():
        """Readiness: tasks loaded, sessions warm, and room in the backbone queue."""
        if not deployment.ready:
            return JSONResponse({"ready": False, "error": "starting or stopping"}, status_code=503)
        if deployment.batcher.full:
            return JSONResponse({"ready": False, "error": "the backbone queue is full"}, status_code=503, headers={"Retry-After": "1"})
        return {"ready": True, "tasks": len(registry)}

    # --- tasks ----------------------------------------------------------------------------------
    @app.get("/tasks", tags=["tasks"], response_model=TaskList)
    async def list_tasks() -> dict:
        """The loaded tasks, and the adapter files that were refused (with the reason)."""
        return {"tasks": [t.describe() for t in registry.tasks()], "refused": {k: scrub(v) for k, v in registry.refused.items()}}

    @app.get("/tasks/{name}", tags=["tasks"], response_model=TaskInfo, responses={404: {"model": ErrorResponse}})
    async def get_task(name: str) -> dict:
        return registry.get(name).describe()

    @app.post("/tasks/{name}/embed", tags=["tasks"], openapi_extra=_items_body(set()), responses={200: {"model": EmbedResponse}, **ERRORS})
    async def embed(name: str, request: Request) -> JSONResponse:
        """Embeddings of texts or images through the task's adapters."""
        registry.get(name)
        items, _ = await parse_items(request, "embed", limits.max_items, limits.max_request_bytes)
        task, embeddings = await service.embed(name, items)
        return JSONResponse({"task": task.name, "modality": items.modality, "dim": int(embeddings.shape[1]), "embeddings": embeddings.tolist()})

    @app.post("/tasks/{name}/classify", tags=["tasks"], openapi_extra=_items_body({"top_k"}), responses={200: {"model": ClassifyResponse}, **ERRORS})
    async def classify(name: str, request: Request) -> JSONResponse:
        """Top-k labels with probabilities for each item (classification tasks)."""
        registry.get(name)
        items, extra = await parse_items(request, "classify", limits.max_items, limits.max_request_bytes)
        task, predictions = await service.classify(name, items, extra.get("top_k", 3))
        results = [{"predictions": [{"label": p.label, "probability": p.score} for p in row]} for row in predictions]
        return JSONResponse({"task": task.name, "results": results})

    @app.post("/tasks/{name}/index", tags=["retrieval"], openapi_extra=_items_body({"ids"}), responses={200: {"model": IndexResponse}, **ERRORS})
    async def add_to_index(name: str, request: Request) -> JSONResponse:
        """Embed items and add them, under the given ids, to the task's in-memory index (a repeated id is replaced)."""
        registry.get(name)
        items, extra = await parse_items(request, "index", limits.max_items, limits.max_request_bytes)
        task, added, size = await service.index(name, items, extra.get("ids"))
        return JSONResponse({"task": task.name, "added": added, "size": size})

    @app.delete("/tasks/{name}/index", tags=["retrieval"], responses=ERRORS)
    async def clear_index(name: str) -> dict:
        """Empty the task's index."""
        return {"task": name, "removed": service.clear_index(name), "size": 0}

    @app.post("/tasks/{name}/retrieve", tags=["retrieval"], openapi_extra=_items_body({"top_k"}), responses={200: {"model": RetrieveResponse}, **ERRORS})
    async def retrieve(name: str, request: Request) -> JSONResponse:
        """The top-k ids in the task's index for each query item, by cosine similarity."""
        registry.get(name)
        items, extra = await parse_items(request, "retrieve", limits.max_items, limits.max_request_bytes)
        task, results = await service.retrieve(name, items, extra.get("top_k", 3))
        return JSONResponse({"task": task.name, "results": [{"matches": [{"id": i, "score": s} for i, s in row]} for row in results]})

    # --- admin ----------------------------------------------------------------------------------
    @app.post("/admin/reload", tags=["admin"], responses={401: {"model": ErrorResponse}})
    async def reload(request: Request) -> dict:
        """Rescan the adapters folder now: load new files, reload changed ones, drop removed ones."""
        require_admin(request)
        report = await run_in_threadpool(registry.scan)
        return {**report.to_dict(), "tasks": [t.name for t in registry.tasks()], "refused_files": registry.refused}

    @app.put(
        "/admin/tasks/{name}",
        tags=["admin"],
        status_code=201,
        response_model=TaskInfo,
        openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
        responses={401: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}},
    )
    async def add_task(name: str, request: Request) -> dict:
        """Upload an adapter file (the raw bytes); it is checked against this seal, saved as NAME.adapter and loaded.
        An adapter for another seal is refused (409) and not saved."""
        require_admin(request)
        data = await read_body(request, ADAPTER_UPLOAD_LIMIT)
        if not data:
            raise BadRequestError("the body is empty; send the adapter file's bytes")
        task = await run_in_threadpool(registry.install, name, data)
        return task.describe()

    @app.delete("/admin/tasks/{name}", tags=["admin"], responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
    async def remove_task(name: str, request: Request) -> dict:
        """Unload a task; its file in the folder is renamed NAME.adapter.removed (restore it by renaming it back)."""
        require_admin(request)
        moved = await run_in_threadpool(registry.retire, name)
        return {"removed": name, "file": moved.name if moved else None}

    return app
