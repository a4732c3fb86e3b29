# syntax=docker/dockerfile:1
# Release images of the reference system, one per service from the same stages:
#   docker build --build-arg SERVICE=user-service --build-arg PORT=5001 \
#     -t resilience/user-service:0.1.0 .
#   (order-service 5002, dashboard 8080; deploy/compose.yaml builds all three)
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
# Each service reads only its own address variable; all three listen beyond loopback here.
ENV LOG_FORMAT=json \
    USER_SERVICE_ADDR=0.0.0.0:5001 \
    ORDER_SERVICE_ADDR=0.0.0.0:5002 \
    DASHBOARD_ADDR=0.0.0.0:8080
STOPSIGNAL SIGTERM

# The service image: SERVICE is user-service, order-service or dashboard, PORT its port.
FROM runtime AS service
ARG SERVICE
ARG PORT
COPY --from=build /out/${SERVICE} /usr/local/bin/service
ENV HEALTH_PORT=${PORT}
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${HEALTH_PORT}/health/live" || exit 1
ENTRYPOINT ["/usr/local/bin/service"]
