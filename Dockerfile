# One image, two binaries: `producer` (default CMD) and `consumer`.
# Pick one with the container command, e.g. `docker run <image> consumer`
# or `command: consumer` in docker-compose.yml. There is no ENTRYPOINT, so a
# command override simply replaces CMD.
#
# Needs BuildKit (the default builder since Docker 23 / in Compose v2) for the
# cache mounts below. BuildKit's built-in Dockerfile frontend supports them,
# so there is deliberately no `# syntax=` line: that line makes every build
# pull a frontend image first, which fails without a registry (air-gapped or
# mirrored setups).
#
# Base images are pinned to a minor version (rust 1.95, Debian 12 "bookworm");
# the builder and runtime must share the Debian release, since the binaries
# link the system's libpq and glibc.

############################################################################
# Builder
############################################################################
FROM rust:1.95-bookworm AS builder

# diesel's `postgres` feature links libpq (pq-sys finds it through pkg-config,
# falling back to pg_config). rust:1-bookworm already ships both through
# buildpack-deps; installing them here keeps the build working if that changes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# migrations/ is embedded at compile time by shared (embed_migrations!).
COPY Cargo.toml Cargo.lock diesel.toml ./
COPY shared/ shared/
COPY producer/ producer/
COPY consumer/ consumer/
COPY migrations/ migrations/
# e2e and bench are workspace members the image does not build, but cargo
# refuses to load the workspace without them: their manifests and an empty
# library each are enough, and editing a test or the load generator then
# leaves the image's build cache alone.
COPY e2e/Cargo.toml e2e/
COPY bench/Cargo.toml bench/
RUN mkdir -p e2e/src bench/src && touch e2e/src/lib.rs bench/src/lib.rs

# Registry/git downloads and the target directory live in cache mounts, so a
# source change recompiles only the workspace crates, not every dependency.
# A cache mount is not part of the image: copy the binaries out of it.
#
# The `touch` forces `shared` to recompile: embed_migrations! only tracks the
# migration files that existed at the last compile, so a newly added
# migration directory would otherwise leave the cached `shared` looking fresh
# and the image would ship without it. This step only runs when some COPY
# above changed; the cost is recompiling the workspace crates, never the
# dependencies.
RUN --mount=type=cache,id=pipeline-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=pipeline-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=pipeline-target,target=/app/target,sharing=locked \
    touch shared/src/lib.rs \
    && cargo build --release --locked -p producer -p consumer \
    && mkdir -p /out \
    && cp target/release/producer target/release/consumer /out/

############################################################################
# Runtime
############################################################################
FROM debian:bookworm-slim AS runtime

# libpq5: the PostgreSQL client library the binaries link against.
# ca-certificates: trust roots for any TLS connection (e.g. libpq sslmode=verify-full).
# No curl: the producer's compose healthcheck uses bash's /dev/tcp instead.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid pipeline \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin pipeline

COPY --from=builder /out/producer /out/consumer /usr/local/bin/

# Numeric so that runtimes enforcing runAsNonRoot can verify it.
USER 10001:10001

# The binaries listen on loopback by default (BIND_ADDR=127.0.0.1:8080,
# METRICS_ADDR=127.0.0.1:9090), which inside a container no one could reach;
# the container's own network is private, so here they listen on every
# interface of it, and only what is published (compose: on 127.0.0.1) is
# reachable. Without API_TOKEN the producer still answers its API only to
# requests addressed to localhost (docs/security.md).
ENV BIND_ADDR=0.0.0.0:8080 METRICS_ADDR=0.0.0.0:9090
EXPOSE 8080 9090

# Both binaries shut down gracefully on SIGTERM (the consumer drains for up to
# SHUTDOWN_TIMEOUT_MS). No HEALTHCHECK here: the image is shared by both
# binaries, which serve their probes on different ports; see docker-compose.yml.
STOPSIGNAL SIGTERM
CMD ["producer"]
