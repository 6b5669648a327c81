//! Docs versus code: the docs cannot drift from what the binaries do.

mod container;
mod reference;
mod runbooks;
