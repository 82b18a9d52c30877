"""The server's settings: one typed object. Each field's help text is the `--help` text and the README table."""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields

from .protocol.models import ModelNames

__all__ = ["API_KEY_ENV", "BOOLEAN_WORDS", "SCM_POLICIES", "ServerConfig", "add_arguments", "config_from_args",
           "flag_table"]

SCM_POLICIES = ("slow", "medium", "fast", "ultra")
API_KEY_ENV = "OPENAI_DIT_API_KEY"
# What a switch's variable may say (ConfigArgParse's words for true and false).
BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")


def _opt(default, help: str, *, flag: str | None = None, group: str, choices=None, secret: bool = False,
         nargs: str | None = None):
    return field(default=default, repr=not secret,
                 metadata={"help": help, "flag": flag, "group": group, "choices": choices, "nargs": nargs})


@dataclass
class ServerConfig:
    """Everything `openai-dit serve` can be told. Defaults match the old cache-dit server where it had one."""

    # --- server
    model_path: str = _opt("tiny:flux", "Model to serve: a local diffusers folder, a Hugging Face id, or a built-in "
                           "tiny model (tiny:<family>, e.g. tiny:flux, tiny:wan-t2v, tiny:ltx2; `openai-dit tiny "
                           "--list` lists them).", group="server")
    served_model_name: list[str] | None = _opt(
        None, "Names clients may send as `model` (space-separated or repeated; the first is reported; default: the "
        "model path). OpenAI's own names (dall-e-2, dall-e-3, gpt-image-1, gpt-image-1-mini, gpt-image-1.5 on image "
        "routes; sora-2, sora-2-pro on video routes) are accepted too unless --no-openai-model-aliases.",
        group="server", nargs="+")
    no_openai_model_aliases: bool = _opt(False, "Accept only the served names as `model`: OpenAI's model names become "
                                         "404 model_not_found.", group="server")
    host: str = _opt("0.0.0.0", "Address to bind.", group="server")
    allowed_origins: list[str] | None = _opt(
        None, "Browser origins allowed to call the API from other sites (CORS), e.g. https://app.example.com; "
        "space-separated, repeated or comma-separated; * for any. Default: none (no CORS headers).", group="server",
        nargs="+")
    port: int = _opt(8000, "Port to bind.", group="server")
    max_queued_requests: int = _opt(64, "Requests that may wait for the model; beyond this, 429 with Retry-After.",
                                    group="server")
    max_batch_size: int = _opt(4, "Most outputs (images or videos) of one pipeline call shared by waiting requests "
                               "with the same size, steps and settings; 1 runs every request alone (bit-exact "
                               "reproducible). A batch that runs out of GPU memory is retried one by one.",
                               group="server")
    max_connections: int = _opt(512, "Open connections at most; beyond them a new one is answered 503 (Retry-After) "
                                 "and closed.", group="server")
    header_timeout: float = _opt(10.0, "Seconds a client has to send a request's line and headers, from its first "
                                 "byte (or from connecting); then the connection is closed.", group="server")
    body_timeout: float = _opt(120.0, "Seconds a client has to send a request's body after its headers (at most "
                               "--request-timeout); then it is answered 408 and the connection closed (0: no limit).",
                               group="server")
    keep_alive_timeout: float = _opt(5.0, "Seconds an idle keep-alive connection stays open between requests.",
                                     group="server")
    max_header_kb: int = _opt(64, "Largest request line and headers (KiB); larger is 431.", group="server")
    max_pixels_per_job: int | None = _opt(None, "The largest job: width x height x frames x outputs (images or "
                                          "videos); larger is a 400 before anything is queued. Default: 2.5 M per GiB "
                                          "of GPU memory (200 M on an 80 GiB GPU), 64 M on the CPU.", group="server")
    max_request_body_mb: float = _opt(64.0, "Largest request body accepted (MiB); larger is 413, refused from its "
                                      "Content-Length or as soon as the stream passes the limit.", group="server")
    request_timeout: float = _opt(600.0, "Seconds an image or /generate request may take, queue included; then its "
                                  "work stops and it is answered 504 (0: no limit). Video jobs are not bound.",
                                  group="server")
    shutdown_timeout: float = _opt(30.0, "On SIGTERM: seconds admitted work may take to finish while new work is "
                                   "refused (503) before the server exits 0; what is left then is answered 503 "
                                   "and a running video job is queued again for the next start.", group="server")
    output_dir: str | None = _opt(None, "Folder for output_format \"path\"; without it that format is refused.",
                                  group="server")
    png_compress_level: int = _opt(1, "PNG compression level 0-9 of outputs (1: fast, a little larger).",
                                   group="server", choices=range(10))
    log_level: str = _opt("info", "Log level.", group="server",
                          choices=("debug", "info", "warning", "error"))
    log_format: str = _opt("text", "Log line format: text, or json (one object per line: time, level, logger, "
                           "message, request_id, rank; for log shippers).", group="server", choices=("text", "json"))
    log_probes: bool = _opt(False, "Also access-log the probe and scrape routes (/health, /ready, /live, "
                            "/metrics), which are left out by default.", group="server")
    otlp_traces_endpoint: str | None = _opt(
        None, "Send OpenTelemetry traces (HTTP requests, queue, denoising steps, decode, encode) to this OTLP "
        "endpoint, e.g. http://otel-collector:4318/v1/traces (needs pip install 'openai-dit[otel]'; "
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc for gRPC; OTEL_SERVICE_NAME names the service).", group="server")
    # --- security
    api_key: list[str] | None = _opt(None, "An API key clients must send (Authorization: Bearer KEY, or x-api-key: "
                                     "KEY); repeat the flag for several. Also read from $OPENAI_DIT_API_KEY "
                                     "(comma-separated). Without any key the API is open. /health, /ready, /live, "
                                     "/metrics, /docs and the playground page stay public.", group="security",
                                     secret=True)
    api_key_file: str | None = _opt(None, "File with one API key per line (e.g. a mounted secret); added to the "
                                    "others.", group="security")
    # --- OpenAI API
    quality_steps: str | None = _opt(None, "Steps for the OpenAI `quality` values, e.g. low=8,medium=16,high=28 "
                                     "(default: a quarter, half and all of the model's default steps; auto = the "
                                     "model's default).", group="openai")
    default_response_format: str = _opt(
        "auto", "response_format when a request names none: auto (as OpenAI: url for dall-e-2 and dall-e-3, else "
        "b64_json), url or b64_json.", group="openai", choices=("auto", "url", "b64_json"))
    image_url_ttl: int = _opt(3600, "Seconds a response_format=url image stays downloadable.", group="openai")
    image_url_store_mb: float = _opt(1024.0, "Memory (MiB) kept for response_format=url images; the oldest "
                                     "expire first when full.", group="openai")
    public_url: str | None = _opt(None, "Base URL clients reach this server at (e.g. https://gen.example.com), "
                                  "for image links (default: from each request's Host header).", group="openai")
    # --- video jobs
    data_dir: str | None = _opt(None, "Folder for durable state: video jobs (SQLite) and their files. Default: "
                                "$OPENAI_DIT_DATA_DIR, else $XDG_DATA_HOME/openai-dit (~/.local/share/openai-dit). "
                                "One server per folder.", group="videos")
    video_timeout: float = _opt(3600.0, "Seconds a video job may run (from its start); then it stops at its next step "
                                "and fails with code video_timeout (0: no limit).", group="videos")
    video_ttl: int = _opt(86400, "Seconds a finished video job and its files are kept after it completes or fails.",
                          group="videos")
    video_store_mb: float = _opt(20480.0, "Disk (MiB) for video jobs' files; beyond it the oldest finished jobs "
                                 "are removed.", group="videos")
    max_video_jobs: int = _opt(10000, "Video job records kept; beyond it the oldest finished jobs are removed.",
                               group="videos")
    # --- several replicas
    job_store: str = _opt("sqlite", "Where video jobs are recorded: sqlite (a file in --data-dir; one server) or "
                          "postgresql://user:password@host:port/database (psycopg 3), shared by replicas.",
                          group="replicas", secret=True)
    job_lease: float = _opt(30.0, "Seconds a replica holds a job without renewing it (it renews every third of "
                            "it, at most every 2 s); a job whose replica died runs elsewhere after this long.",
                            group="replicas")
    job_attempts: int = _opt(0, "Times a job may start before a server dying under it fails it as "
                             "server_restarted (0: 1 with sqlite, as it may be what killed the server; 2 with "
                             "PostgreSQL, where another replica takes it over).", group="replicas")
    object_store: str = _opt("local", "Where files are kept: local (videos in --data-dir, url images in memory) or "
                             "s3://bucket/prefix (videos and url images, shared by replicas; boto3's credentials).",
                             group="replicas")
    object_store_endpoint: str | None = _opt(None, "The S3-compatible endpoint (MinIO, R2, ...). Default: "
                                             "$AWS_ENDPOINT_URL_S3, else AWS.", group="replicas")
    presigned_urls: bool = _opt(False, "response_format=url links are pre-signed URLs of the bucket (as OpenAI's "
                                "are) rather than this server's /v1/images/files/ links.", group="replicas")
    webhook_url: str | None = _opt(None, "Where video.completed and video.failed events are POSTed (Standard "
                                   "Webhooks, as OpenAI sends them); checked like image URLs.", group="replicas")
    webhook_secret: str | None = _opt(None, "The webhooks' signing secret, whsec_<base64> (what the openai SDK's "
                                      "webhooks.unwrap() takes).", group="replicas", secret=True)
    # --- model loading
    device: str | None = _opt(None, "Device: cpu, cuda, cuda:N or cuda:A,B,... (default: cuda when available, "
                              "else cpu). Under torchrun, rank r takes cuda:r, cuda:N+r, or the r-th listed GPU.",
                              group="model")
    dtype: str = _opt("auto", "Weights dtype: auto (bfloat16 on GPUs that support it, else float16; float32 on CPU), "
                      "bfloat16, float16, float32.", group="model", choices=("auto", "bfloat16", "float16", "float32"))
    attn: str | None = _opt(None, "Attention backend of the transformer (diffusers' names: flash, _flash_3, sage, "
                            "_native_cudnn, flex, xformers, native, ...), checked at launch.", group="model")
    device_map: str | None = _opt(None, "Diffusers pipeline device map (e.g. balanced) to spread components over "
                                  "several GPUs.", group="model")
    enable_cpu_offload: bool = _opt(False, "Keep components on the CPU and move each to the GPU while it runs.",
                                    group="model")
    lora_path: str | None = _opt(None, "Folder or Hugging Face id holding LoRA weights.", group="model")
    lora_name: str | None = _opt(None, "LoRA weight file inside --lora-path (e.g. model.safetensors).",
                                 group="model")
    disable_fuse_lora: bool = _opt(False, "Keep the LoRA separate instead of fusing it (always separate when "
                                   "--pipeline-quant-config-path quantizes the transformer while loading).",
                                   group="model")
    quantize_type: str | None = _opt(None, "Quantize the transformer online with torchao through cache-dit: "
                                     "float8_per_row, float8_per_tensor, float8_per_block, float8_weight_only, "
                                     "int8_per_row, int8_per_tensor, int8_weight_only, int4_weight_only, nvfp4, "
                                     "nvfp4_weight_only (old names such as float8_wo and int8_wo are aliases). A "
                                     "LoRA is fused first, or kept unquantized with --disable-fuse-lora.",
                                     group="model")
    pipeline_quant_config_path: str | None = _opt(
        None, "Diffusers PipelineQuantizationConfig as a JSON file (e.g. bitsandbytes nf4). A .py file defining "
        "get_pipeline_quant_config() is also accepted, and is EXECUTED.", group="model")
    compile: bool = _opt(False, "torch.compile the transformer; the first request of each new shape warms up.",
                         group="model")
    # --- cache-dit
    cache: bool = _opt(False, "Enable cache-dit DBCache.", group="cache")
    rdt: float = _opt(0.08, "Residual diff threshold.", group="cache")
    Fn: int = _opt(8, "First N blocks always computed (clamped to the model's blocks).", flag="--Fn", group="cache")
    Bn: int = _opt(0, "Last N blocks always computed (clamped to the model's blocks).", flag="--Bn", group="cache")
    max_warmup_steps: int = _opt(8, "Steps computed in full before caching starts.", group="cache")
    max_cached_steps: int = _opt(-1, "Most steps cached per request (-1: no limit).", group="cache")
    max_continuous_cached_steps: int = _opt(-1, "Most consecutive cached steps (-1: no limit).", group="cache")
    taylorseer: bool = _opt(False, "Enable the TaylorSeer calibrator.", group="cache")
    taylorseer_order: int = _opt(1, "TaylorSeer order.", group="cache")
    scm: str | None = _opt(None, "Steps computation mask policy, applied per request to its step count.",
                           group="cache", choices=SCM_POLICIES)
    # --- parallelism
    parallel_type: str | None = _opt(None, "Parallelism across torchrun ranks (cache-dit): ulysses or ring "
                                     "(context parallelism), tp (tensor parallelism). Required under torchrun; "
                                     "rank 0 serves HTTP.", group="parallel", choices=("tp", "ulysses", "ring"))
    parallel_text_encoder: bool = _opt(False, "Also parallelize the text encoder.", group="parallel")
    parallel_vae: bool = _opt(False, "Also parallelize the VAE.", group="parallel")
    step_timeout: float = _opt(600.0, "With several ranks: a call that makes no denoising step for this many "
                               "seconds means a rank hangs, and the launch exits non-zero (also the collective "
                               "timeout; allow for --compile warm-ups).", group="parallel")
    # --- inputs
    allowed_local_media_path: str | None = _opt(None, "Folder from which image_urls may name local files; "
                                                "without it local paths are refused.", group="inputs")
    allow_private_urls: bool = _opt(False, "Let image URLs and --webhook-url reach private, loopback and link-local "
                                    "addresses.",
                                    group="inputs")
    max_image_pixels: int = _opt(16_777_216, "Largest input image (width x height), checked before decoding.",
                                 group="inputs")
    max_image_bytes_mb: float = _opt(20.0, "Largest input image file (MiB), fetched or inline.", group="inputs")
    fetch_timeout: float = _opt(15.0, "Total seconds allowed to fetch one image URL.", group="inputs")

    @property
    def model_name(self) -> str:
        """The name the API reports."""
        return self.model_names.primary

    @property
    def model_names(self) -> ModelNames:
        names = [self.served_model_name] if isinstance(self.served_model_name, str) else self.served_model_name or []
        served = [name.strip() for name in names if name.strip()]
        return ModelNames(tuple(served or [self.model_path]), aliases=not self.no_openai_model_aliases)

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for value in self.allowed_origins or [] for o in value.split(",") if o.strip()]

    def api_keys(self) -> list[str]:
        """Every accepted key: --api-key, $OPENAI_DIT_API_KEY, --api-key-file (OSError if it cannot be read)."""
        keys = list(self.api_key or [])
        keys += os.environ.get(API_KEY_ENV, "").split(",")
        if self.api_key_file:
            with open(self.api_key_file, encoding="utf-8") as f:
                keys += f.read().splitlines()
        return [key.strip() for key in keys if key.strip()]

    @property
    def data_path(self) -> str:
        """--data-dir, else $OPENAI_DIT_DATA_DIR, else the XDG data folder."""
        if self.data_dir:
            return self.data_dir
        if os.environ.get("OPENAI_DIT_DATA_DIR"):
            return os.environ["OPENAI_DIT_DATA_DIR"]
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return os.path.join(base, "openai-dit")


def _flag(f) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per ServerConfig field, grouped as in the README."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(ServerConfig):
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = f.default if f.default is not MISSING else None
        if f.type in ("bool", bool):
            group.add_argument(_flag(f), dest=f.name, action="store_true", default=default, help=meta["help"])
            continue
        if str(f.type).startswith("list"):
            if meta["nargs"]:  # `--flag a b` and `--flag a --flag b` alike
                group.add_argument(_flag(f), dest=f.name, action="extend", nargs=meta["nargs"], default=default,
                                   help=meta["help"], metavar=f.name.upper())
            else:
                group.add_argument(_flag(f), dest=f.name, action="append", default=default, help=meta["help"],
                                   metavar=f.name.upper())
            continue
        kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
        group.add_argument(_flag(f), dest=f.name, type=kind, default=default, choices=meta["choices"],
                           help=meta["help"])


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(**{f.name: getattr(args, f.name) for f in fields(ServerConfig)})


def flag_table() -> list[tuple[str, str, str]]:
    """(flag, default, help) rows: the README's table of CLI flags."""
    rows = []
    for f in fields(ServerConfig):
        default = "off" if f.default is False else ("" if f.default is None else str(f.default))
        rows.append((_flag(f), default, f.metadata["help"]))
    return rows
