"""App factory. The runtime (model, pipeline) is created in the lifespan, not at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import service
from service.api.routes import router
from service.runtime import Runtime


def create_app(
    make_runtime: Callable[[], Runtime],
    *,
    start_pipeline: bool = True,
    on_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the API. ``make_runtime`` runs at start-up; the pipeline thread starts with it
    unless ``start_pipeline`` is false (tests drive the processor directly). ``on_failure``
    is called if the pipeline gives up (the server should then stop)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = make_runtime()
        app.state.runtime = runtime
        if start_pipeline:
            runtime.start(on_failure)
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="vibewatch",
        version=service.__version__,
        description="Per-engine vibration anomaly scores from a streaming LSTM.",
        lifespan=lifespan,
    )
    app.include_router(router)

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

    return app
