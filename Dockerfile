# syntax=docker/dockerfile:1
# One image, pb-client, for every binary of the workspace: pb-control, pb-session,
# pb-channel-group, pb-cti-sim, pb-gateway and pb-bridge, in /usr/local/bin. docker-compose
# and Kubernetes pick the binary with `command`.
#
#   docker build -t pb-client:dev .
#
# Not built on the project's machines (no Docker engine there); see deploy/README.md.

# ---- build: release binaries -------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
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
 && for bin in pb-control pb-session pb-channel-group pb-cti-sim pb-gateway pb-bridge; do \
      cp "target/release/$bin" /out/; \
    done

# ---- runtime: glibc and CA certificates, no shell, no package manager -----------------------
# distroless/cc-debian12 is Debian bookworm, like the build stage, so glibc matches.
FROM gcr.io/distroless/cc-debian12 AS runtime
COPY --from=build /out/ /usr/local/bin/
# A fixed non-root uid/gid (no passwd entry needed); Kubernetes runs it read-only.
USER 10001:10001
ENV PB_LOG_FORMAT=json \
    PB_HTTP_ADDR=0.0.0.0:8080
# GET /livez, /readyz, /metrics on every service (not pb-bridge, which is a CLI).
EXPOSE 8080
CMD ["pb-control"]
