"""`openai-dit serve | tiny`. Heavy imports happen only inside the command that needs them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sqlite3
import sys
import threading

from . import __version__
from .adapters.images import parse_quality_steps
from .config import ServerConfig, add_arguments, config_from_args
from .config_sources import ServeParser
from .logs import configure_logging

__all__ = ["main"]

logger = logging.getLogger("openai_dit")

_HARD_EXIT_SECONDS = 15.0
_CONNECTIONS_GRACE_SECONDS = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openai-dit", description="Serve diffusion transformers over HTTP "
                                     "(OpenAI and cache-dit native APIs), accelerated by cache-dit.")
    parser.add_argument("--version", action="version", version=f"openai-dit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ServeParser)
    serve = commands.add_parser("serve", help="Start the server.", description="Every flag can also be set as the "
                                "variable OPENAI_DIT_<FLAG> (e.g. OPENAI_DIT_PORT=8001, OPENAI_DIT_CACHE=true; lists "
                                "space-separated) or as a key of the --config file; precedence: flag > variable > "
                                "file > default.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(serve)
    commands._parser_class = argparse.ArgumentParser  # type: ignore[assignment]  # `tiny` reads no variables
    tiny = commands.add_parser("tiny", help="Write a built-in tiny model to a folder (loadable by plain diffusers).")
    tiny.add_argument("name", nargs="?", help="a built-in model, e.g. tiny:flux or ltx2 (the 'tiny:' prefix may be "
                      "left out)")
    tiny.add_argument("directory", nargs="?")
    tiny.add_argument("--list", action="store_true", help="list the built-in models")
    return parser


def _check_launch(config: ServerConfig) -> str | None:
    """Problems found before anything loads; None when the launch is sound."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not config.parallel_type:
        return (f"launched on {world_size} ranks (torchrun) without --parallel-type: every rank would serve the "
                "whole model on its own; add --parallel-type ulysses|ring|tp, or launch one process")
    if config.parallel_type and world_size < 2:
        return f"--parallel-type {config.parallel_type} needs several ranks: launch with torchrun --nproc_per_node=N"
    if (config.parallel_text_encoder or config.parallel_vae) and not config.parallel_type:
        return "--parallel-text-encoder / --parallel-vae need --parallel-type under torchrun"
    if config.parallel_type in ("ring", "tp") and not _cuda_device(config):
        return (f"--parallel-type {config.parallel_type} needs CUDA (cache-dit's ring attention and tensor "
                "parallelism use GPU kernels); on CPU use --parallel-type ulysses")
    if config.parallel_type and config.scm:
        return ("--scm re-applies cache-dit for each step count, which cache-dit's parallelism does not allow; "
                "drop --scm with --parallel-type")
    if config.step_timeout <= 0:
        return "--step-timeout must be positive"
    if config.lora_name and not config.lora_path:
        return "--lora-name needs --lora-path"
    if (config.scm or config.taylorseer) and not config.cache:
        return "--scm and --taylorseer configure cache-dit: add --cache"
    if config.output_dir and os.path.exists(config.output_dir) and not os.path.isdir(config.output_dir):
        return f"--output-dir {config.output_dir} is not a folder"
    if config.allowed_local_media_path and not os.path.isdir(config.allowed_local_media_path):
        return f"--allowed-local-media-path {config.allowed_local_media_path} is not a folder"
    if config.max_queued_requests < 1 or config.max_batch_size < 1:
        return "--max-queued-requests and --max-batch-size must be at least 1"
    try:
        parse_quality_steps(config.quality_steps)
    except ValueError as exc:
        return f"--quality-steps {exc}"
    if config.image_url_ttl < 1 or config.image_url_store_mb <= 0:
        return "--image-url-ttl and --image-url-store-mb must be positive"
    if config.video_ttl < 1 or config.video_store_mb <= 0 or config.max_video_jobs < 1:
        return "--video-ttl, --video-store-mb and --max-video-jobs must be positive"
    if os.path.exists(config.data_path) and not os.path.isdir(config.data_path):
        return f"--data-dir {config.data_path} is not a folder"
    problem = _check_replicas(config)
    if problem:
        return problem
    if config.public_url and not config.public_url.startswith(("http://", "https://")):
        return "--public-url must start with http:// or https://"
    if config.request_timeout < 0 or config.shutdown_timeout < 0 or config.body_timeout < 0:
        return "--request-timeout, --shutdown-timeout and --body-timeout must not be negative"
    if config.max_connections < 1 or config.header_timeout <= 0 or config.keep_alive_timeout <= 0 or \
            config.max_header_kb < 1:
        return "--max-connections, --header-timeout, --keep-alive-timeout and --max-header-kb must be positive"
    try:
        config.api_keys()
    except OSError as exc:
        return f"--api-key-file cannot be read: {exc.strerror}"
    from .tracing import check_tracing

    problem = check_tracing(config)
    if problem:
        return problem
    from .models.options import check_model_options

    return check_model_options(config, world_size)


def _check_replicas(config: ServerConfig) -> str | None:
    """--job-store, --object-store, leases and webhooks: their form (whether the services answer is checked when
    they are opened)."""
    from .jobs.store import job_store_url
    from .jobs.webhooks import check_webhook_config

    try:
        job_store_url(config.job_store, config.data_path)
    except ValueError as exc:
        return str(exc)
    if not (config.object_store == "local" or config.object_store.startswith("s3://")):
        return "--object-store must be local or s3://bucket/prefix"
    if config.presigned_urls and not config.object_store.startswith("s3://"):
        return "--presigned-urls needs --object-store s3://bucket/prefix"
    if config.job_lease <= 0 or config.job_attempts < 0:
        return "--job-lease must be positive and --job-attempts at least 0"
    return check_webhook_config(config.webhook_url, config.webhook_secret, allow_private=config.allow_private_urls)


def _uvicorn_server(app, config: ServerConfig):
    import uvicorn

    class Server(uvicorn.Server):
        """The first SIGTERM (or SIGINT) drains (`Lifecycle.drain`) before uvicorn's own shutdown; a second one
        stops at once. After a graceful shutdown uvicorn raises the caught signal again, so the process dies by
        it; a server that drained its work exits 0 instead, which orchestrators read as a clean stop."""

        draining = False

        async def startup(self, sockets=None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().startup(sockets)

        def handle_exit(self, sig, frame) -> None:
            if self.draining or self.should_exit or not hasattr(self, "_loop"):
                super().handle_exit(sig, frame)
                return
            self.draining = True
            logger.info("signal %d: draining for up to %g s, then exiting", sig, config.shutdown_timeout)
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

        async def _drain(self) -> None:
            try:
                await app.state.services.lifecycle.drain()
            finally:
                self.should_exit = True

        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    # log_config=None: uvicorn's loggers go through ours (request ids included); the drain has already waited for
    # admitted work, so uvicorn's own wait for open connections is short. The h11 protocol, guarded: see
    # `server.connections`. No `server` header.
    from .server.connections import ConnectionLimits, guarded_protocol

    body_timeout = min(t for t in (config.body_timeout, config.request_timeout) if t > 0) \
        if config.body_timeout > 0 else 0.0
    limits = ConnectionLimits(max_connections=config.max_connections, header_timeout=config.header_timeout,
                              body_timeout=body_timeout, max_header_bytes=config.max_header_kb * 1024)
    return Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level,
                                 log_config=None, timeout_graceful_shutdown=_CONNECTIONS_GRACE_SECONDS,
                                 http=guarded_protocol(limits), h11_max_incomplete_event_size=limits.max_header_bytes,
                                 server_header=False,
                                 # typed int, used as seconds for call_later: fractions work
                                 timeout_keep_alive=config.keep_alive_timeout))  # type: ignore[arg-type]


def _cuda_device(config: ServerConfig) -> bool:
    from .models.devices import rank_device

    return rank_device(config.device).startswith("cuda")


def serve(config: ServerConfig) -> int:
    from .jobs.schema import SchemaTooNew
    from .jobs.store import DataDirInUse, JobStoreUnreachable
    from .runner import Runner
    from .server import create_app
    from .storage import ObjectStoreUnreachable

    problem = _check_launch(config)
    if problem:
        logger.error("cannot start: %s", problem)
        return 2
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "warning")
    ranks = None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .distributed.launch import RankLaunch

        ranks = RankLaunch(config)
        if ranks.rank != 0:
            return ranks.run_worker()  # only rank 0 serves HTTP

    def load_engine():
        if ranks is not None:
            return ranks.coordinator(ranks.load_executor(), runner.declare_dead)
        from .models.executor import PipelineExecutor
        from .models.loader import load_model

        return PipelineExecutor(load_model(config))

    failure: list[BaseException] = []

    def on_fatal(exc: BaseException) -> None:
        """The model cannot load, or a rank was lost: stop serving and exit non-zero, so that an orchestrator
        restarts the launch. A shutdown that hangs (a call stuck in a collective) is cut short."""
        failure.append(exc)
        server.should_exit = True
        hard_exit = threading.Timer(_HARD_EXIT_SECONDS, os._exit, args=(1,))
        hard_exit.daemon = True
        hard_exit.start()

    runner = Runner(load_engine, max_queued=config.max_queued_requests, max_batch_size=config.max_batch_size,
                    on_fatal=on_fatal)
    if ranks is not None:
        ranks.watch(runner.declare_dead)
    keys = config.api_keys()
    logger.info("API keys: %s", f"{len(keys)} accepted" if keys else "none (the API is open)")
    try:
        app = create_app(config, runner, keys)
    except (JobStoreUnreachable, ObjectStoreUnreachable, SchemaTooNew) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    except (OSError, sqlite3.Error, DataDirInUse) as exc:
        logger.error("cannot start: the data directory %s cannot be used: %s", config.data_path, exc)
        return 2
    server = _uvicorn_server(app, config)
    server.run()
    if failure:
        logger.error("exiting: %s", failure[0])
        return 1
    if ranks is not None:
        ranks.finish(clean=True)
    return 0


def write_tiny(name: str, directory: str) -> int:
    from .models.tiny import write_builtin

    try:
        path = write_builtin(name if ":" in name else f"tiny:{name}", directory)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        argv.insert(0, "serve")  # `openai-dit --model-path ...` as the old cache-dit-serve was called
    args = _parser().parse_args(argv)
    if args.command == "tiny":
        logging.basicConfig(level=logging.WARNING)
        if args.list or not (args.name and args.directory):
            from .models.tiny import builtin_names

            print("\n".join(builtin_names()))
            return 0 if args.list else 2
        return write_tiny(args.name, args.directory)
    config = config_from_args(args)
    configure_logging(config)
    return serve(config)

