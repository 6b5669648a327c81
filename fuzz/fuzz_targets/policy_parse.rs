//! Policy files and bundles: any text either parses or is refused with an error, never a panic.
//! What parses round-trips: a policy parses the same twice (same meaning, hash and canonical
//! form) and survives being serialised into a bundle's JSON and parsed back; a bundle
//! re-serialises to JSON that parses to the same bundle, and that JSON is then stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policy::{Bundle, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Policy::from_toml(text, "fuzz.toml") {
        let _ = p.warnings();
        let again = Policy::from_toml(text, "fuzz.toml").expect("a policy parses twice");
        assert_eq!(again, p);
        assert_eq!(again.hash(), p.hash());
        assert_eq!(again.canonical_bytes(), p.canonical_bytes());
        // Serialise the policy into a bundle (JSON) and parse it back: the same policy.
        let bundle = Bundle::new(text.to_string());
        let back = Bundle::from_json(&bundle.to_json()).expect("a written bundle parses");
        assert_eq!(back, bundle);
        let bundled = back
            .policy()
            .expect("a valid policy stays valid in a bundle");
        assert_eq!(bundled, p);
        assert_eq!(bundled.hash(), p.hash());
    }
    if let Ok(b) = Bundle::from_json(text) {
        let json = b.to_json();
        let back = Bundle::from_json(&json).expect("a written bundle parses");
        assert_eq!(back, b, "parse → serialise → parse changed the bundle");
        assert_eq!(back.to_json(), json, "a bundle's JSON is not stable");
        // The policy inside means the same whichever way it is reached.
        match (b.policy(), Policy::from_toml(&b.policy_toml, "fuzz.toml")) {
            (Ok(x), Ok(y)) => assert_eq!((x.hash(), &x), (y.hash(), &y)),
            (Err(_), Err(_)) => {}
            (x, y) => panic!("bundle policy {:?} vs file {:?}", x.is_ok(), y.is_ok()),
        }
    }
});
