"""The FastAPI application around an :class:`~aggregator.service.AggregatorService`.

The app's lifespan starts the service if it is not running yet and stops it
on shutdown (only if it started it), so ``uvicorn`` drives the whole process
and SIGTERM stops it cleanly. Routers are listed in :data:`ROUTERS`; the
officers' screens add theirs there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.concurrency import run_in_threadpool

from aggregator.api.routes import (
    admin,
    alerts,
    auth,
    command,
    declare,
    health,
    inbox,
    monitor,
    registry,
    reports,
    tracing,
    venues,
)
from aggregator.service import AggregatorService
from aggregator.web.errors import install_error_handlers

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    admin.router,
    alerts.router,
    monitor.router,
    command.router,
    declare.router,
    registry.router,
    inbox.router,
    tracing.router,
    reports.router,
    venues.router,
]


def create_app(service: AggregatorService) -> FastAPI:
    """The HTTP app serving ``service`` (started and stopped by the app's lifespan)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        owned = not service.started
        if owned:
            await run_in_threadpool(service.start)
        try:
            yield
        finally:
            if owned:
                await run_in_threadpool(service.stop)

    app = FastAPI(
        title="kiemdich aggregator",
        description="Chốt kiểm dịch — máy chủ tổng hợp / epidemic checkpoints — aggregator",
        lifespan=lifespan,
    )
    app.state.service = service
    # Refusals: the login page or an error page for people, JSON for /api/*.
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
