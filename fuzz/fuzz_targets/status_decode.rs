//! Status events built from a valid template with extensions removed or retyped, the type
//! changed and the data replaced, through `codec::decode_status`: what it accepts has an
//! int32-range version, a non-empty resource id and a snowflake sequence id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_api::{codec, snowflake};
use maestro_fuzz::EventIn;

fuzz_target!(|input: EventIn| {
    let ev = EventIn { status: true, ..input }.build();
    if let Ok(st) = codec::decode_status(&ev) {
        assert!(i32::try_from(st.resource_version).is_ok());
        assert!(!st.resource_id.is_empty());
        assert!(snowflake::parse(&st.sequence_id).is_ok());
    }
    let _ = codec::decode_spec(&ev);
});
