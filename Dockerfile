# Multi-stage build: compile herald with the full toolchain, ship only the binary and its
# default configuration on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock
# change, not on every edit under src/. Cargo reads every target the workspace declares, so each
# gets an empty stand-in: the library, the server binary, the fan-out bench and the load
# generator (a workspace member; only its manifest is needed, and only herald is built).
COPY Cargo.toml Cargo.lock ./
COPY loadgen/Cargo.toml loadgen/Cargo.toml
RUN mkdir -p src benches loadgen/src \
    && touch src/lib.rs \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > benches/fanout.rs \
    && echo 'fn main() {}' > loadgen/src/main.rs \
    && cargo build --release --locked -p herald --bin herald \
    && rm -rf src

# herald itself. The sources keep the timestamps they had in the build context, which may be
# older than the stand-ins' build: touching them makes cargo rebuild herald instead of keeping
# the empty stand-in binary. (benches/fanout.rs stays a stand-in; the image does not need it.)
COPY src src
COPY migrations migrations
COPY config config
# The browser client's files, compiled into the binary (include_str!).
COPY web web
RUN touch src/lib.rs src/main.rs \
    && cargo build --release --locked -p herald --bin herald

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /app herald
WORKDIR /app
COPY --from=build /src/target/release/herald /usr/local/bin/herald
COPY config config
USER herald
ENV HERALD__HTTP__BIND=0.0.0.0:8080 RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
CMD ["herald"]
