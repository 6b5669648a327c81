//! Key lifecycle: share refresh and resharing to a new guardian set or threshold
//! (`docs/lifecycle.md`). So far the redistribution's arithmetic ([`vss`]); the ceremony, the
//! officers' order and epochs are still to come.

pub mod vss;

#[cfg(test)]
mod tests;
