//! `Event::from_json` on arbitrary text (invalid UTF-8 converted lossily): never
//! panics; a rejection carries a listed reason; an accepted event holds every promise
//! of validation and survives the JSON and protobuf round trips unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::detect::event::{Event, Limits};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let limits = Limits::default();
    match Event::from_json(&text, &limits) {
        Ok(event) => {
            pairwatch_fuzz::check_valid(&event, &limits);
            pairwatch_fuzz::check_round_trips(&event, &limits);
        }
        Err(err) => pairwatch_fuzz::check_rejection(&err),
    }
});
