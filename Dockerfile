# Multi-stage build of a small, non-root image.
#   docker build -t creator-boost .
#   docker run -p 50051:50051 -v cb-data:/var/lib/creator-boost/data \
#     -v "$PWD/token:/run/secrets/creator-boost-token:ro" \
#     -e CREATOR_BOOST_WRITE_TOKEN_FILE=/run/secrets/creator-boost-token creator-boost
# It listens on 0.0.0.0, so it refuses to start (exit 64) with open writes:
# give a write token (above), mutual TLS (CREATOR_BOOST_TLS_CERT/_KEY/_CLIENT_CA),
# or, on a private network, -e CREATOR_BOOST_ALLOW_OPEN_WRITES=true.
# The proto is compiled by protox (pure Rust): no protoc in the image.

# 1. cargo-chef: build dependencies in their own layer, so a source change
#    does not rebuild them.
FROM rust:1.90-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin creator-boost \
 && ./target/release/creator-boost --version

# 2. Runtime: Debian slim, a system user, the binary and the example config.
FROM debian:bookworm-slim AS runtime
RUN useradd --system --uid 10001 --home-dir /var/lib/creator-boost --create-home creator-boost \
 && mkdir -p /var/lib/creator-boost/data /etc/creator-boost \
 && chown -R creator-boost:creator-boost /var/lib/creator-boost
COPY --from=builder /app/target/release/creator-boost /usr/local/bin/creator-boost
COPY config/creator-boost.toml /etc/creator-boost/creator-boost.toml
# Smoke test: the binary runs in the runtime image (libc and all).
RUN creator-boost --version
USER creator-boost
WORKDIR /var/lib/creator-boost
ENV CREATOR_BOOST_LISTEN=0.0.0.0:50051 \
    CREATOR_BOOST_DATA_DIR=/var/lib/creator-boost/data \
    CREATOR_BOOST_LOG_FORMAT=json
EXPOSE 50051
VOLUME ["/var/lib/creator-boost/data"]
# Uses the gRPC health service of the running server (grpc.health.v1.Health/Check).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["creator-boost", "health", "--server", "http://127.0.0.1:50051"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["creator-boost"]
CMD ["serve"]
