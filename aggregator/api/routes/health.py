"""Liveness, readiness and Prometheus metrics.

``/healthz`` answers while the process runs; ``/readyz`` says whether it can
take traffic (database reachable, MQTT connected, ingest keeping up) and why
not, with 503; ``/metrics`` is this service's private Prometheus registry.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict

from aggregator.api.deps import ServiceDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """Liveness or readiness answer."""

    model_config = ConfigDict(extra="forbid")

    status: str
    reasons: list[str] = []


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (no dependency is checked)."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(service: ServiceDep) -> Response:
    """Ready when the database answers, MQTT is connected and ingest lag is under the limit."""
    reasons = service.readiness()
    if reasons:
        return JSONResponse(Health(status="not_ready", reasons=reasons).model_dump(), 503)
    return JSONResponse(Health(status="ready").model_dump())


@router.get("/metrics", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    """Prometheus text exposition of this service's metrics."""
    service.metrics.lag.set(service.consumer.lag_s())
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
