"""Dependencies shared by the routers (``Annotated`` aliases)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from aggregator.service import AggregatorService


def get_service(request: Request) -> AggregatorService:
    """The service this app serves (set by :func:`aggregator.api.app.create_app`)."""
    service: AggregatorService = request.app.state.service
    return service


ServiceDep = Annotated[AggregatorService, Depends(get_service)]
