//! Webhook classification: the first byte picks the event, the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paved::intake::classify;

const EVENTS: [&str; 6] = [
    "pull_request",
    "push",
    "pull_request_review",
    "issue_comment",
    "check_run",
    "ping",
];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else {
        return;
    };
    let _ = classify(EVENTS[*first as usize % EVENTS.len()], body);
});
