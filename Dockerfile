# syntax=docker/dockerfile:1
#
# openai-dit for CUDA hosts.
#
#   docker build -t openai-dit .
#   docker run --gpus all -p 8000:8000 -v openai-dit-cache:/cache -v openai-dit-data:/data openai-dit
#
# The default command serves the built-in tiny model (no download; it also runs without a GPU). Serve a real
# model by passing the serve command and its flags after the image name:
#
#   docker run --gpus all -p 8000:8000 -v openai-dit-cache:/cache -v openai-dit-data:/data \
#     -e HF_TOKEN -e OPENAI_DIT_API_KEY openai-dit serve --model-path black-forest-labs/FLUX.1-dev --cache
#
# torch's pip wheels bring their own CUDA runtime, cuDNN, cuBLAS and NCCL, so the base needs nothing but the
# NVIDIA container settings: the small "base" flavour, of the CUDA line the torch build targets. PyTorch 2.13
# ships CUDA 12.6 and 13.0 wheels: 12.6 runs on R525 and newer drivers (CUDA minor-version compatibility), 13.0
# needs R580 or newer; for it, build with
#   --build-arg CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04 --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04

# ---- build: a virtual environment with the CUDA build of torch, then the project ----
FROM ${CUDA_IMAGE} AS build

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Ubuntu's archive keeps only the current build of each package, so pinned apt versions break every rebuild;
# the base image's tag pins the release instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from PyTorch's own index (PyPI's torch is the CUDA 13 build): its own layer, rarely rebuilt.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY openai_dit ./openai_dit
# The pyproject leaves torch unpinned (>=2.5), so the CUDA build installed above is kept.
RUN pip install --no-cache-dir . \
    && python -c "import torch, openai_dit.cli; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# ---- runtime ----
FROM ${CUDA_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="openai-dit" \
      org.opencontainers.image.description="Serve diffusion transformers over the OpenAI and cache-dit native APIs, accelerated by cache-dit." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV DEBIAN_FRONTEND=noninteractive
# python3: the interpreter the virtual environment was made with (same base, same path); tini: PID 1, forwards
# SIGTERM to the server and reaps the worker processes torch.compile starts; ca-certificates: Hugging Face
# downloads and image URLs over HTTPS.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 tini ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric, non-root user, so that Kubernetes can verify runAsNonRoot; /cache and /data belong to it.
RUN groupadd --gid 10001 openai-dit \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/openai-dit --shell /usr/sbin/nologin openai-dit \
    && mkdir -p /cache /data \
    && chown 10001:10001 /cache /data

COPY --from=build /opt/venv /opt/venv

# Everything the server writes goes below /cache (built-in tiny models, Hugging Face downloads, compiled
# kernels) and /data (video jobs: SQLite and files), so the root filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPENAI_DIT_TINY_CACHE=/cache/openai-dit \
    HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache/xdg \
    TRITON_CACHE_DIR=/cache/triton \
    OPENAI_DIT_DATA_DIR=/data
VOLUME ["/cache", "/data"]

USER 10001:10001
WORKDIR /home/openai-dit

EXPOSE 8000
# The server drains on SIGTERM (new work 503, admitted work finishes, up to --shutdown-timeout, 30 s by default)
# and exits 0: give it that long and a few seconds more (docker's default is 10 s): docker stop --time 40.
STOPSIGNAL SIGTERM
# /ready is public even with API keys; 200 once the model is loaded, 503 while loading, draining or failed.
# The start period covers model loading (downloads included). It probes port 8000: change it with --port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20m --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "openai-dit"]
CMD ["serve", "--model-path", "tiny:flux", "--host", "0.0.0.0", "--port", "8000"]
