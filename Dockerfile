# syntax=docker/dockerfile:1
#
# ginx container image. NOTE: written without a Docker engine at hand (none
# on the machine this was written on), so this file has not been built;
# build and run it once before relying on it:
#
#   docker build -t ginx .
#   docker run --rm -p 8080:8080 -p 9901:9901 ginx
#   docker run --rm -v "$PWD/etc-ginx:/etc/ginx:ro" -p 8080:8080 ginx   # your config
#
# Mount the configuration DIRECTORY, never the single file: a single-file
# bind mount keeps its inode, so edits on the host are never seen.

# --- build ---
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts (BuildKit) keep the registry and compiled dependencies between
# builds without the dummy-main.rs trick. The binary is copied out because
# the cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/ginx /out/ginx

# --- run ---
FROM debian:bookworm-slim
# CA certificates for upstreams reached over TLS (rustls-native-certs reads
# the system store).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed, numeric, unprivileged user, so Kubernetes' runAsNonRoot can verify
# it (deploy/kubernetes/deployment.yaml uses the same id).
RUN groupadd --system --gid 10001 ginx \
 && useradd --system --uid 10001 --gid ginx --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ginx
COPY --from=build /out/ginx /usr/local/bin/ginx
# The configuration directory: ginx.toml plus conf.d/. Owned by root and
# read-only to ginx, which never writes its configuration.
COPY deploy/docker/ginx.toml /etc/ginx/ginx.toml
RUN mkdir -p /etc/ginx/conf.d
USER 10001:10001
WORKDIR /etc/ginx
# 8080: the listener of the default configuration; 9901: the admin endpoint
# (/ready, /live, /metrics). Ports below 1024 would need
# CAP_NET_BIND_SERVICE (docker run --cap-add / a securityContext).
EXPOSE 8080 9901
# SIGTERM is ginx's graceful shutdown (shutdown_delay, then draining for up
# to shutdown_timeout). `docker stop` waits 10 s by default before SIGKILL:
# give it more with `docker stop -t 45` or `stop_grace_period: 45s` (compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ginx"]
CMD ["-c", "/etc/ginx/ginx.toml"]
