# syntax=docker/dockerfile:1

FROM rust:1-bookworm AS builder
WORKDIR /app
# Queries are checked against the committed .sqlx/ metadata; no database at build time.
ENV SQLX_OFFLINE=true
COPY . .
# The registry and target dirs are cache mounts, so dependencies are rebuilt only when
# Cargo.lock changes. The target mount is not part of the image: copy the binary out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target \
    cargo build --release --locked --bin jointeval \
 && cp target/release/jointeval /usr/local/bin/jointeval

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 jointeval \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin jointeval
COPY --from=builder /usr/local/bin/jointeval /usr/local/bin/jointeval
# Numeric, so that orchestrators can verify the user is not root.
USER 10001:10001
WORKDIR /home/jointeval
# Defaults through the environment rather than flags, so that compose or the
# orchestrator can override them the same way.
ENV JOINTEVAL_BIND=0.0.0.0:8080 \
    JOINTEVAL_LOG_FORMAT=json
EXPOSE 8080
# The image has no PostgreSQL binaries: set DATABASE_URL (the private-cluster mode
# used when it is unset cannot work here).
ENTRYPOINT ["jointeval"]
CMD ["serve"]
