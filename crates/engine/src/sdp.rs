//! What the engine reads from a remote SDP (RFC 8866) before handing it to
//! the WebRTC stack: the audio section, whether it is usable, its codecs and
//! its direction. Pure text parsing, no IO.
//!
//! An offer or answer is usable when it has an audio media section with a
//! non-zero port (RFC 3264 §6: port 0 rejects the stream) that lists Opus at
//! 48 kHz (RFC 7587). RFC 4733 telephone-event at 48 kHz is optional: without
//! it the call works but cannot carry DTMF.
//!
//! ```
//! use softphone_engine::sdp::{Direction, NegotiationError, audio};
//!
//! let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 101\r\n\
//!           a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=sendonly\r\n";
//! let a = audio(ok).unwrap();
//! assert_eq!((a.opus_pt, a.telephone_event_pt), (111, Some(101)));
//! assert_eq!(a.direction, Direction::SendOnly);
//!
//! let rejected = "v=0\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
//! assert_eq!(audio(rejected), Err(NegotiationError::AudioRejected));
//! ```

/// Why a remote SDP cannot carry our call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// No `m=audio` section at all.
    #[error("the SDP has no audio section")]
    NoAudio,
    /// The audio section has port 0: the far end refused the stream
    /// (RFC 3264 §6).
    #[error("the far end rejected the audio stream (port 0)")]
    AudioRejected,
    /// The audio section does not list Opus at 48 kHz (RFC 7587), the one
    /// codec we speak.
    #[error("no common codec: the far end does not offer Opus/48000")]
    NoOpus,
    /// The `m=audio` line cannot be read.
    #[error("malformed audio section: {0}")]
    Malformed(&'static str),
}

/// The media direction of a section (RFC 3264 §5.1, RFC 8866 §6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (the default when no attribute is given).
    #[default]
    SendRecv,
    /// The SDP's author only sends: it holds us.
    SendOnly,
    /// The SDP's author only receives.
    RecvOnly,
    /// Neither way: it holds us (and may be held).
    Inactive,
}

impl Direction {
    /// Whether the SDP's author puts the other side on hold: `sendonly` or
    /// `inactive`.
    pub fn holds(self) -> bool {
        matches!(self, Self::SendOnly | Self::Inactive)
    }

    fn parse(attr: &str) -> Option<Self> {
        Some(match attr {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }
}

/// The usable audio section of a remote SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audio {
    /// RTP payload type of Opus/48000.
    pub opus_pt: u8,
    /// RTP payload type of telephone-event/48000, when offered.
    pub telephone_event_pt: Option<u8>,
    /// The section's direction (or the session-level one, or `sendrecv`).
    pub direction: Direction,
}

/// Whether an `m=` line's value starts with media type `audio`.
fn is_audio(m: &str) -> bool {
    m.split_ascii_whitespace().next() == Some("audio")
}

/// Reads the first audio section of `sdp`.
///
/// # Errors
/// [`NegotiationError`] when there is no audio section, it is rejected
/// (port 0), it lacks Opus/48000, or its `m=` line is malformed.
pub fn audio(sdp: &str) -> Result<Audio, NegotiationError> {
    let mut session_direction = None;
    let mut lines = sdp.lines().map(str::trim);
    // Session-level attributes, up to the first media section.
    let m_line = loop {
        let Some(line) = lines.next() else {
            return Err(NegotiationError::NoAudio);
        };
        if let Some(m) = line.strip_prefix("m=") {
            if is_audio(m) {
                break m;
            }
            // Skip this non-audio section: find the next m= line.
            let next = lines
                .by_ref()
                .find_map(|l| l.strip_prefix("m=").filter(|m| is_audio(m)));
            match next {
                Some(m) => break m,
                None => return Err(NegotiationError::NoAudio),
            }
        }
        if let Some(d) = line.strip_prefix("a=").and_then(Direction::parse) {
            session_direction = Some(d);
        }
    };
    let mut fields = m_line.split_ascii_whitespace().skip(1);
    let port = fields
        .next()
        .ok_or(NegotiationError::Malformed("no port"))?;
    let port: u32 = port
        .split('/')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(NegotiationError::Malformed("port is not a number"))?;
    if port == 0 {
        return Err(NegotiationError::AudioRejected);
    }
    let _proto = fields
        .next()
        .ok_or(NegotiationError::Malformed("no transport"))?;
    let formats: Vec<u8> = fields.filter_map(|f| f.parse().ok()).collect();
    let mut opus_pt = None;
    let mut telephone_event_pt = None;
    let mut direction = None;
    for line in lines.take_while(|l| !l.starts_with("m=")) {
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(d) = Direction::parse(attr) {
            direction = Some(d);
        } else if let Some(map) = attr.strip_prefix("rtpmap:") {
            let Some((pt, encoding)) = map.split_once(' ') else {
                continue;
            };
            let Ok(pt) = pt.parse::<u8>() else {
                continue;
            };
            if !formats.contains(&pt) {
                continue;
            }
            let mut enc = encoding.split('/');
            let name = enc.next().unwrap_or_default();
            let rate = enc.next().unwrap_or_default();
            if rate != "48000" {
                continue;
            }
            if name.eq_ignore_ascii_case("opus") {
                opus_pt.get_or_insert(pt);
            } else if name.eq_ignore_ascii_case("telephone-event") {
                telephone_event_pt.get_or_insert(pt);
            }
        }
    }
    Ok(Audio {
        opus_pt: opus_pt.ok_or(NegotiationError::NoOpus)?,
        telephone_event_pt,
        direction: direction.or(session_direction).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM_OFFER: &str = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
        c=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n\
        a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n\
        a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:110 telephone-event/48000\r\n\
        a=rtpmap:126 telephone-event/8000\r\n";

    #[test]
    fn a_browser_offer_gives_opus_telephone_event_and_direction() {
        let a = audio(CHROMIUM_OFFER).unwrap();
        assert_eq!(a.opus_pt, 111);
        assert_eq!(a.telephone_event_pt, Some(110), "the 48 kHz one");
        assert_eq!(a.direction, Direction::SendRecv);
        assert!(!a.direction.holds());
    }

    #[test]
    fn a_rejected_or_missing_audio_stream_is_refused() {
        let rejected = CHROMIUM_OFFER.replace("m=audio 9 ", "m=audio 0 ");
        assert_eq!(audio(&rejected), Err(NegotiationError::AudioRejected));
        assert_eq!(
            audio("v=0\r\ns=-\r\nt=0 0\r\n"),
            Err(NegotiationError::NoAudio)
        );
        let video_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(audio(video_only), Err(NegotiationError::NoAudio));
    }

    #[test]
    fn an_answer_without_opus_has_no_common_codec() {
        let pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert_eq!(audio(pcmu), Err(NegotiationError::NoOpus));
        // Opus in an rtpmap but not in the m= line's format list is not offered.
        let unlisted = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(audio(unlisted), Err(NegotiationError::NoOpus));
    }

    #[test]
    fn hold_comes_from_the_section_or_the_session_level() {
        for (attr, holds) in [
            ("sendonly", true),
            ("inactive", true),
            ("recvonly", false),
            ("sendrecv", false),
        ] {
            let sdp = CHROMIUM_OFFER.replace("a=sendrecv", &format!("a={attr}"));
            assert_eq!(audio(&sdp).unwrap().direction.holds(), holds, "{attr}");
        }
        let session_level =
            "v=0\r\na=inactive\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(audio(session_level).unwrap().direction.holds());
    }

    #[test]
    fn audio_after_a_video_section_is_found_and_malformed_lines_are_errors() {
        let sdp = "v=0\r\nm=video 9 RTP/AVP 96\r\na=sendonly\r\nm=audio 9 RTP/AVP 111\r\na=rtpmap:111 OPUS/48000/2\r\n";
        let a = audio(sdp).unwrap();
        assert_eq!(a.opus_pt, 111);
        assert_eq!(
            a.direction,
            Direction::SendRecv,
            "video's attribute is not ours"
        );
        assert_eq!(
            audio("m=audio\r\n"),
            Err(NegotiationError::Malformed("no port"))
        );
        assert_eq!(
            audio("m=audio x RTP/AVP 111\r\n"),
            Err(NegotiationError::Malformed("port is not a number"))
        );
    }
}
