//! The switchboard's frame parser on any text a client can send.
//!
//! A WebSocket text frame is UTF-8 (RFC 6455 §5.6), so only UTF-8 inputs
//! are passed on. Beyond "never panics": a frame that parses, written out
//! again, parses to the same frame (what the engine sends is what the
//! switchboard reads).
#![no_main]

use libfuzzer_sys::fuzz_target;
use softphone_protocol::parse_client_frame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(frame) = parse_client_frame(text) {
        let again = serde_json::to_string(&frame).expect("a parsed frame serialises");
        let reparsed = parse_client_frame(&again)
            .unwrap_or_else(|e| panic!("re-parsing {again} failed: {e:?} (from {text})"));
        assert_eq!(frame, reparsed, "round trip changed the frame: {again}");
    }
});
