//! Withdrawal policy engine (see issue 3).
