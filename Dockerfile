# pairwatch: multi-stage build. The builder compiles the release binary (librdkafka is
# built from source by the rdkafka crate: it needs make, a C toolchain, OpenSSL headers);
# the runtime image holds the binary, the rule pack and nothing else that runs as root.
FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY rules rules
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin pairwatch \
 && strip target/release/pairwatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/pairwatch --create-home pairwatch
COPY --from=builder /src/target/release/pairwatch /usr/local/bin/pairwatch
COPY rules /etc/pairwatch/rules
USER 10001:10001
WORKDIR /var/lib/pairwatch
# Configuration is environment variables (PAIRWATCH__SECTION__KEY); see the README.
ENV PAIRWATCH__SERVER__GRPC_ADDR=0.0.0.0:50051 \
    PAIRWATCH__SERVER__HTTP_ADDR=0.0.0.0:9464 \
    PAIRWATCH__SERVER__DATA_DIR=/var/lib/pairwatch/data \
    PAIRWATCH__LOG__FORMAT=json
VOLUME ["/var/lib/pairwatch/data"]
EXPOSE 50051 9464
# Ready once the state is restored (or the Kafka stages run); no curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/pairwatch"]
CMD ["serve"]
