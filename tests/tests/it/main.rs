//! Cluster-level integration tests: real coordinator and signer-node processes on loopback.
//!
//! One cluster (3 nodes, one 2-of-3 key from a real DKG + aux-info ceremony) is shared by all
//! tests; tests that stop nodes take the write lock so that others never see them down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod accounts;
mod agreement;
mod backup;
mod bounds;
mod broadcast;
mod btc_psbt;
mod bundles;
mod canary;
mod common;
mod contracts;
mod devnet;
mod durability;
mod erc20;
mod faults;
mod governance;
mod hardening;
mod lifecycle;
mod lifecycle_five;
mod lifecycle_kills;
mod lifecycle_schedule;
mod load;
mod messages;
mod node_startup;
mod presign;
mod relay;
mod replay;
mod requests;
mod review;
mod rollback;
mod rows;
mod signing;
mod transport;
