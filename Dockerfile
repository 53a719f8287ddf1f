# atess-exporter container image.
#
#   docker build -t atess-exporter .
#   docker run -d -p 10036:10036 -e ATESS_TOKEN=... \
#     -v atess-state:/var/lib/atess-exporter atess-exporter
#
# With only a token, the built-in config (deploy/container/config.yaml) finds every
# device of the account by discovery. Your own config: mount it over
# /etc/atess-exporter/config.yaml, or elsewhere and set ATESS_CONFIG_FILE. Every flag
# has an ATESS_* variable (atess-exporter --help), and flags given to `docker run`
# are added to the entrypoint, so `docker run IMAGE --web.listen-address :9999`
# keeps the config. Secrets: `${ATESS_TOKEN}` in the config is read from the
# environment, or use `token_file: /run/secrets/atess_token`; no flag takes one.
# The counter state is kept in /var/lib/atess-exporter: mount a volume there.
# Runs as uid 10036, group 0; any other uid in group 0 (OpenShift) works as well.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: the locked dependencies and the wheel into a venv without pip ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The lock files first: this layer is rebuilt only when they change.
# requirements*.lock: exact versions with hashes (make lock); pip refuses anything else.
COPY requirements.lock requirements-build.lock ./
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r requirements-build.lock \
    && python -m venv --without-pip /opt/venv \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY atess_exporter ./atess_exporter
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/build/bin/pip --python /opt/venv/bin/python install --no-deps --no-index /tmp/dist/*.whl \
    && /opt/venv/bin/atess-exporter --version

# ---- runtime: the venv (no pip, no setuptools) on a clean image, not root ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atess-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ATESS energy devices (ATESS cloud OpenAPI)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Group 0 owns the state directory with the owner's rights (g=u), so an arbitrary
# uid in group 0 can keep its counter state too.
RUN useradd --system --uid 10036 --gid 0 --home-dir /var/lib/atess-exporter \
       --no-create-home --shell /usr/sbin/nologin atess \
    && mkdir -p /etc/atess-exporter /var/lib/atess-exporter \
    && chown 10036:0 /var/lib/atess-exporter \
    && chmod 0770 /var/lib/atess-exporter
COPY --from=build /opt/venv /opt/venv
COPY deploy/container/config.yaml /etc/atess-exporter/config.yaml
# MALLOC_ARENA_MAX=2: glibc's per-thread arenas (one per poll worker) held a quarter of the
# memory: 10,000 devices measured 431 MB RSS without, 325 MB with (benchmarks/realpath.py memory).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    ATESS_CONFIG_FILE=/etc/atess-exporter/config.yaml
WORKDIR /var/lib/atess-exporter
USER 10036:0
EXPOSE 10036
# The health check finds the exporter's own listen address and web config (TLS,
# basic auth) in its command line and ATESS_* variables: see `healthcheck --help`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["atess-exporter", "healthcheck"]
ENTRYPOINT ["atess-exporter"]
