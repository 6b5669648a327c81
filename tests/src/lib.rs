//! cluster harness
