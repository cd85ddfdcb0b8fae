//! One call's media: a WebRTC peer connection (webrtc-rs 0.17.2, behind
//! [`MediaSession`]) carrying one Opus track, and the audio pipeline around it.
//!
//! ```text
//! source (20 ms, 48 kHz mono) → [mute] → Opus (VOIP, 32 kbit/s, FEC, DTX) → RTP → DTLS-SRTP
//! RTP → jitter buffer → Opus decode (FEC from next packet, PLC on gaps) → sink (20 ms clock)
//! ```
//!
//! SDP offer/answer follows RFC 3264 (hold by re-offer with `sendonly`;
//! the held side answers `recvonly`; neither side sends audio while held).
//! ICE candidates trickle (RFC 8838) through [`MediaEvent::LocalCandidate`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use softphone_audio::{FRAME, Sink, Source};
use softphone_protocol::{IceCandidate, IceServer};
use tokio::sync::{Mutex, mpsc};
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::RTCRtpTransceiver;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::stats::StatsReportType;

use crate::EngineError;
use crate::dtmf::{DtmfReceiver, EventPacket, GAP_MS, TONE_MS, event_code, packets_for};
use crate::jitter::{JitterBuffer, Playout};
use crate::track::{AudioTrack, MIME_TELEPHONE_EVENT, Payload};

/// RTP payload type of Opus in our offers.
pub const OPUS_PT: u8 = 111;
/// RTP payload type of telephone-event/48000 (RFC 4733) in our offers.
pub const DTMF_PT: u8 = 101;
/// Opus `fmtp` line: in-band FEC and DTX on, 20 ms packets.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1;usedtx=1";
/// Consecutive frames (of 20 ms) that packet loss concealment may fill;
/// after that the gap plays as silence.
pub const MAX_PLC_FRAMES: u32 = 5;
/// Target Opus bitrate, in bit/s.
pub const OPUS_BITRATE: i32 = 32_000;

/// What a session tells the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// A local ICE candidate to trickle (`None`: gathering complete).
    LocalCandidate(Option<IceCandidate>),
    /// ICE + DTLS connected.
    Connected,
    /// The connection failed or closed.
    Failed(String),
    /// The first audio frame was decoded.
    FirstAudio,
    /// Periodic statistics (every 2 s).
    Stats(MediaStats),
    /// A DTMF digit arrived (RFC 4733), once per key press.
    Dtmf(char),
    /// A sound device failed mid-call and was replaced by the default one
    /// (or by silence / a discard sink when there is none); the call goes on.
    DeviceLost {
        /// `true` for the input (microphone), `false` for the output.
        input: bool,
        /// What took its place.
        replacement: String,
    },
}

/// Opens the default sound-card input, or silence when there is none.
fn default_source() -> (Box<dyn Source>, String) {
    match softphone_audio::device::CpalSource::open(None) {
        Ok(s) => (Box::new(s), "the default input device".into()),
        Err(_) => (
            Box::new(softphone_audio::Silence),
            "silence (no input device)".into(),
        ),
    }
}

/// Opens the default sound-card output, or a discard sink when there is none.
fn default_sink() -> (Box<dyn Sink>, String) {
    match softphone_audio::device::CpalSink::open(None) {
        Ok(s) => (Box::new(s), "the default output device".into()),
        Err(_) => (
            Box::new(softphone_audio::NullSink),
            "nothing (no output device)".into(),
        ),
    }
}

/// Media statistics of one call.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MediaStats {
    /// ICE round-trip time (STUN consent checks), in ms.
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter of received RTP, in ms.
    pub jitter_ms: f64,
    /// Received packets lost, in percent.
    pub loss_pct: f64,
    /// RTP payload bitrate sent over the last period, in kbit/s.
    pub send_kbps: f64,
    /// RTP payload bitrate received over the last period, in kbit/s.
    pub recv_kbps: f64,
    /// RTP packets sent in total.
    pub packets_sent: u64,
    /// RTP packets received in total.
    pub packets_received: u64,
    /// Current jitter buffer target delay, in ms.
    pub jitter_buffer_ms: u32,
    /// Estimated MOS (ITU-T G.107).
    pub mos: f64,
}

/// The media side of one call, independent of the WebRTC library: SDP
/// offer/answer, trickle ICE, hold, mute, close.
pub trait MediaSession: Send + Sync {
    /// Creates and applies a local SDP offer; returns it.
    fn create_offer(&self) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Applies a remote offer and returns the local answer.
    fn accept_offer(&self, sdp: &str) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Applies the remote answer to our offer.
    fn set_answer(&self, sdp: &str) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Adds a trickled remote candidate (`None`: end of candidates).
    fn add_candidate(
        &self,
        c: Option<IceCandidate>,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;
    /// Holds (`true`) or resumes (`false`): returns the re-offer to send.
    fn set_local_hold(
        &self,
        hold: bool,
    ) -> impl Future<Output = Result<String, EngineError>> + Send;
    /// Mutes the microphone: the far end hears digital silence.
    fn set_mute(&self, mute: bool);
    /// Queues DTMF digits (`0-9 * # A-D`) to send as RFC 4733 events, 100 ms
    /// each with 60 ms gaps.
    ///
    /// # Errors
    /// [`EngineError::InvalidState`] for a character that is not a digit, or
    /// when the far end did not accept telephone-events.
    fn send_dtmf(&self, digits: &str) -> Result<(), EngineError>;
    /// Closes the connection and stops the pipeline.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Options of the media layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaOptions {
    /// Gather only loopback (127.0.0.1) ICE candidates: for tests and
    /// benchmarks, so that media never leaves the machine's loopback.
    pub loopback_only: bool,
}

/// Whether an SDP (its audio section) holds us: `sendonly` or `inactive`.
pub fn sdp_holds(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        let l = l.trim();
        l == "a=sendonly" || l == "a=inactive"
    })
}

struct Counters {
    sent_packets: AtomicU64,
    sent_bytes: AtomicU64,
    recv_packets: AtomicU64,
    recv_bytes: AtomicU64,
}

/// The webrtc-rs implementation of [`MediaSession`].
pub struct WebRtcSession {
    pc: Arc<RTCPeerConnection>,
    transceiver: Mutex<Option<Arc<RTCRtpTransceiver>>>,
    track: Arc<AudioTrack>,
    /// Swapped in by [`WebRtcSession::set_source`] at the next 20 ms tick.
    next_source: std::sync::Mutex<Option<Box<dyn Source>>>,
    /// Swapped in by [`WebRtcSession::set_sink`] at the next 20 ms tick.
    next_sink: std::sync::Mutex<Option<Box<dyn Sink>>>,
    dtmf_queue: std::sync::Mutex<std::collections::VecDeque<u8>>,
    muted: Arc<AtomicBool>,
    local_hold: Arc<AtomicBool>,
    remote_hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    /// Set once ICE and DTLS are up; the source is not read before, so a
    /// file plays from its start to the far end.
    connected: Arc<AtomicBool>,
}

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Media(e.to_string())
}

impl WebRtcSession {
    /// Builds the peer connection and starts the pipeline: `source` feeds
    /// the send loop, `sink` receives decoded audio; `events` hears
    /// candidates, connection changes, first audio and stats.
    ///
    /// # Errors
    /// [`EngineError::Media`] when webrtc-rs or Opus refuse the setup.
    pub async fn new(
        options: &MediaOptions,
        ice_servers: &[IceServer],
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Arc<Self>, EngineError> {
        let mut me = MediaEngine::default();
        me.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: MIME_TYPE_OPUS.to_owned(),
                    clock_rate: 48_000,
                    channels: 2,
                    sdp_fmtp_line: OPUS_FMTP.to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: OPUS_PT,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )
        .map_err(err)?;
        me.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: MIME_TELEPHONE_EVENT.to_owned(),
                    clock_rate: 48_000,
                    channels: 1,
                    sdp_fmtp_line: "0-15".to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: DTMF_PT,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )
        .map_err(err)?;
        let registry = register_default_interceptors(Registry::new(), &mut me).map_err(err)?;
        let mut settings = webrtc::api::setting_engine::SettingEngine::default();
        if options.loopback_only {
            settings.set_include_loopback_candidate(true);
            settings.set_ip_filter(Box::new(|ip: std::net::IpAddr| ip.is_loopback()));
            settings.set_network_types(vec![webrtc::ice::network_type::NetworkType::Udp4]);
        }
        let api = APIBuilder::new()
            .with_setting_engine(settings)
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .build();
        let config = RTCConfiguration {
            ice_servers: ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone().unwrap_or_default(),
                    credential: s.credential.clone().unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        };
        let pc = Arc::new(api.new_peer_connection(config).await.map_err(err)?);
        let track = Arc::new(AudioTrack::new(RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: OPUS_FMTP.to_owned(),
            rtcp_feedback: vec![],
        }));
        let sender = pc.add_track(track.clone()).await.map_err(err)?;
        // Drain RTCP so the interceptors run.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });

        let ev = events.clone();
        pc.on_ice_candidate(Box::new(move |c| {
            let ev = ev.clone();
            Box::pin(async move {
                let mapped = match c {
                    None => None,
                    Some(c) => match c.to_json() {
                        Ok(init) => Some(IceCandidate {
                            candidate: init.candidate,
                            sdp_mid: Some("0".into()),
                            sdp_mline_index: Some(0),
                            username_fragment: init.username_fragment,
                        }),
                        Err(_) => return,
                    },
                };
                let _ = ev.send(MediaEvent::LocalCandidate(mapped));
            })
        }));
        let ev = events.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(false));
        let stop_state = stop.clone();
        let up = connected.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            let ev = ev.clone();
            let stop = stop_state.clone();
            let up = up.clone();
            Box::pin(async move {
                match s {
                    RTCPeerConnectionState::Connected => {
                        up.store(true, Ordering::Relaxed);
                        let _ = ev.send(MediaEvent::Connected);
                    }
                    RTCPeerConnectionState::Failed if !stop.load(Ordering::Relaxed) => {
                        let _ = ev.send(MediaEvent::Failed("ICE/DTLS failed".into()));
                    }
                    _ => {}
                }
            })
        }));

        let counters = Arc::new(Counters {
            sent_packets: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            recv_packets: AtomicU64::new(0),
            recv_bytes: AtomicU64::new(0),
        });
        let jitter = Arc::new(std::sync::Mutex::new(JitterBuffer::new(48_000)));
        let clock = Instant::now();
        let expected = Arc::new(AtomicU64::new(0));

        // Receive: RTP → jitter buffer.
        let (jb, c, exp, ev_rx) = (
            jitter.clone(),
            counters.clone(),
            expected.clone(),
            events.clone(),
        );
        pc.on_track(Box::new(move |track, _, _| {
            let (jb, c, exp, ev) = (jb.clone(), c.clone(), exp.clone(), ev_rx.clone());
            Box::pin(async move {
                let mut first: Option<u16> = None;
                let mut highest: u64 = 0;
                let audio_pt = track.payload_type();
                let mut dtmf = DtmfReceiver::default();
                while let Ok((pkt, _)) = track.read_rtp().await {
                    if pkt.header.payload_type != audio_pt {
                        // Anything else on this stream is telephone-event.
                        if let Some(d) = dtmf.on_packet(pkt.header.timestamp, &pkt.payload) {
                            let _ = ev.send(MediaEvent::Dtmf(d));
                        }
                        continue;
                    }
                    c.recv_packets.fetch_add(1, Ordering::Relaxed);
                    c.recv_bytes
                        .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
                    let seq = pkt.header.sequence_number;
                    let f = *first.get_or_insert(seq);
                    let ext = seq.wrapping_sub(f) as u64;
                    if ext > highest && ext < 30_000 {
                        highest = ext;
                    }
                    exp.store(highest + 1, Ordering::Relaxed);
                    let now = clock.elapsed().as_millis() as u64;
                    if let Ok(mut j) = jb.lock() {
                        j.push(seq, pkt.header.timestamp, pkt.payload.to_vec(), now);
                    }
                }
            })
        }));

        let session = Arc::new(Self {
            pc: pc.clone(),
            transceiver: Mutex::new(None),
            track: track.clone(),
            dtmf_queue: std::sync::Mutex::new(std::collections::VecDeque::new()),
            next_source: std::sync::Mutex::new(None),
            next_sink: std::sync::Mutex::new(None),
            muted: Arc::new(AtomicBool::new(false)),
            local_hold: Arc::new(AtomicBool::new(false)),
            remote_hold: Arc::new(AtomicBool::new(false)),
            stop,
            connected,
        });

        // Send loop: every 20 ms, one Opus frame.
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(err)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))
            .map_err(err)?;
        encoder.set_inband_fec(true).map_err(err)?;
        encoder.set_packet_loss_perc(10).map_err(err)?;
        encoder.set_dtx(true).map_err(err)?;
        let s = session.clone();
        let c = counters.clone();
        let mut source = source;
        let ev_src = events.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pcm = vec![0.0f32; FRAME];
            let mut out = vec![0u8; 1500];
            let mut seq: u16 = rand_u16();
            let mut ts: u32 = rand_u16() as u32 * 4096;
            let mut marker = true;
            // The digit being sent: its packets, its start timestamp, ms since start.
            let mut digit: Option<(Vec<EventPacket>, u32, u32)> = None;
            let mut gap_until_ms: u32 = 0;
            let mut since_ms: u32 = 0;
            while !s.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                ts = ts.wrapping_add(FRAME as u32);
                if !s.connected.load(Ordering::Relaxed) {
                    continue;
                }
                if let Some(new) = s.next_source.lock().ok().and_then(|mut n| n.take()) {
                    source = new;
                }
                if source.failed() {
                    let (replacement, what) = tokio::task::spawn_blocking(default_source)
                        .await
                        .unwrap_or_else(|_| (Box::new(softphone_audio::Silence), "silence".into()));
                    source = replacement;
                    let _ = ev_src.send(MediaEvent::DeviceLost {
                        input: true,
                        replacement: what,
                    });
                }
                source.read_frame(&mut pcm);
                if s.local_hold.load(Ordering::Relaxed) || s.remote_hold.load(Ordering::Relaxed) {
                    marker = true;
                    continue;
                }
                since_ms = since_ms.saturating_add(20);
                if digit.is_none() && since_ms >= gap_until_ms {
                    let next = s.dtmf_queue.lock().ok().and_then(|mut q| q.pop_front());
                    if let Some(code) = next {
                        digit = Some((packets_for(code, TONE_MS), ts, 0));
                    }
                }
                if let Some((train, start_ts, elapsed)) = &mut digit {
                    // While a digit plays, it replaces the voice.
                    let due: Vec<EventPacket> = train
                        .iter()
                        .filter(|p| p.at_ms >= *elapsed && p.at_ms < *elapsed + 20)
                        .copied()
                        .collect();
                    for p in due {
                        let pkt = webrtc::rtp::packet::Packet {
                            header: webrtc::rtp::header::Header {
                                version: 2,
                                marker: p.marker,
                                sequence_number: seq,
                                timestamp: *start_ts,
                                ..Default::default()
                            },
                            payload: Bytes::copy_from_slice(&p.payload.encode()),
                        };
                        seq = seq.wrapping_add(1);
                        if s.track.write(pkt, Payload::TelephoneEvent).await {
                            c.sent_packets.fetch_add(1, Ordering::Relaxed);
                            c.sent_bytes.fetch_add(4, Ordering::Relaxed);
                        }
                    }
                    *elapsed += 20;
                    if *elapsed >= TONE_MS + 20 {
                        digit = None;
                        gap_until_ms = since_ms + GAP_MS;
                        marker = true;
                    }
                    continue;
                }
                if s.muted.load(Ordering::Relaxed) {
                    pcm.fill(0.0);
                }
                let Ok(n) = encoder.encode_float(&pcm, &mut out) else {
                    continue;
                };
                if n <= 2 {
                    // DTX: nothing worth sending during silence.
                    marker = true;
                    continue;
                }
                let pkt = webrtc::rtp::packet::Packet {
                    header: webrtc::rtp::header::Header {
                        version: 2,
                        marker,
                        sequence_number: seq,
                        timestamp: ts,
                        ..Default::default()
                    },
                    payload: Bytes::copy_from_slice(&out[..n]),
                };
                marker = false;
                seq = seq.wrapping_add(1);
                if s.track.write(pkt, Payload::Opus).await {
                    c.sent_packets.fetch_add(1, Ordering::Relaxed);
                    c.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        });

        // Playout loop: every 20 ms, one decoded frame to the sink.
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).map_err(err)?;
        let s = session.clone();
        let ev = events.clone();
        let mut sink = sink;
        let jb = jitter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut pcm = vec![0.0f32; FRAME];
            let mut heard = false;
            let mut decoded_any = false;
            let mut concealed_run = 0u32;
            while !s.stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let now = clock.elapsed().as_millis() as u64;
                let playout = match jb.lock() {
                    Ok(mut j) => j.pop(now),
                    Err(_) => Playout::Buffering,
                };
                if matches!(playout, Playout::Conceal) {
                    concealed_run += 1;
                } else {
                    concealed_run = 0;
                }
                let ok = match &playout {
                    Playout::Frame(p) => decoder.decode_float(p, &mut pcm, false).is_ok(),
                    Playout::Fec(p) => decoder.decode_float(p, &mut pcm, true).is_ok(),
                    // PLC bridges short gaps; a long one (DTX, hold, a dead
                    // path) is silence, not an endless extrapolation.
                    Playout::Conceal if decoded_any && concealed_run <= MAX_PLC_FRAMES => {
                        decoder.decode_float(&[], &mut pcm, false).is_ok()
                    }
                    _ => false,
                };
                if !ok {
                    pcm.fill(0.0);
                }
                if matches!(playout, Playout::Frame(_)) {
                    decoded_any = true;
                    if !heard {
                        heard = true;
                        let _ = ev.send(MediaEvent::FirstAudio);
                    }
                }
                if let Some(new) = s.next_sink.lock().ok().and_then(|mut n| n.take()) {
                    sink.finish();
                    sink = new;
                }
                if sink.failed() {
                    let (replacement, what) = tokio::task::spawn_blocking(default_sink)
                        .await
                        .unwrap_or_else(|_| {
                            (Box::new(softphone_audio::NullSink), "nothing".into())
                        });
                    sink = replacement;
                    let _ = ev.send(MediaEvent::DeviceLost {
                        input: false,
                        replacement: what,
                    });
                }
                sink.write_frame(&pcm);
            }
            sink.finish();
        });

        // Stats every 2 s.
        let s = session.clone();
        let ev = events;
        tokio::spawn(async move {
            let mut last = (0u64, 0u64, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let report = s.pc.get_stats().await;
                let rtt_ms = report.reports.values().find_map(|r| match r {
                    StatsReportType::CandidatePair(p)
                        if p.nominated && p.current_round_trip_time > 0.0 =>
                    {
                        Some(p.current_round_trip_time * 1000.0)
                    }
                    _ => None,
                });
                let sent = counters.sent_bytes.load(Ordering::Relaxed);
                let recv = counters.recv_bytes.load(Ordering::Relaxed);
                let secs = last.2.elapsed().as_secs_f64().max(0.001);
                let send_kbps = (sent - last.0) as f64 * 8.0 / 1000.0 / secs;
                let recv_kbps = (recv - last.1) as f64 * 8.0 / 1000.0 / secs;
                last = (sent, recv, Instant::now());
                let received = counters.recv_packets.load(Ordering::Relaxed);
                let exp = expected.load(Ordering::Relaxed);
                let loss_pct = if exp > 0 {
                    (exp.saturating_sub(received) as f64 * 100.0 / exp as f64).clamp(0.0, 100.0)
                } else {
                    0.0
                };
                let (jitter_ms, jb_ms) = jitter
                    .lock()
                    .map(|j| (j.jitter_ms(), j.target_delay_ms()))
                    .unwrap_or((0.0, 0));
                let one_way = rtt_ms.unwrap_or(0.0) / 2.0 + jb_ms as f64 + 20.0;
                let _ = ev.send(MediaEvent::Stats(MediaStats {
                    rtt_ms,
                    jitter_ms,
                    loss_pct,
                    send_kbps,
                    recv_kbps,
                    packets_sent: counters.sent_packets.load(Ordering::Relaxed),
                    packets_received: received,
                    jitter_buffer_ms: jb_ms,
                    mos: crate::quality::estimate_mos(one_way, loss_pct),
                }));
            }
        });
        Ok(session)
    }

    /// Switches the input mid-call (takes effect within 20 ms; the call and
    /// its RTP stream go on).
    pub fn set_source(&self, source: Box<dyn Source>) {
        if let Ok(mut n) = self.next_source.lock() {
            *n = Some(source);
        }
    }

    /// Switches the output mid-call (takes effect within 20 ms).
    pub fn set_sink(&self, sink: Box<dyn Sink>) {
        if let Ok(mut n) = self.next_sink.lock() {
            *n = Some(sink);
        }
    }

    async fn audio_transceiver(&self) -> Option<Arc<RTCRtpTransceiver>> {
        let mut t = self.transceiver.lock().await;
        if t.is_none() {
            *t = self.pc.get_transceivers().await.into_iter().next();
        }
        t.clone()
    }

    /// Applies a re-offer from the other side (hold, resume, ICE restart)
    /// and returns our answer; also reports whether it holds us.
    ///
    /// # Errors
    /// [`EngineError::Media`] when the SDP is refused.
    pub async fn accept_reoffer(&self, sdp: &str) -> Result<(String, bool), EngineError> {
        let holds = sdp_holds(sdp);
        self.remote_hold.store(holds, Ordering::Relaxed);
        let answer = self.accept_offer(sdp).await?;
        Ok((answer, holds))
    }
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16)) as u16
}

impl MediaSession for WebRtcSession {
    async fn create_offer(&self) -> Result<String, EngineError> {
        let offer = self.pc.create_offer(None).await.map_err(err)?;
        self.pc
            .set_local_description(offer.clone())
            .await
            .map_err(err)?;
        Ok(offer.sdp)
    }

    async fn accept_offer(&self, sdp: &str) -> Result<String, EngineError> {
        let offer = RTCSessionDescription::offer(sdp.to_owned()).map_err(err)?;
        self.pc.set_remote_description(offer).await.map_err(err)?;
        let answer = self.pc.create_answer(None).await.map_err(err)?;
        self.pc
            .set_local_description(answer.clone())
            .await
            .map_err(err)?;
        Ok(answer.sdp)
    }

    async fn set_answer(&self, sdp: &str) -> Result<(), EngineError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).map_err(err)?;
        self.pc.set_remote_description(answer).await.map_err(err)
    }

    async fn add_candidate(&self, c: Option<IceCandidate>) -> Result<(), EngineError> {
        let Some(c) = c else {
            return Ok(());
        };
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_mline_index,
                username_fragment: c.username_fragment,
            })
            .await
            .map_err(err)
    }

    async fn set_local_hold(&self, hold: bool) -> Result<String, EngineError> {
        self.local_hold.store(hold, Ordering::Relaxed);
        if let Some(t) = self.audio_transceiver().await {
            let d = if hold {
                RTCRtpTransceiverDirection::Sendonly
            } else {
                RTCRtpTransceiverDirection::Sendrecv
            };
            t.set_direction(d).await;
        }
        self.create_offer().await
    }

    fn set_mute(&self, mute: bool) {
        self.muted.store(mute, Ordering::Relaxed);
    }

    fn send_dtmf(&self, digits: &str) -> Result<(), EngineError> {
        let codes: Vec<u8> = digits
            .chars()
            .map(|d| {
                event_code(d)
                    .ok_or_else(|| EngineError::InvalidState(format!("`{d}` is not a DTMF digit")))
            })
            .collect::<Result<_, _>>()?;
        if !self.track.dtmf_negotiated() {
            return Err(EngineError::InvalidState(
                "the far end did not accept telephone-events".into(),
            ));
        }
        if let Ok(mut q) = self.dtmf_queue.lock() {
            q.extend(codes);
        }
        Ok(())
    }

    async fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pc.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_is_read_from_the_direction_attribute() {
        assert!(sdp_holds(
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n"
        ));
        assert!(sdp_holds("v=0\r\na=inactive\r\n"));
        assert!(!sdp_holds("v=0\r\na=sendrecv\r\n"));
        assert!(!sdp_holds("v=0\r\na=recvonly\r\n"));
    }
}
