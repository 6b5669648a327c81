//! Docs versus code: the docs cannot drift from what the binaries do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod codes;
mod container;
mod reference;
mod runbooks;
