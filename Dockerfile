# syntax=docker/dockerfile:1
#
# Image with the `platform` server and the `platformctl` tool. It contains no PostgreSQL, so
# it needs external databases (PLATFORM_DATABASE_URL and PLATFORM_SHARED_DATABASE_URL);
# see docker-compose.yml. Without them the server tries the embedded default and stops with
# "PostgreSQL server binaries ... were not found".

# The builder uses the same Debian release as the runtime image, so the binaries link against
# the glibc the runtime has. The plain `rust:1` tag follows the newest Debian release.
FROM rust:1-bookworm AS builder
# samael (SSO) builds against libxml2/xmlsec1/OpenSSL through bindgen.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev libxmlsec1-dev libxml2-dev libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# Only what the build needs. Copying `.` would also send target/ into the build.
# Every workspace member's manifest has to be present (tests/, bench/ and xtask/ too).
# The migration directories are embedded into the binaries at compile time.
COPY Cargo.toml Cargo.lock ./
COPY tenancy tenancy
COPY identity identity
COPY audit audit
COPY limits limits
COPY sso sso
COPY platform platform
COPY ops ops
COPY tests tests
COPY bench bench
COPY xtask xtask
COPY migrations migrations
COPY tenant-migrations tenant-migrations

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p platform -p ops \
 && install -D -m 0755 -t /out target/release/platform target/release/platformctl

FROM debian:bookworm-slim
# No TLS and no system libraries are needed at run time: connections to PostgreSQL are plain
# TCP (a known gap, see docs/architecture.md).
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/platform --create-home platform
COPY --from=builder /out/platform /out/platformctl /usr/local/bin/
USER platform
WORKDIR /var/lib/platform
# The data dir holds `admin-token` if PLATFORM_ADMIN_TOKEN is not set.
ENV PLATFORM_DATA_DIR=/var/lib/platform \
    PLATFORM_LISTEN=0.0.0.0:8080
EXPOSE 8080
# The server finishes in-flight requests on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/platform"]
