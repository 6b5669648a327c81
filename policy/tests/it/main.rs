//! The crate's one integration-test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bundle;
mod contracts;
mod example;
mod props;
mod review;
mod typed;
