# One image with every binary users run: signer-node, coordinator, policy (the officers' and
# approvers' tool) and devnet (docker-compose.yml's setup step). It runs as uid 10001, never root.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin signer-node --bin coordinator --bin policy --bin devnet

FROM debian:bookworm-slim
# The data directory exists and belongs to the user before `USER`: Docker copies an image
# directory's ownership into an empty named volume mounted on it, so the volume is writable.
RUN groupadd --system --gid 10001 custody \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin custody \
 && mkdir -p /devnet \
 && chown 10001:10001 /devnet \
 && chmod 0700 /devnet
COPY --from=build /src/target/release/signer-node /src/target/release/coordinator /src/target/release/policy /src/target/release/devnet /usr/local/bin/
# Executable in git; COPY keeps the mode.
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh
ENV CUSTODY_DATA_DIR=/devnet
WORKDIR /devnet
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["devnet", "--help"]
