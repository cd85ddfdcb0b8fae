//! One call's media: a WebRTC peer connection carrying one Opus track, and
//! the audio pipeline around it.
//!
//! ```text
//! source (20 ms, 48 kHz mono) → [mute] → Opus (VOIP, 32 kbit/s, FEC, DTX) → RTP → DTLS-SRTP
//! RTP → jitter buffer → Opus decode (FEC from next packet, PLC on gaps) → sink (20 ms clock)
//! ```
//!
//! The engine sees a call's media only through [`MediaSession`] (SDP
//! offer/answer, trickle ICE, hold, mute, DTMF, audio devices, close), made
//! by a [`MediaFactory`]; [`webrtc::WebRtcFactory`] is the real one
//! (webrtc-rs 0.17.2). Inside it, three units with their own tests:
//! [`send::SendPipeline`] (encode, packetize, RFC 4733 events),
//! [`playout::PlayoutPipeline`] (decode, FEC, PLC) and [`stats::StatsMeter`].
//!
//! SDP offer/answer follows RFC 3264 (hold by re-offer with `sendonly`;
//! the held side answers `recvonly`; neither side sends audio while held).
//! ICE candidates trickle (RFC 8838) through [`MediaEvent::LocalCandidate`].

use std::sync::Arc;

use softphone_audio::{Sink, Source};
use softphone_protocol::{IceCandidate, IceServer};
use tokio::sync::mpsc;

use crate::EngineError;

pub mod playout;
pub mod send;
pub mod stats;
pub mod webrtc;

pub use stats::{CandidateKind, MediaStats};

/// Audio devices for one call.
pub struct CallAudio {
    /// Microphone (or file, or generator).
    pub source: Box<dyn Source>,
    /// Speaker (or file).
    pub sink: Box<dyn Sink>,
}

/// What a session tells the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A local ICE candidate to trickle (`None`: gathering complete).
    LocalCandidate(Option<IceCandidate>),
    /// ICE + DTLS connected.
    Connected,
    /// The connection failed (ICE or DTLS): the call cannot go on.
    Failed(String),
    /// The first audio frame was decoded.
    FirstAudio,
    /// Periodic statistics (every 2 s).
    Stats(MediaStats),
    /// A DTMF digit arrived (RFC 4733), once per key press.
    Dtmf(char),
    /// An audio device failed mid-call and was replaced by the default one
    /// (or by silence / a discard sink when there is none); the call goes on.
    AudioDeviceLost {
        /// `true` for the input (microphone), `false` for the output.
        input: bool,
        /// What took its place.
        replacement: String,
    },
}

/// Options of the media layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaOptions {
    /// Gather only loopback (127.0.0.1) ICE candidates: for tests and
    /// benchmarks, so that media never leaves the machine's loopback.
    pub loopback_only: bool,
    /// Use only relayed ICE candidates (`RTCIceTransportPolicy::Relay`,
    /// W3C WebRTC §4.2.1): media always goes through the TURN server of
    /// `welcome.ice_servers`, which hides the endpoint's addresses and is
    /// how a relay path is tested. Without a `turn:` server (UDP: webrtc-ice
    /// 0.17.2 gathers no TCP or TLS relay) the call cannot connect.
    pub relay_only: bool,
}

/// The media side of one call, independent of the WebRTC library.
///
/// The engine calls the async methods of one session one at a time, in
/// order, from that call's own worker task; the sync ones from anywhere.
#[async_trait::async_trait]
pub trait MediaSession: Send + Sync {
    /// Creates and applies a local SDP offer; returns it.
    async fn create_offer(&self) -> Result<String, EngineError>;
    /// Applies a remote offer (first offer or re-offer) and returns the
    /// local answer.
    async fn accept_offer(&self, sdp: &str) -> Result<String, EngineError>;
    /// Applies the remote answer to our offer.
    async fn set_answer(&self, sdp: &str) -> Result<(), EngineError>;
    /// Adds a trickled remote candidate (`None`: end of candidates).
    async fn add_candidate(&self, c: Option<IceCandidate>) -> Result<(), EngineError>;
    /// Holds (`true`) or resumes (`false`) from this side: returns the
    /// re-offer to send.
    async fn set_local_hold(&self, hold: bool) -> Result<String, EngineError>;
    /// The far end holds (`true`) or resumes (`false`): stop or restart
    /// sending.
    fn set_remote_hold(&self, hold: bool);
    /// Mutes the microphone: the far end hears digital silence.
    fn set_mute(&self, mute: bool);
    /// Queues DTMF digits (`0-9 * # A-D`) to send as RFC 4733 events, 100 ms
    /// each with 60 ms gaps.
    ///
    /// # Errors
    /// [`EngineError::InvalidState`] for a character that is not a digit, or
    /// when the far end did not accept telephone-events.
    fn send_dtmf(&self, digits: &str) -> Result<(), EngineError>;
    /// Switches the input mid-call (takes effect within 20 ms).
    fn set_source(&self, source: Box<dyn Source>);
    /// Switches the output mid-call (takes effect within 20 ms).
    fn set_sink(&self, sink: Box<dyn Sink>);
    /// Closes the connection and stops the pipeline.
    async fn close(&self);
}

/// Makes the [`MediaSession`] of a call.
#[async_trait::async_trait]
pub trait MediaFactory: Send + Sync {
    /// A new session using `ice_servers`, playing `audio`, reporting on
    /// `events`.
    ///
    /// # Errors
    /// [`EngineError::Media`] when the WebRTC stack or the codec refuse.
    async fn create(
        &self,
        ice_servers: &[IceServer],
        audio: CallAudio,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Arc<dyn MediaSession>, EngineError>;
}
