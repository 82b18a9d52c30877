"""OpenTelemetry traces (--otlp-traces-endpoint): a server span per HTTP request (Litestar's OpenTelemetry
integration; probes excluded) and, under it, the spans of the request's work (`queue`, `denoise`, `decode`,
`encode`: see `runner.observer.TracingObserver`).

Optional: `pip install 'openai-dit[otel]'`. Nothing here imports OpenTelemetry unless tracing is on. The app owns its
tracer provider (the process-wide one is left alone): with the flag, one with a BatchSpanProcessor and the OTLP
exporter (http/protobuf, or gRPC where OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc; service.name from OTEL_SERVICE_NAME,
else "openai-dit"), flushed and shut down with the app; or the one given to `configure` (tests), left to its owner.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .config import ServerConfig

__all__ = ["Tracing", "check_tracing", "configure", "setup"]

# Probe routes (and their aliases): no spans.
_PROBES = r"^/(health|ready|readyz|live|livez|metrics)(/.*)?$"
_SERVICE_NAME = "openai-dit"
_REQUEST_ID = "openai_dit.request_id"
# What tracing imports, with the distribution that brings it.
_NEEDED = {"opentelemetry.sdk.trace": "opentelemetry-sdk",
           "opentelemetry.instrumentation.asgi": "opentelemetry-instrumentation-asgi"}
_EXPORTERS = {"http/protobuf": ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                                "opentelemetry-exporter-otlp-proto-http"),
              "grpc": ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
                       "opentelemetry-exporter-otlp-proto-grpc")}

_injected: Any = None  # a TracerProvider given to `configure`


def configure(provider: Any = None) -> None:
    """Apps created from now on trace into `provider` (an OpenTelemetry SDK TracerProvider; its owner shuts it
    down), whatever --otlp-traces-endpoint says; None: back to the flag. For tests."""
    global _injected
    _injected = provider


def _protocol() -> str:
    value = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    return (value or "http/protobuf").strip().lower()


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_tracing(config: ServerConfig) -> str | None:
    """A launch check: what keeps --otlp-traces-endpoint from working (the `otel` extra not installed, an
    unsupported protocol, an endpoint that is no URL), or None. Imports OpenTelemetry only when the flag is set."""
    endpoint = config.otlp_traces_endpoint
    if not endpoint:
        return None
    protocol = _protocol()
    if protocol not in _EXPORTERS:
        return (f"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL={protocol} is not supported with --otlp-traces-endpoint: use "
                "http/protobuf (the default) or grpc")
    if protocol == "http/protobuf" and not endpoint.startswith(("http://", "https://")):
        return "--otlp-traces-endpoint must be an http:// or https:// URL, e.g. http://otel-collector:4318/v1/traces"
    exporter, distribution = _EXPORTERS[protocol]
    missing = [dist for module, dist in [*_NEEDED.items(), (exporter, distribution)] if not _importable(module)]
    if missing:
        return (f"--otlp-traces-endpoint needs OpenTelemetry, which is not installed (missing {', '.join(missing)}): "
                "pip install 'openai-dit[otel]'")
    return None


def setup(config: ServerConfig) -> Tracing | None:
    """The app's tracing: into the provider given to `configure`, else to --otlp-traces-endpoint, else None (off).
    A RuntimeError with `check_tracing`'s reason when the flag is set but cannot work."""
    if _injected is not None:
        return Tracing(_injected, owned=False)
    if not config.otlp_traces_endpoint:
        return None
    problem = check_tracing(config)
    if problem:
        raise RuntimeError(problem)
    return Tracing(_exporting_provider(config.otlp_traces_endpoint), owned=True)


def _exporting_provider(endpoint: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or _SERVICE_NAME,
                                "service.version": __version__})
    provider = TracerProvider(resource=resource)  # OTEL_TRACES_SAMPLER(_ARG) apply; the default samples everything
    if _protocol() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter: Any = GrpcExporter(endpoint=endpoint)  # http:// is plaintext, https:// TLS
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=_traces_url(endpoint))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _traces_url(endpoint: str) -> str:
    """An OTLP/HTTP endpoint given without a path (http://collector:4318) gets the collector's /v1/traces."""
    return endpoint.rstrip("/") + "/v1/traces" if urlsplit(endpoint).path in ("", "/") else endpoint


class Tracing:
    """One app's tracing: its tracer provider and tracer, Litestar's integration, and the shutdown."""

    def __init__(self, provider: Any, *, owned: bool) -> None:
        self.provider = provider
        self.owned = owned  # shut down with the app
        self.tracer = provider.get_tracer("openai_dit", __version__)

    def plugins(self) -> list[Any]:
        """Litestar's OpenTelemetry plugin: a server span per HTTP request (none for the probes), the W3C
        `traceparent` of the caller honoured, with the request id; no spans of their own for the body's chunks."""
        from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
        from opentelemetry.metrics import NoOpMeterProvider

        config = OpenTelemetryConfig(tracer_provider=self.provider, meter_provider=NoOpMeterProvider(),
                                     exclude=_PROBES, exclude_spans=["receive", "send"],
                                     scope_span_details_extractor=_span_details,
                                     server_request_hook_handler=_on_request)
        return [OpenTelemetryPlugin(config)]

    def middleware(self) -> list[Any]:
        """Route middleware that names the server span after the route template, once the request is routed (the
        integration starts the span before routing)."""
        return [_name_by_route]

    async def close(self) -> None:
        """At app shutdown: export what is left and shut the provider down (one given to `configure` is left)."""
        if self.owned:
            await asyncio.to_thread(self.provider.shutdown)


def _span_details(scope: Any) -> tuple[str, dict[str, Any]]:
    """Before routing: the method alone (raw paths hold ids); `_name_by_route` adds the route template."""
    return str(scope.get("method") or scope.get("type", "HTTP")), {}


def _on_request(span: Any, scope: Any) -> None:
    request_id = scope.get("state", {}).get("request_id")
    if request_id and span.is_recording():
        span.set_attribute(_REQUEST_ID, request_id)


def _name_by_route(app: Any) -> Any:
    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        template = scope.get("path_template")
        if scope["type"] == "http" and template:
            from opentelemetry import trace

            span = trace.get_current_span()
            if span.is_recording():
                span.update_name(f"{scope['method']} {template}")
                span.set_attribute("http.route", template)
        await app(scope, receive, send)

    return middleware
