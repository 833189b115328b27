//! Strings through `EventType::parse`: what it accepts prints back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_api::types::EventType;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(t) = EventType::parse(s) {
        assert_eq!(t.to_string(), s);
        let _ = t.is_manifest_bundles();
    }
});
