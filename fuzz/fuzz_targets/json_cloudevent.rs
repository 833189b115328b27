//! Bytes as structured-mode CloudEvent JSON (what the database holds and structured transports
//! carry) through `json::from_slice` and `json::from_str_raw_data`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maestro_api::json;
use maestro_fuzz::exercise;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = json::from_slice(data) {
        exercise(&ev);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok((ev, raw)) = json::from_str_raw_data(text)
    {
        if let Some(raw) = raw {
            let _ = serde_json::from_str::<serde_json::Value>(raw.get());
        }
        exercise(&ev);
    }
});
