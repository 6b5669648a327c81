# One image with the three binaries: signer-node, coordinator and devnet (setup helper).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin signer-node --bin coordinator --bin devnet

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 custody
COPY --from=build /src/target/release/signer-node /src/target/release/coordinator /src/target/release/devnet /usr/local/bin/
USER custody
