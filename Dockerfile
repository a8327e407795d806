# wdrec: the `wdrec` command (train, serve, ...) on CPU torch, as a non-root user.
#
# Build arguments (the defaults build where Docker Hub and the PyTorch CPU index are reachable):
#   BASE_IMAGE           any Debian-like image with python3.11 + venv (default python:3.11-slim-bookworm);
#                        `make docker-base` builds one locally from debootstrap.
#   PIP_EXTRA_INDEX_URL  where pip finds the CPU build of torch (default the PyTorch CPU index; "" = PyPI only).
# Local pieces, copied into the build context by `make docker-context` (both optional, gitignored):
#   docker/local/wheels/*.whl              wheels pip prefers (e.g. the torch CPU wheel on this disk);
#   docker/local/ca-certificates.crt       a CA bundle pip trusts (for TLS-intercepting networks).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=120 \
    PIP_FIND_LINKS=/build/local/wheels \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /build
RUN python3 -m venv /opt/venv
COPY docker/local/ local/
COPY docker/pip-install.sh ./
# Dependencies first, from pyproject.toml alone, so source edits reuse this (large) layer.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt \
    && sh pip-install.sh -r requirements.txt
COPY README.md ./
COPY training/ training/
COPY app/ app/
RUN sh pip-install.sh --no-deps . \
    && /opt/venv/bin/python -c 'import torch, training.cli, app; assert "+cpu" in torch.__version__, torch.__version__'

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/wdrec \
    MPLCONFIGDIR=/tmp/matplotlib \
    WDREC_ARTIFACTS_DIR=/artifacts \
    WDREC_STATE_DIR=/state \
    WDREC_DATA_DIR=/data \
    WDREC_HOST=0.0.0.0 \
    WDREC_PORT=8000
RUN groupadd --gid 10001 wdrec \
    && useradd --create-home --uid 10001 --gid wdrec --shell /usr/sbin/nologin wdrec \
    && mkdir -p /artifacts /data /state \
    && chown wdrec:wdrec /artifacts /state
COPY --from=builder /opt/venv /opt/venv
# The script's mode comes from git (0755): the classic builder has no COPY --chmod.
COPY docker/entrypoint.sh /usr/local/bin/wdrec-entrypoint
# Numeric, so the host and Kubernetes runAsNonRoot can tell it is not root without the passwd file.
USER 10001:10001
WORKDIR /home/wdrec
# A named volume mounted here starts with this folder's owner, so the non-root user can write artifacts
# and, without WDREC_DATABASE_URL, the SQLite database of recorded sessions.
VOLUME ["/artifacts", "/state"]
EXPOSE 8000
# /ready is 200 only once the artifacts are loaded; python's urllib, because the image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('WDREC_PORT', '8000')}/ready\", timeout=4)"]
ENTRYPOINT ["wdrec-entrypoint"]
CMD ["serve"]
