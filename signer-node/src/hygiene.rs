//! Process hardening for a process that holds key shares: no core dumps (`RLIMIT_CORE` = 0) and
//! not dumpable (`PR_SET_DUMPABLE` = 0, which also stops other unprivileged processes of the same
//! user from attaching with ptrace or reading `/proc/<pid>/mem`).

/// Applies the hardening; an error names the call that failed.
pub fn harden_process() -> Result<(), String> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{setrlimit, Resource};
        setrlimit(Resource::RLIMIT_CORE, 0, 0)
            .map_err(|e| format!("setrlimit(RLIMIT_CORE): {e}"))?;
    }
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn hardening_disables_core_dumps_and_dumpability() {
        super::harden_process().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }
}
