# syntax=docker/dockerfile:1
# The taskd image: `docker build -t taskd .` at the repository root.
# See "Containers and Kubernetes" in README.md; deploy/ uses this image.

# Build stage: the release binary, exactly the locked dependencies. protoc comes
# vendored (build.rs), so the official Rust image needs nothing more.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts (BuildKit) keep the registry and target/ between builds; the
# binary is copied out of the cached target/ within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin taskd \
    && install -D -m 0755 target/release/taskd /out/taskd

# Runtime stage: the same Debian release as the build image, so the same glibc.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so volumes, Kubernetes' runAsUser/fsGroup and file secrets
# can name it. /data is created here, owned by it, so that a fresh named volume
# mounted there starts out owned by it too.
RUN groupadd --system --gid 10001 taskd \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin taskd \
    && mkdir -p /data && chown 10001:10001 /data && chmod 0700 /data
COPY --from=build /out/taskd /usr/local/bin/taskd

# Defaults for a container: the node's files in /data, gRPC on every interface
# (give --advertise host:port: a wildcard address cannot be advertised), the
# metrics/health HTTP port, JSON logs for a log collector.
ENV TASKD_DATA_DIR=/data \
    TASKD_LISTEN=0.0.0.0:50051 \
    TASKD_METRICS_LISTEN=0.0.0.0:9090 \
    TASKD_LOG_FORMAT=json
VOLUME ["/data"]
# 50051: gRPC (TaskService and the peers' RaftService); 9090: /metrics, /healthz, /readyz.
EXPOSE 50051 9090
USER 10001:10001

# gRPC health through taskd's own CLI, so no probe binary is needed. It succeeds
# once the node is SERVING (it knows a leader and has caught up). With TLS set
# TASKD_CACERT (and TASKD_CERT/TASKD_KEY if client certificates are required)
# in the container's environment; the CLI reads them, so this line stays as is.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["taskd", "cluster", "health", "--endpoints", "127.0.0.1:50051", "--timeout", "3"]

ENTRYPOINT ["taskd"]
