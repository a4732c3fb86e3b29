# syntax=docker/dockerfile:1
# Release images of the reference system, one target per service:
#   docker build --target user-service -t resilience/user-service:0.1.0 .
#   (likewise order-service, dashboard; deploy/compose.yaml builds all three)
# Each runs as a non-root user on debian-slim, listens on 0.0.0.0 inside the container (the
# services default to loopback), and has a HEALTHCHECK on /health/live.

# The toolchain: sqlx 0.9 needs Rust 1.94 or newer.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY resilience resilience
COPY examples examples
COPY chaos chaos
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p user-service -p order-service -p dashboard \
 && mkdir -p /out \
 && cp target/release/user-service target/release/order-service target/release/dashboard /out/

FROM debian:bookworm-slim AS runtime
# curl only for the HEALTHCHECK; the services need nothing but glibc (no TLS: plain HTTP).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
 && mkdir -p /app/data && chown app:app /app/data
WORKDIR /app
USER 10001:10001
ENV LOG_FORMAT=json
STOPSIGNAL SIGTERM

FROM runtime AS user-service
COPY --from=build /out/user-service /usr/local/bin/user-service
ENV USER_SERVICE_ADDR=0.0.0.0:5001
EXPOSE 5001
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:5001/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/user-service"]

FROM runtime AS order-service
COPY --from=build /out/order-service /usr/local/bin/order-service
ENV ORDER_SERVICE_ADDR=0.0.0.0:5002
EXPOSE 5002
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:5002/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/order-service"]

FROM runtime AS dashboard
COPY --from=build /out/dashboard /usr/local/bin/dashboard
ENV DASHBOARD_ADDR=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/health/live || exit 1
ENTRYPOINT ["/usr/local/bin/dashboard"]
