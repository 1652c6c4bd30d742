# The service image: one runtime stage (Debian slim, a system user, the
# binary stripped of debug info, the example config), fed by one of two
# binary stages chosen with the BINARY build argument:
#   source (default)  built here from source (needs the rust image)
#   host              the release binary built on the host, which
#                     deploy/image/build.sh strips into target/image/
# BuildKit and buildah (podman) build only the stages the image needs, so
# BINARY=host never touches the rust image; the legacy docker builder
# builds every stage and cannot do that. docs/container.md has both ways.
#   deploy/image/build.sh            # creator-boost:local, either way
#   docker build -t creator-boost .  # from source
#   docker run -p 50051:50051 -v cb-data:/var/lib/creator-boost/data \
#     -v "$PWD/token:/run/secrets/creator-boost-token:ro" \
#     -e CREATOR_BOOST_WRITE_TOKEN_FILE=/run/secrets/creator-boost-token creator-boost
# It listens on 0.0.0.0, so it refuses to start (exit 64) with open writes:
# give a write token (above), mutual TLS (CREATOR_BOOST_TLS_CERT/_KEY/_CLIENT_CA),
# or, on a private network, -e CREATOR_BOOST_ALLOW_OPEN_WRITES=true.
# The root filesystem can be read-only: the data is on the volume and the
# server writes nothing else (run with --read-only --tmpfs /tmp).
# The proto is compiled by protox (pure Rust): no protoc in the image.

ARG BINARY=source

# 1. From source. cargo-chef: dependencies in their own layer, so a source
#    change does not rebuild them.
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
# The release profile keeps line tables for profiling on a workstation;
# the image does without them (104 MB -> 21 MB), symbols stay for backtraces.
RUN cargo build --release --locked --bin creator-boost \
 && mkdir /out \
 && strip --strip-debug -o /out/creator-boost target/release/creator-boost

FROM builder AS binary-source

# 2. From the host: deploy/image/build.sh runs the same cargo build and
#    strip on the host and leaves the result here.
FROM scratch AS binary-host
COPY target/image/creator-boost /out/creator-boost

FROM binary-${BINARY} AS binary

# 3. Runtime: the one stage both ways share.
FROM debian:bookworm-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="creator-boost" \
      org.opencontainers.image.description="gRPC scoring service: traffic boosts weighted by creators' private-domain value" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/creator-boost \
      --no-create-home --shell /usr/sbin/nologin creator-boost \
 && mkdir -p /var/lib/creator-boost/data /etc/creator-boost \
 && chown -R creator-boost:creator-boost /var/lib/creator-boost
COPY --from=binary /out/creator-boost /usr/local/bin/creator-boost
COPY config/creator-boost.toml /etc/creator-boost/creator-boost.toml
# The binary runs in the runtime base (libc and all).
RUN ["creator-boost", "--version"]
USER creator-boost
WORKDIR /var/lib/creator-boost
ENV CREATOR_BOOST_LISTEN=0.0.0.0:50051 \
    CREATOR_BOOST_DATA_DIR=/var/lib/creator-boost/data \
    CREATOR_BOOST_LOG_FORMAT=json
EXPOSE 50051
VOLUME ["/var/lib/creator-boost/data"]
# The gRPC health service of the running server (grpc.health.v1.Health/Check).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["creator-boost", "health", "--server", "http://127.0.0.1:50051"]
# SIGTERM drains in-flight calls for up to shutdown_grace_ms (10 s by
# default), then exits 0: give `docker stop -t` / the orchestrator more.
STOPSIGNAL SIGTERM
ENTRYPOINT ["creator-boost"]
CMD ["serve"]
