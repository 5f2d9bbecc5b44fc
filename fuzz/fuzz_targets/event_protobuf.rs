//! A protobuf `ChatEvent` decoded from arbitrary bytes, then `event_from_proto`: never
//! panics; a rejection carries a listed reason; an accepted event holds every promise
//! of validation, converts back to a `ChatEvent` and again to the same event, and
//! prints to JSON that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::detect::event::Limits;
use pairwatch::proto::{event_from_proto, pb};
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = pb::ChatEvent::decode(data) else {
        return;
    };
    let limits = Limits::default();
    match event_from_proto(msg, &limits) {
        Ok(event) => {
            pairwatch_fuzz::check_valid(&event, &limits);
            pairwatch_fuzz::check_round_trips(&event, &limits);
        }
        Err(err) => pairwatch_fuzz::check_rejection(&err),
    }
});
