//! APNs answers that are not 200: any status and body (Apple's JSON reasons, truncated or
//! foreign bodies) through the classifier that decides final, retry or token expired.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    pushpark::apns::fuzz_classify(status, body);
});
