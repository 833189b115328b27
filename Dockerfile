# syntax=docker/dockerfile:1
#
# The Maestro container image: `maestro` (server, agent, migrate, pubsub init, ...) as the
# entry point, and `maestro-cli` beside it, both built with `cargo build --release --locked`.
# Used by deploy/kubernetes as quay.io/maestro-rs/maestro. Build from the repository root:
#
#   docker build -t quay.io/maestro-rs/maestro:latest .
#
# Stages: `chef` installs cargo-chef; `planner` computes the dependency recipe from the
# manifests; `builder` compiles the dependencies from the recipe alone (a cached layer as
# long as Cargo.toml/Cargo.lock do not change), then the workspace; the runtime stage is
# distroless (glibc, CA certificates, no shell) running as the non-root user 65532.
# Size target: under 40 MB compressed (see deploy/README.md).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# No debug information and stripped symbols in the image's binaries (the workspace's release
# profile keeps line tables for local profiling); the profile is otherwise unchanged.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked -p maestro -p maestro-cli --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p maestro -p maestro-cli --bin maestro --bin maestro-cli

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="maestro" \
      org.opencontainers.image.description="Maestro in Rust: carries Kubernetes resources from a central server to agents on many clusters as CloudEvents" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /src/target/release/maestro /usr/local/bin/maestro
COPY --from=builder /src/target/release/maestro-cli /usr/local/bin/maestro-cli
# distroless's `nonroot` user; deploy/kubernetes runs the pods as this uid and gid.
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/maestro"]
CMD ["--help"]
