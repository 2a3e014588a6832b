# One image, pb-client, for every binary of the workspace: pb-control, pb-session,
# pb-channel-group, pb-cti-sim, pb-gateway and pb-bridge, in /usr/local/bin. docker-compose
# and Kubernetes pick the binary with `command`.
#
#   With a registry (BuildKit; the last stage, `runtime`, is the default target):
#     docker build -t pb-client:dev .
#   Offline, from release binaries built on the host (what scripts/containers does: the
#   stage `prebuilt`, on a base made from this machine's Debian packages):
#     docker build --target prebuilt --build-arg RUNTIME_BASE=pb-runtime-base:bookworm \
#       -f Dockerfile -t pb-client:dev target/containers/pb-client
#
# Both targets share the stage `base`; they differ only in where the binaries come from.
# `prebuilt` comes before `build` so that Docker's legacy builder (no BuildKit) stops at it
# without pulling the Rust image.

# distroless/cc-debian12 is Debian bookworm, like the build stage, so glibc matches.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12
ARG RUST_IMAGE=rust:1.95-slim-bookworm

# ---- base: glibc and CA certificates, no shell, no package manager ------------------------
FROM ${RUNTIME_BASE} AS base
# A fixed non-root uid/gid (no passwd entry needed); Kubernetes runs it read-only.
USER 10001:10001
ENV PB_LOG_FORMAT=json \
    PB_HTTP_ADDR=0.0.0.0:8080
# GET /livez, /readyz, /metrics on every service (not pb-bridge, which is a CLI).
EXPOSE 8080
CMD ["pb-control"]

# ---- prebuilt: the binaries of `cargo build --release`, staged in the context's bin/ -------
FROM base AS prebuilt
COPY bin/ /usr/local/bin/

# ---- build: release binaries -------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Only what the build reads (.dockerignore keeps the rest out of the context).
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY services services
# The cargo registry and the target directory are BuildKit caches: a rebuild after a code
# change recompiles only the workspace crates. Binaries are copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir /out \
 && for bin in pb-control pb-session pb-channel-group pb-cti-sim pb-gateway pb-bridge pb-ops; do \
      cp "target/release/$bin" /out/; \
    done

# ---- runtime: the default target -----------------------------------------------------------
FROM base AS runtime
COPY --from=build /out/ /usr/local/bin/
