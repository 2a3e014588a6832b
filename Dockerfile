# syntax=docker/dockerfile:1
# One image for every binary of the workspace; docker-compose and Kubernetes pick the
# binary with `command`. Not built on the project's machines (no Docker engine there).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/pb-control target/release/pb-session target/release/pb-channel-group \
       target/release/pb-cti-sim target/release/pb-bridge /out/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pb
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV PB_LOG_FORMAT=json
CMD ["pb-control"]
