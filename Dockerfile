# syntax=docker/dockerfile:1
# The Order Platform image: one binary, every subcommand (serve, command-service, relay,
# query-service, gateway, token, migrate, rebuild). The subcommand is the container's
# argument; settings come from ORDER_PLATFORM_* variables (see `order-platform <cmd> --help`).
#
#   docker build -t order-platform:0.1.0 .
#   docker run --rm -p 8080:8080 order-platform:0.1.0                 # serve (embedded mode)
#   docker run --rm order-platform:0.1.0 relay --help
#
# Checked without a Docker engine by dev/deploy_check (hadolint plus the project's rules).

# Builder and runtime stages use the same Debian release (bookworm), so the librdkafka the
# binary was linked against is the one the runtime stage installs.
FROM rust:1.95.0-bookworm AS build

# rdkafka links the system librdkafka dynamically, found with pkg-config (dev/build-deps
# installs the same two packages on a development machine).
RUN apt-get update \
    && apt-get install -y --no-install-recommends librdkafka-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and the target dir between builds (BuildKit);
# the binary is copied out of the cached target dir, which the next stage cannot see.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p order-platform --bin order-platform \
    && install -D -m 0755 target/release/order-platform /out/order-platform

FROM debian:bookworm-slim AS runtime

# Only what the binary loads at run time: librdkafka, and the system CA certificates its
# OpenSSL would read for TLS to Kafka (no setting turns that on yet). The HTTP clients carry
# their own roots (webpki-roots): a server behind a private CA is not trusted through this store.
# A fixed uid, so Kubernetes can check runAsNonRoot against the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends librdkafka1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home \
        --home-dir /var/lib/order-platform --shell /usr/sbin/nologin order-platform

COPY --from=build /out/order-platform /usr/local/bin/order-platform

USER 10001:10001
# `serve` keeps its SQLite files and signing key in ./data: a folder this user owns.
WORKDIR /var/lib/order-platform

# Every server subcommand listens on --listen (ORDER_PLATFORM_LISTEN), whose defaults are
# loopback addresses: in a container they must be every interface.
ENV ORDER_PLATFORM_LISTEN=0.0.0.0:8080
EXPOSE 8080

# The image has no curl: bash's /dev/tcp asks /health/live on the port of ORDER_PLATFORM_LISTEN.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>\"/dev/tcp/127.0.0.1/${ORDER_PLATFORM_LISTEN##*:}\" && printf 'GET /health/live HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]

ENTRYPOINT ["/usr/local/bin/order-platform"]
CMD ["serve"]
