//! A client reading server frames: `serde_json::from_str::<ServerMessage>`
//! on any text, as the engine and the browser peer do with what the
//! switchboard sends. Beyond "never panics": a message that parses, written
//! out again (`ServerMessage::to_json`, as the switchboard does), parses to
//! the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softphone_protocol::ServerMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = serde_json::from_str::<ServerMessage>(text) {
        let again = msg.to_json();
        let reparsed: ServerMessage = serde_json::from_str(&again)
            .unwrap_or_else(|e| panic!("re-parsing {again} failed: {e} (from {text})"));
        assert_eq!(msg, reparsed, "round trip changed the message: {again}");
    }
});
