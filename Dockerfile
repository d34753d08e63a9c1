# syntax=docker/dockerfile:1
# One image, every role by subcommand: `switchyard ingest`, `switchyard router`,
# `switchyard run`. Build: docker build -t switchyard:0.1.0 .

FROM rust:1.95-bookworm AS build
# librdkafka is built from source by rdkafka-sys (cmake-free build: gcc, make, zlib), with
# OpenSSL for Kafka over TLS built from source too (perl, in this image) and linked statically.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache the registry and target between builds when BuildKit is on.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
 && install -D -m 0755 target/release/switchyard /out/switchyard

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 switchyard \
 && useradd --system --uid 10001 --gid switchyard --no-create-home --shell /usr/sbin/nologin switchyard
COPY --from=build /out/switchyard /usr/local/bin/switchyard
USER 10001:10001
# Collection API and the ops port (metrics, probes, /actors).
EXPOSE 8080 9464
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml \
    SWITCHYARD_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run"]
