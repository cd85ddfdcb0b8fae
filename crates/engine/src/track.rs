//! Our local audio track: like webrtc-rs's `TrackLocalStaticRTP`, but it
//! keeps the negotiated payload types of both Opus and telephone-event
//! (RFC 4733), so one RTP stream (one SSRC) carries voice and DTMF.

use std::any::Any;
use std::sync::Mutex;

use bytes::Bytes;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::track::track_local::{TrackLocal, TrackLocalContext, TrackLocalWriter};

/// MIME type of RFC 4733 events.
pub const MIME_TELEPHONE_EVENT: &str = "audio/telephone-event";
/// RTP header extension carrying the media id (RFC 8843).
const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

#[derive(Clone)]
struct Binding {
    ssrc: u32,
    opus_pt: u8,
    dtmf_pt: Option<u8>,
    mid_ext: Option<(u8, Bytes)>,
    writer: std::sync::Arc<dyn TrackLocalWriter + Send + Sync>,
}

/// Which payload an RTP packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// An Opus frame.
    Opus,
    /// An RFC 4733 telephone-event.
    TelephoneEvent,
}

/// The local audio track. See the module docs.
pub struct AudioTrack {
    codec: RTCRtpCodecCapability,
    binding: Mutex<Option<Binding>>,
}

impl AudioTrack {
    /// A track offering `codec` (Opus).
    pub fn new(codec: RTCRtpCodecCapability) -> Self {
        Self {
            codec,
            binding: Mutex::new(None),
        }
    }

    /// Whether the far end accepted telephone-events.
    pub fn dtmf_negotiated(&self) -> bool {
        self.binding
            .lock()
            .ok()
            .and_then(|b| b.as_ref().map(|b| b.dtmf_pt.is_some()))
            .unwrap_or(false)
    }

    /// Sends one RTP packet: sets SSRC, payload type and MID extension.
    /// Returns `false` when not bound yet (before the connection is up) or
    /// when telephone-event was not negotiated.
    pub async fn write(&self, mut pkt: webrtc::rtp::packet::Packet, kind: Payload) -> bool {
        let Some(b) = self.binding.lock().ok().and_then(|b| b.clone()) else {
            return false;
        };
        pkt.header.ssrc = b.ssrc;
        pkt.header.payload_type = match kind {
            Payload::Opus => b.opus_pt,
            Payload::TelephoneEvent => match b.dtmf_pt {
                Some(pt) => pt,
                None => return false,
            },
        };
        if let Some((id, mid)) = &b.mid_ext {
            let _ = pkt.header.set_extension(*id, mid.clone());
        }
        b.writer.write_rtp(&pkt).await.is_ok()
    }
}

#[async_trait::async_trait]
impl TrackLocal for AudioTrack {
    async fn bind(&self, t: &TrackLocalContext) -> webrtc::error::Result<RTCRtpCodecParameters> {
        let params = t.codec_parameters();
        let opus = params
            .iter()
            .find(|p| {
                p.capability
                    .mime_type
                    .eq_ignore_ascii_case(&self.codec.mime_type)
            })
            .cloned()
            .ok_or(webrtc::Error::ErrUnsupportedCodec)?;
        let dtmf_pt = params
            .iter()
            .find(|p| {
                p.capability
                    .mime_type
                    .eq_ignore_ascii_case(MIME_TELEPHONE_EVENT)
                    && p.capability.clock_rate == opus.capability.clock_rate
            })
            .map(|p| p.payload_type);
        let mid_ext = t
            .header_extensions()
            .iter()
            .find(|e| e.uri == SDES_MID_URI)
            .and_then(|e| {
                t.mid()
                    .map(|m| (e.id as u8, Bytes::copy_from_slice(m.as_bytes())))
            });
        if let Ok(mut b) = self.binding.lock() {
            *b = Some(Binding {
                ssrc: t.ssrc(),
                opus_pt: opus.payload_type,
                dtmf_pt,
                mid_ext,
                writer: t.write_stream(),
            });
        }
        Ok(opus)
    }

    async fn unbind(&self, _t: &TrackLocalContext) -> webrtc::error::Result<()> {
        if let Ok(mut b) = self.binding.lock() {
            *b = None;
        }
        Ok(())
    }

    fn id(&self) -> &str {
        "audio"
    }

    fn rid(&self) -> Option<&str> {
        None
    }

    fn stream_id(&self) -> &str {
        "softphone"
    }

    fn kind(&self) -> RTPCodecType {
        RTPCodecType::Audio
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
