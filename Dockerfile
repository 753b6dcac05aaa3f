# syntax=docker/dockerfile:1
# gpuquota: one image for the webhook (serve), the node agent (agent) and the reconciler (reconcile).
#
#   docker build -t gpuquota:0.1.0 .
#   docker run --rm --read-only -v gpuquota-state:/var/lib/gpuquota -p 8443:8443 gpuquota:0.1.0 serve --insecure
#
# The final stage holds a Python runtime and a virtual environment with gpuquota and its dependencies (all from
# binary wheels): no compiler, no pip cache, no source tree. It runs as an unprivileged numeric user and writes
# only under /var/lib/gpuquota (mount a volume there) and /tmp (mount an emptyDir), so a read-only root works.
# Pin the base by digest in your registry mirror for reproducible builds (PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:…).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir build==1.6.1
# Only what the wheel is built from (see .dockerignore): a change to the tests does not rebuild the layers.
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/build/bin/python -m build --wheel --outdir /dist . \
 && python -m venv /opt/gpuquota \
 && /opt/gpuquota/bin/pip install --no-cache-dir /dist/gpuquota-*.whl \
 && /opt/gpuquota/bin/gpuquota --help >/dev/null \
 && /opt/gpuquota/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
ARG GPUQUOTA_UID=10001
LABEL org.opencontainers.image.title="gpuquota" \
      org.opencontainers.image.description="GPU-aware compute-cap enforcement for Kubernetes: admission webhook, NVML node agent, reconciler" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid "${GPUQUOTA_UID}" gpuquota \
 && useradd --system --uid "${GPUQUOTA_UID}" --gid gpuquota --home-dir /var/lib/gpuquota --no-create-home \
      --shell /usr/sbin/nologin gpuquota \
 && mkdir -p /var/lib/gpuquota \
 && chown "${GPUQUOTA_UID}:${GPUQUOTA_UID}" /var/lib/gpuquota \
 && chmod 0750 /var/lib/gpuquota
# Same path as in the builder: a virtual environment is not relocatable.
COPY --from=builder /opt/gpuquota /opt/gpuquota
ENV PATH=/opt/gpuquota/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/gpuquota
WORKDIR /var/lib/gpuquota
VOLUME ["/var/lib/gpuquota"]
USER ${GPUQUOTA_UID}:${GPUQUOTA_UID}
EXPOSE 8443
ENTRYPOINT ["gpuquota"]
CMD ["serve"]
