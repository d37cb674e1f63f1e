# alliance-psi: one image for every party (coordinator, custodian, member node, the PKI and admin commands).
#
#   docker build -t alliance-psi .                                       # from the package registries
#   docker build --build-arg WHEELHOUSE=wheelhouse -t alliance-psi .     # offline, from ./wheelhouse
#
# BASE must be Debian bookworm (any image of it: debian:bookworm-slim, or one made with
# `debootstrap --variant=minbase bookworm` and `podman import`). Python 3.11, its venv module and
# libsodium come from Debian; a BASE that already has them (python3, python3-venv, libsodium23)
# needs no network for them. WHEELHOUSE names a folder of the build context holding a wheel for
# every dependency and for setuptools and wheel (scripts/container_test.sh makes one with
# `pip wheel`): the build then asks no package index at all.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS builder
SHELL ["/bin/sh", "-eu", "-c"]
# Only what the venv needs: every dependency ships a manylinux wheel, so nothing is compiled.
# hadolint ignore=DL3008
RUN if ! dpkg-query -W python3-venv >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
# The context is only what .dockerignore lets in: the package's sources and the wheelhouse.
COPY . .
ARG WHEELHOUSE=
# The wheel is built here from the sources above, then installed with its dependencies into a
# venv that the runtime stage copies whole.
RUN if [ -n "${WHEELHOUSE}" ]; then \
      export PIP_NO_INDEX=1 PIP_FIND_LINKS="/src/${WHEELHOUSE}"; \
    fi; \
    python3 -m venv /opt/alliance-psi \
    && /opt/alliance-psi/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && /opt/alliance-psi/bin/pip install --no-cache-dir /dist/alliance_psi-*.whl \
    && /opt/alliance-psi/bin/pip uninstall --yes setuptools pip \
    && /opt/alliance-psi/bin/alliance-psi --version

FROM ${BASE} AS runtime
SHELL ["/bin/sh", "-eu", "-c"]
# Python 3.11 and libsodium (pysodium loads it at run time); no compiler, no pip.
# hadolint ignore=DL3008
RUN if ! dpkg-query -W python3 libsodium23 >/dev/null 2>&1; then \
      apt-get update && apt-get install -y --no-install-recommends python3 libsodium23 \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 alliance \
    && useradd --system --uid 10001 --gid alliance --home-dir /var/lib/alliance-psi --create-home \
       --shell /usr/sbin/nologin alliance
COPY --from=builder /opt/alliance-psi /opt/alliance-psi
ENV PATH=/opt/alliance-psi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ALLIANCE_PSI_HEALTH_URL=""
USER 10001:10001
WORKDIR /var/lib/alliance-psi
# The plain health port (`serve` or `node run --metrics-listen`), so the check needs no certificate
# for the mutual-TLS gRPC port: set ALLIANCE_PSI_HEALTH_URL to http://127.0.0.1:PORT/readyz. A
# container that sets none (a one-shot command) has nothing to check.
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
    CMD ["/bin/sh", "-c", "[ -z \"$ALLIANCE_PSI_HEALTH_URL\" ] || exec alliance-psi health --url \"$ALLIANCE_PSI_HEALTH_URL\""]
ENTRYPOINT ["alliance-psi"]
CMD ["--help"]
