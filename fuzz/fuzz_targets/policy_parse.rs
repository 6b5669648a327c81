//! Policy files and bundles: any text either parses (and then hashes) or is refused with an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = policy::Policy::from_toml(text, "fuzz.toml") {
        let _ = p.hash();
        let _ = p.warnings();
    }
    if let Ok(b) = policy::Bundle::from_json(text) {
        let _ = b.policy();
    }
});
