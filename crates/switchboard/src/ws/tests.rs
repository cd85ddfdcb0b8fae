//! The socket layer against real WebSockets.

use std::sync::Arc;

use softphone_protocol::ClientFrame;

use crate::Shared;

/// Frame id that makes the socket task panic while it holds the hub lock:
/// a stand-in for a bug, to show that it ends that socket only.
pub(super) const PANIC_ID: &str = "test:panic-holding-the-hub-lock";

/// Panics, holding the routing lock, on a frame with id [`PANIC_ID`].
pub(super) fn panic_hook(shared: &Arc<Shared>, frame: &ClientFrame) {
    if frame.id.as_deref() == Some(PANIC_ID) {
        let _held = shared.routing();
        panic!("test hook: a bug while the hub lock is held");
    }
}
