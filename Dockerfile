# The tapwire agent image. Not built in this project's CI (no container engine there); the
# chart's default image points at this recipe's output.
#   docker build -t ghcr.io/tapwire/tapwire:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap-dev pkg-config zlib1g-dev libssl-dev \
      clang libelf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tapwire-agent \
 && install -m 0755 target/release/tapwire /usr/local/bin/tapwire

FROM debian:bookworm-slim
# Runtime libraries only: libpcap (capture filters), libssl and zlib (librdkafka), libelf
# (libbpf, for the TLS plaintext source), CA roots (OTLP and Kafka over TLS); libcap2-bin for
# setcap, removed after use.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 libssl3 zlib1g libelf1 ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/tapwire /usr/local/bin/tapwire
# File capabilities, so a non-root uid can capture when the pod allows privilege escalation
# (see the chart's securityContext); as root they change nothing.
RUN setcap cap_net_raw+ep /usr/local/bin/tapwire \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && useradd --system --uid 65532 --no-create-home tapwire \
 && mkdir -p /var/lib/tapwire/spool && chown 65532 /var/lib/tapwire/spool
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/tapwire"]
CMD ["run"]
