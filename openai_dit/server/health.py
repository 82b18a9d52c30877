"""Probes and metrics: /health (the old server's), /ready and /live (Kubernetes style), /metrics (Prometheus)."""

from __future__ import annotations

from litestar import Controller, Response, get

from ..metrics import CONTENT_TYPE
from .services import LifecycleDep, RunnerDep

__all__ = ["HealthController"]

_NO_STORE = {"Cache-Control": "no-store"}


class HealthController(Controller):
    @get("/health", media_type="text/plain", tags=["native"], cache=False,
         summary="Health check: 200 OK, or 503 while loading, draining or after a lost rank")
    async def health(self, lifecycle: LifecycleDep) -> Response[str]:
        if lifecycle.readiness in ("ready", "storage_unavailable"):  # the old contract: the model is loaded
            return Response("OK", status_code=200, media_type="text/plain", headers=_NO_STORE)
        return Response("Model not loaded", status_code=503, media_type="text/plain", headers=_NO_STORE)

    @get(["/ready", "/readyz", "/health/ready"], tags=["probes"],
         summary="Readiness: 200 {status: ready}; 503 with loading, draining (shutting down), failed or "
                 "storage_unavailable (the data directory takes no writes)")
    async def ready(self, lifecycle: LifecycleDep) -> Response[dict[str, str]]:
        status = lifecycle.readiness
        return Response({"status": status}, status_code=200 if status == "ready" else 503, headers=_NO_STORE)

    @get(["/live", "/livez", "/health/live"], tags=["probes"],
         summary="Liveness: 200 {status: alive} while the process can work (loading and draining too); 503 failed")
    async def live(self, lifecycle: LifecycleDep) -> Response[dict[str, str]]:
        alive = lifecycle.live
        return Response({"status": "alive" if alive else "failed"}, status_code=200 if alive else 503,
                        headers=_NO_STORE)

    @get("/metrics", tags=["probes"], media_type=CONTENT_TYPE, summary="Prometheus metrics (text exposition format)")
    async def metrics(self, runner: RunnerDep) -> Response[bytes]:
        return Response(runner.metrics.expose(), media_type=CONTENT_TYPE, headers=_NO_STORE)
