# canary-analyzer: multi-stage, non-root, runtime dependencies only, pinned by constraints.txt.
#
# BASE selects the base image; both stages use it. The default is the official Python image at a
# pinned version (pin its digest too where a registry is reachable:
# --build-arg BASE=python:3.11.11-slim-bookworm@sha256:...). The tests build on a Debian bookworm
# rootfs with python3 and python3-venv instead (tests/integration/test_image.py): this file asks
# only for python3 with venv and useradd, which both have.
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
RUN python3 -m venv /opt/canary-analyzer
COPY constraints.txt pyproject.toml README.md ./
COPY analyzer ./analyzer
RUN /opt/canary-analyzer/bin/pip install --no-cache-dir --disable-pip-version-check \
      --constraint constraints.txt . \
 && /opt/canary-analyzer/bin/pip uninstall --yes pip

FROM ${BASE}
ENV PYTHONUNBUFFERED=1 \
    PATH=/opt/canary-analyzer/bin:$PATH \
    CANARY_ANALYZER_HTTP_PORT=8080
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin analyzer
COPY --from=build /opt/canary-analyzer /opt/canary-analyzer
USER 10001
EXPOSE 8080
# The port the daemon listens on: --http-port defaults to $CANARY_ANALYZER_HTTP_PORT, so setting
# that one variable moves both.
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CANARY_ANALYZER_HTTP_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["canary-analyzer"]
CMD ["run", "--kafka", "--rules", "/etc/canary-analyzer/rules"]
