//! Spec events built from a valid template with extensions removed or retyped, the type
//! changed and the data replaced, through `codec::decode_spec`: what it accepts has an
//! int32-range version, a non-empty resource id, and a bundle unless it is a deletion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_api::codec;
use maestro_fuzz::EventIn;

fuzz_target!(|input: EventIn| {
    let ev = EventIn { status: false, ..input }.build();
    if let Ok(spec) = codec::decode_spec(&ev) {
        assert!(i32::try_from(spec.resource_version).is_ok());
        assert!(!spec.resource_id.is_empty());
        assert!(spec.deletion.is_some() || spec.bundle.is_some());
    }
    let _ = codec::decode_status(&ev);
});
