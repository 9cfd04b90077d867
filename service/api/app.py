"""App factory. The runtime (model, pipeline) is created in the lifespan, not at import.

API documentation works offline: ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) load their
scripts and styles from ``/docs-assets``, the files the ``fastapi-offline`` package installs
with the project, never from a CDN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

import service
from service.api.page_cache import CachedPages
from service.api.routes import router
from service.api.schemas import ErrorOut
from service.runtime import Runtime

log = logging.getLogger(__name__)

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"


def create_app(
    make_runtime: Callable[[], Runtime],
    *,
    start_pipeline: bool = True,
    on_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the API. ``make_runtime`` runs at start-up; the engine list's refresh always
    starts with it, the pipeline thread unless ``start_pipeline`` is false (tests drive the
    processor directly). ``on_failure`` is called if the pipeline gives up (the server
    should then stop)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = make_runtime()
        app.state.runtime = runtime
        runtime.start_views()
        if start_pipeline:
            runtime.start(on_failure)
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="vibewatch",
        version=service.__version__,
        description="Per-engine vibration anomaly scores from a streaming LSTM. Every error "
        'is JSON: {"detail": "..."}.',
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        responses={500: {"model": ErrorOut, "description": "A bug: the log has the details"}},
    )
    app.include_router(router)
    app.add_middleware(CachedPages)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="vibewatch API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json", title="vibewatch API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus exposition of this instance's registry."""
        registry = request.app.state.runtime.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(parts)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc.detail)},
                            headers=exc.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(status_code=500,
                            content={"detail": f"internal error ({type(exc).__name__})"})

    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Describe 422 as what the handler above returns (``ErrorOut``), not FastAPI's list of
    validation errors, and drop that unused schema."""
    make_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = make_schema()
            schemas = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
