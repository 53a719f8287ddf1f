# atess-exporter container image.
#
#   docker build -t atess-exporter .
#   docker run -d -p 10036:10036 \
#     -v "$PWD/config.yaml:/etc/atess-exporter/config.yaml:ro" \
#     -e ATESS_TOKEN=... atess-exporter
#
# Configuration: mount a config file at /etc/atess-exporter/config.yaml (validate it
# first: docker run --rm -v ... atess-exporter --check-config --config.file=...).
# Secrets: `${ATESS_TOKEN}` references in the config are read from the environment,
# or use `token_file: /run/secrets/atess_token` with a mounted secret. No flag takes
# a credential. The counter state file (state_file, default
# atess-exporter-state.json) lands in the working directory /var/lib/atess-exporter;
# mount a volume there to keep it across restarts.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- build: install the package and its pinned dependency ranges into a venv ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY . .
# Dependencies and their version ranges come from pyproject.toml.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/atess-exporter --version

# ---- runtime: the venv on a clean slim image, as a non-root user ----
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="atess-exporter" \
      org.opencontainers.image.description="Prometheus exporter for ATESS energy devices (ATESS cloud OpenAPI)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10036 atess \
    && useradd --system --uid 10036 --gid atess --home-dir /var/lib/atess-exporter \
       --no-create-home --shell /usr/sbin/nologin atess \
    && mkdir -p /etc/atess-exporter /var/lib/atess-exporter \
    && chown atess:atess /var/lib/atess-exporter
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/atess-exporter
USER 10036:10036
EXPOSE 10036
# No curl in the slim image: Python's urllib asks /healthz. Adjust the port if you
# change --web.listen-address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:10036/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["atess-exporter"]
CMD ["--config.file=/etc/atess-exporter/config.yaml"]
