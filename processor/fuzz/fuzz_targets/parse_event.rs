//! The event parser, differentially: the fast path, the checked path (scanner, then
//! serde_json) and serde_json alone give the same verdict and the same event for any bytes,
//! and `parse_event` never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stockpulse_processor::event::{parse_event, paths};

fuzz_target!(|bytes: &[u8]| {
    let verdict = parse_event(bytes);
    let checked = paths::checked(bytes);
    let serde = paths::serde(bytes);
    assert_eq!(checked, serde, "scanner and serde_json disagree on {:?}", String::from_utf8_lossy(bytes));
    if let Some(fast) = paths::fast(bytes) {
        assert_eq!(Ok(fast), checked, "fast and checked paths disagree on {:?}", String::from_utf8_lossy(bytes));
    }
    // parse_event adds the size limit and the schema's bounds to the checked verdict.
    if let Ok(event) = &verdict {
        assert_eq!(Ok(event), checked.as_ref(), "{:?}", String::from_utf8_lossy(bytes));
    }
});
