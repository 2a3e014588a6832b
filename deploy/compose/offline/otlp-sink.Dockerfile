# pb-otlp-sink: an OTLP/HTTP trace receiver with a subset of Jaeger's query API
# (crates/pb-testkit, `pb-otlp-sink`), standing in for jaegertracing/jaeger, which cannot be
# pulled here. It listens where Jaeger does (OTLP 4318, queries 16686, health 13133) and has
# busybox's wget for the same health check. Built by scripts/containers on the project's
# runtime base.
ARG RUNTIME_BASE=pb-runtime-base:bookworm
FROM ${RUNTIME_BASE}
COPY pb-otlp-sink /usr/local/bin/pb-otlp-sink
COPY busybox /bin/wget
ENV PATH=/usr/local/bin:/bin
USER 10001:10001
EXPOSE 4318 13133 16686
CMD ["pb-otlp-sink"]
