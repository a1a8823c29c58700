# tether: the sidecar / gateway image.
#   docker build -t tether .
#   docker run --read-only --tmpfs /tmp -v tether-state:/var/lib/tether \
#     -v ./tether.yaml:/etc/tether/tether.yaml:ro -e TETHER_CONFIG=/etc/tether/tether.yaml tether
# scripts/image-steps runs the same install and start steps on a host (CI has no container engine).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY tether ./tether
COPY scripts/image-install ./scripts/image-install
RUN scripts/image-install /opt/tether

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 tether \
 && useradd --system --uid 10001 --gid tether --home-dir /var/lib/tether --shell /usr/sbin/nologin tether \
 && mkdir -p /var/lib/tether /var/run/tether-ca /etc/tether \
 && chown tether:tether /var/lib/tether /var/run/tether-ca
COPY --from=build /opt/tether /opt/tether
# State (CA key, ledger) lives in the volume; the root filesystem can be mounted read-only.
ENV PATH=/opt/tether/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TETHER_STATE_DIR=/var/lib/tether
VOLUME ["/var/lib/tether"]
USER 10001:10001
WORKDIR /var/lib/tether
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["tether", "probe", "--ready"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tether", "run"]
