//! The `policy` binary's integration tests: transcripts pinned by snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod calls;
mod cli;
mod snapshot;
