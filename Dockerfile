# syntax=docker/dockerfile:1
#
# authgate in a container: a Rust build stage and a small Debian runtime
# that runs the binary as an unprivileged user, keeps the session store in
# the /data volume, and checks its own health with `authgate healthcheck`.
# See docs/docker.md (this file was written without a Docker engine at
# hand: read it, then build it once before relying on it).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are build caches: a rebuild after a
# source change does not compile every dependency again. The binary is
# copied out in the same step, while the cache is mounted.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/authgate /usr/local/bin/authgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data \
       --shell /usr/sbin/nologin authgate \
    && mkdir -p /data /etc/authgate \
    && chown authgate:authgate /data
COPY --from=build /usr/local/bin/authgate /usr/local/bin/authgate

# The config the image runs with unless one is mounted over it. Every key
# can also be set from the environment: AUTHGATE_SECTION__KEY.
COPY <<"EOF" /etc/authgate/authgate.toml
# authgate in a container. Set at least AUTHGATE_SERVER__PUBLIC_URL and
# AUTHGATE_UPSTREAM__URL (or mount your own file over this one), give the
# session secret as the secret `authgate_session`, and create the users
# file with `docker run ... authgate user add`.

[server]
listen = "0.0.0.0:8080"

[session]
secret_file = "/run/secrets/authgate_session"

[store]
path = "/data/store"

[users]
file = "/data/users.toml"

[metrics]
# Reachable from the container network only when a port is published or
# another container (Prometheus) shares the network.
listen = "0.0.0.0:9959"
EOF

USER authgate
WORKDIR /data
VOLUME /data
EXPOSE 8080 9959
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["authgate", "healthcheck", "--config", "/etc/authgate/authgate.toml"]
ENTRYPOINT ["authgate"]
CMD ["serve", "--config", "/etc/authgate/authgate.toml"]
