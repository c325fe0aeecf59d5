# fleetstorm in a container, for running shards on Kubernetes
# (deploy/kubernetes). Multi-stage: built with the Rust toolchain image,
# run on a slim Debian with only CA certificates added (~80 MB).
#   docker build -t fleetstorm:latest .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fleetstorm \
 && strip target/release/fleetstorm

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/fleetstorm /usr/local/bin/fleetstorm
# Not root: fleetstorm needs no privileges (the open-file limit comes from
# the container runtime).
USER 65532:65532
ENTRYPOINT ["fleetstorm"]
CMD ["--help"]
