//! The real [`MediaSession`]: webrtc-rs 0.17.2 carrying one Opus track
//! (with RFC 4733 telephone-events on the same SSRC), and the three loops
//! around it: send (source → [`SendPipeline`] → RTP), playout (RTP → jitter
//! buffer → [`PlayoutPipeline`] → sink) and stats ([`StatsMeter`], every
//! 2 s).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use softphone_audio::{FRAME, NullSink, Silence, Sink, Source};
use softphone_protocol::{IceCandidate, IceServer};
use tokio::sync::mpsc;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::stats::StatsReportType;

use super::playout::PlayoutPipeline;
use super::send::{SendPipeline, TickFlags, parse_digits};
use super::stats::{Counters, LossCounter, StatsMeter};
use super::{
    CallAudio, CandidateKind, MediaEvent, MediaFactory, MediaOptions, MediaSession, MediaStats,
};
use crate::EngineError;
use crate::dtmf::DtmfReceiver;
use crate::jitter::{JitterBuffer, Playout};
use crate::track::{AudioTrack, MIME_TELEPHONE_EVENT};

/// RTP payload type of Opus in our offers.
pub const OPUS_PT: u8 = 111;
/// RTP payload type of telephone-event/48000 (RFC 4733) in our offers.
pub const DTMF_PT: u8 = 101;
/// Opus `fmtp` line: in-band FEC and DTX on, 20 ms packets.
pub const OPUS_FMTP: &str = "minptime=10;useinbandfec=1;usedtx=1";
/// A DTMF digit waits at least this long after the media path is up, in
/// ms, so that the far end has finished its own DTLS handshake.
pub const DTMF_SETTLE_MS: u64 = 100;
/// ... and until we have heard from the far end, or this long, in ms.
pub const DTMF_READY_MS: u64 = 1_000;
/// Period of [`MediaEvent::Stats`].
pub const STATS_PERIOD: Duration = Duration::from_secs(2);

/// Makes [`WebRtcSession`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebRtcFactory {
    /// Options for every session.
    pub options: MediaOptions,
}

#[async_trait::async_trait]
impl MediaFactory for WebRtcFactory {
    async fn create(
        &self,
        ice_servers: &[IceServer],
        audio: CallAudio,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Arc<dyn MediaSession>, EngineError> {
        let s: Arc<dyn MediaSession> =
            WebRtcSession::new(&self.options, ice_servers, audio, events).await?;
        Ok(s)
    }
}

/// Opens the default sound-card input, or silence when there is none.
fn default_source() -> (Box<dyn Source>, String) {
    match softphone_audio::device::CpalSource::open(None) {
        Ok(s) => (Box::new(s), "the default input device".into()),
        Err(_) => (Box::new(Silence), "silence (no input device)".into()),
    }
}

/// Opens the default sound-card output, or a discard sink when there is none.
fn default_sink() -> (Box<dyn Sink>, String) {
    match softphone_audio::device::CpalSink::open(None) {
        Ok(s) => (Box::new(s), "the default output device".into()),
        Err(_) => (Box::new(NullSink), "nothing (no output device)".into()),
    }
}

/// What the loops and the session share.
struct Shared {
    /// Swapped in by [`MediaSession::set_source`] at the next 20 ms tick.
    next_source: Mutex<Option<Box<dyn Source>>>,
    /// Swapped in by [`MediaSession::set_sink`] at the next 20 ms tick.
    next_sink: Mutex<Option<Box<dyn Sink>>>,
    dtmf: Mutex<VecDeque<char>>,
    muted: AtomicBool,
    local_hold: AtomicBool,
    remote_hold: AtomicBool,
    stop: AtomicBool,
    /// Set once ICE and DTLS are up; the source is not read before, so a
    /// file plays from its start to the far end.
    connected_at: Mutex<Option<Instant>>,
    /// Set when the first RTP packet of the far end arrives.
    heard_far_end: AtomicBool,
    counters: Counters,
    jitter: Mutex<JitterBuffer>,
    clock: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }
}

/// The webrtc-rs implementation of [`MediaSession`].
pub struct WebRtcSession {
    pc: Arc<RTCPeerConnection>,
    track: Arc<AudioTrack>,
    shared: Arc<Shared>,
}

fn codec(mime: &str, channels: u16, fmtp: &str) -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: mime.to_owned(),
        clock_rate: 48_000,
        channels,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The webrtc-rs API object: Opus and telephone-event registered, the
/// default interceptors (RTCP reports, NACK), loopback-only ICE on request.
fn api(options: &MediaOptions) -> Result<webrtc::api::API, EngineError> {
    let setup = |e| EngineError::media("setting up WebRTC", e);
    let mut me = MediaEngine::default();
    for (capability, payload_type) in [
        (codec(MIME_TYPE_OPUS, 2, OPUS_FMTP), OPUS_PT),
        (codec(MIME_TELEPHONE_EVENT, 1, "0-15"), DTMF_PT),
    ] {
        me.register_codec(
            RTCRtpCodecParameters {
                capability,
                payload_type,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )
        .map_err(setup)?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut me).map_err(setup)?;
    let mut settings = webrtc::api::setting_engine::SettingEngine::default();
    if options.relay_only {
        // A host candidate stays in the answer's SDP otherwise; with the
        // policy below none is gathered at all.
        settings.set_network_types(vec![webrtc::ice::network_type::NetworkType::Udp4]);
    }
    if options.loopback_only {
        settings.set_include_loopback_candidate(true);
        settings.set_ip_filter(Box::new(|ip: std::net::IpAddr| ip.is_loopback()));
        settings.set_network_types(vec![webrtc::ice::network_type::NetworkType::Udp4]);
    }
    Ok(APIBuilder::new()
        .with_setting_engine(settings)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build())
}

impl WebRtcSession {
    /// Builds the peer connection and starts the loops: `audio.source`
    /// feeds the send loop, `audio.sink` receives decoded audio; `events`
    /// hears candidates, connection changes, first audio, DTMF and stats.
    ///
    /// # Errors
    /// [`EngineError::Media`] when webrtc-rs or Opus refuse the setup.
    pub async fn new(
        options: &MediaOptions,
        ice_servers: &[IceServer],
        audio: CallAudio,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> Result<Arc<Self>, EngineError> {
        let config = RTCConfiguration {
            ice_servers: ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone().unwrap_or_default(),
                    credential: s.credential.clone().unwrap_or_default(),
                })
                .collect(),
            ice_transport_policy: if options.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            },
            ..Default::default()
        };
        let pc = api(options)?
            .new_peer_connection(config)
            .await
            .map(Arc::new)
            .map_err(|e| EngineError::media("creating the peer connection", e))?;
        let track = Arc::new(AudioTrack::new(codec(MIME_TYPE_OPUS, 2, OPUS_FMTP)));
        let sender = pc
            .add_track(track.clone())
            .await
            .map_err(|e| EngineError::media("adding the audio track", e))?;
        // Drain RTCP so the interceptors run.
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            while sender.read(&mut buf).await.is_ok() {}
        });
        let shared = Arc::new(Shared {
            next_source: Mutex::new(None),
            next_sink: Mutex::new(None),
            dtmf: Mutex::new(VecDeque::new()),
            muted: AtomicBool::new(false),
            local_hold: AtomicBool::new(false),
            remote_hold: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            connected_at: Mutex::new(None),
            heard_far_end: AtomicBool::new(false),
            counters: Counters::default(),
            jitter: Mutex::new(JitterBuffer::new(48_000)),
            clock: Instant::now(),
        });
        on_candidates(&pc, events.clone());
        on_state(&pc, shared.clone(), events.clone());
        on_track(&pc, shared.clone(), events.clone());
        let send = SendPipeline::random()?;
        let playout = PlayoutPipeline::new()?;
        tokio::spawn(send_loop(
            send,
            audio.source,
            track.clone(),
            shared.clone(),
            events.clone(),
        ));
        tokio::spawn(playout_loop(
            playout,
            audio.sink,
            shared.clone(),
            events.clone(),
        ));
        tokio::spawn(stats_loop(pc.clone(), shared.clone(), events));
        Ok(Arc::new(Self { pc, track, shared }))
    }
}

/// Trickles our candidates (RFC 8838) with `sdp_mid` "0" and index 0: one
/// audio section, so a browser can add them as they are.
fn on_candidates(pc: &RTCPeerConnection, events: mpsc::UnboundedSender<MediaEvent>) {
    pc.on_ice_candidate(Box::new(move |c| {
        let ev = events.clone();
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
}

fn on_state(
    pc: &RTCPeerConnection,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    pc.on_peer_connection_state_change(Box::new(move |s| {
        let (ev, shared) = (events.clone(), shared.clone());
        Box::pin(async move {
            match s {
                RTCPeerConnectionState::Connected => {
                    lock(&shared.connected_at).get_or_insert_with(Instant::now);
                    let _ = ev.send(MediaEvent::Connected);
                }
                RTCPeerConnectionState::Failed if !shared.stop.load(Ordering::Relaxed) => {
                    let _ = ev.send(MediaEvent::Failed("ICE/DTLS failed".into()));
                }
                _ => {}
            }
        })
    }));
}

/// The receive path: RTP into the jitter buffer, telephone-events into the
/// DTMF receiver.
fn on_track(
    pc: &RTCPeerConnection,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    pc.on_track(Box::new(move |track, _, _| {
        let (shared, ev) = (shared.clone(), events.clone());
        Box::pin(async move {
            let mut loss = LossCounter::default();
            let audio_pt = track.payload_type();
            let mut dtmf = DtmfReceiver::default();
            while let Ok((pkt, _)) = track.read_rtp().await {
                shared.heard_far_end.store(true, Ordering::Relaxed);
                if pkt.header.payload_type != audio_pt {
                    // Anything else on this stream is telephone-event.
                    if let Some(d) = dtmf.on_packet(pkt.header.timestamp, &pkt.payload) {
                        let _ = ev.send(MediaEvent::Dtmf(d));
                    }
                    continue;
                }
                let c = &shared.counters;
                c.recv_packets.fetch_add(1, Ordering::Relaxed);
                c.recv_bytes
                    .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
                let seq = pkt.header.sequence_number;
                c.expected.store(loss.on_packet(seq), Ordering::Relaxed);
                let now = shared.now_ms();
                lock(&shared.jitter).push(seq, pkt.header.timestamp, pkt.payload.to_vec(), now);
            }
        })
    }));
}

/// Every 20 ms: one frame from the source through the send pipeline onto
/// the track.
async fn send_loop(
    mut pipeline: SendPipeline,
    mut source: Box<dyn Source>,
    track: Arc<AudioTrack>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pcm = vec![0.0f32; FRAME];
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let Some(connected_at) = *lock(&shared.connected_at) else {
            pipeline.idle();
            continue;
        };
        if let Some(new) = lock(&shared.next_source).take() {
            source = new;
        }
        if source.failed() {
            let (replacement, what) = tokio::task::spawn_blocking(default_source)
                .await
                .unwrap_or_else(|_| (Box::new(Silence), "silence".into()));
            source = replacement;
            let _ = events.send(MediaEvent::AudioDeviceLost {
                input: true,
                replacement: what,
            });
        }
        let digits: String = lock(&shared.dtmf).drain(..).collect();
        if !digits.is_empty() {
            // Checked by `send_dtmf` already.
            let _ = pipeline.queue_dtmf(&digits);
        }
        source.read_frame(&mut pcm);
        let up_ms = connected_at.elapsed().as_millis() as u64;
        let flags = TickFlags {
            held: shared.local_hold.load(Ordering::Relaxed)
                || shared.remote_hold.load(Ordering::Relaxed),
            muted: shared.muted.load(Ordering::Relaxed),
            dtmf_ready: up_ms >= DTMF_SETTLE_MS
                && (shared.heard_far_end.load(Ordering::Relaxed) || up_ms >= DTMF_READY_MS),
        };
        for (pkt, kind) in pipeline.tick(&mut pcm, flags) {
            let bytes = pkt.payload.len();
            if track.write(pkt, kind).await {
                shared.counters.sent(bytes);
            }
        }
    }
}

/// Every 20 ms: what the jitter buffer says, decoded, to the sink.
async fn playout_loop(
    mut pipeline: PlayoutPipeline,
    mut sink: Box<dyn Sink>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while !shared.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = shared.now_ms();
        let playout: Playout = lock(&shared.jitter).pop(now);
        if pipeline.tick(&playout).first_audio {
            let _ = events.send(MediaEvent::FirstAudio);
        }
        if let Some(new) = lock(&shared.next_sink).take() {
            sink.finish();
            sink = new;
        }
        if sink.failed() {
            let (replacement, what) = tokio::task::spawn_blocking(default_sink)
                .await
                .unwrap_or_else(|_| (Box::new(NullSink), "nothing".into()));
            sink = replacement;
            let _ = events.send(MediaEvent::AudioDeviceLost {
                input: false,
                replacement: what,
            });
        }
        sink.write_frame(pipeline.frame());
    }
    sink.finish();
}

/// Every 2 s: the call's stats.
async fn stats_loop(
    pc: Arc<RTCPeerConnection>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<MediaEvent>,
) {
    let mut meter = StatsMeter::new(shared.now_ms());
    loop {
        tokio::time::sleep(STATS_PERIOD).await;
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let report = pc.get_stats().await;
        let selected = report.reports.values().find_map(|r| match r {
            StatsReportType::CandidatePair(p) if p.nominated => Some(p),
            _ => None,
        });
        let rtt_ms = selected
            .filter(|p| p.current_round_trip_time > 0.0)
            .map(|p| p.current_round_trip_time * 1000.0);
        let kind_of = |id: &str| match report.reports.get(id) {
            Some(StatsReportType::LocalCandidate(c) | StatsReportType::RemoteCandidate(c)) => {
                candidate_kind(c.candidate_type)
            }
            _ => None,
        };
        let (jitter_ms, jb_ms) = {
            let j = lock(&shared.jitter);
            (j.jitter_ms(), j.target_delay_ms())
        };
        let stats = meter.sample(
            shared.counters.sample(),
            rtt_ms,
            jitter_ms,
            jb_ms,
            shared.now_ms(),
        );
        let stats = MediaStats {
            local_candidate: selected.and_then(|p| kind_of(&p.local_candidate_id)),
            remote_candidate: selected.and_then(|p| kind_of(&p.remote_candidate_id)),
            ..stats
        };
        let _ = events.send(MediaEvent::Stats(stats));
    }
}

/// Our name for webrtc-ice's candidate type.
fn candidate_kind(t: webrtc::ice::candidate::CandidateType) -> Option<CandidateKind> {
    use webrtc::ice::candidate::CandidateType as T;
    match t {
        T::Host => Some(CandidateKind::Host),
        T::ServerReflexive => Some(CandidateKind::Srflx),
        T::PeerReflexive => Some(CandidateKind::Prflx),
        T::Relay => Some(CandidateKind::Relay),
        T::Unspecified => None,
    }
}

#[async_trait::async_trait]
impl MediaSession for WebRtcSession {
    async fn create_offer(&self) -> Result<String, EngineError> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| EngineError::media("creating the SDP offer", e))?;
        self.pc
            .set_local_description(offer.clone())
            .await
            .map_err(|e| EngineError::media("applying our SDP offer", e))?;
        Ok(offer.sdp)
    }

    async fn accept_offer(&self, sdp: &str) -> Result<String, EngineError> {
        let offer = RTCSessionDescription::offer(sdp.to_owned())
            .map_err(|e| EngineError::media("reading the SDP offer", e))?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| EngineError::media("applying the SDP offer", e))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| EngineError::media("creating the SDP answer", e))?;
        self.pc
            .set_local_description(answer.clone())
            .await
            .map_err(|e| EngineError::media("applying our SDP answer", e))?;
        Ok(answer.sdp)
    }

    async fn set_answer(&self, sdp: &str) -> Result<(), EngineError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| EngineError::media("reading the SDP answer", e))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| EngineError::media("applying the SDP answer", e))
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
            .map_err(|e| EngineError::media("adding a remote ICE candidate", e))
    }

    async fn set_local_hold(&self, hold: bool) -> Result<String, EngineError> {
        self.shared.local_hold.store(hold, Ordering::Relaxed);
        if let Some(t) = self.pc.get_transceivers().await.into_iter().next() {
            let d = if hold {
                RTCRtpTransceiverDirection::Sendonly
            } else {
                RTCRtpTransceiverDirection::Sendrecv
            };
            t.set_direction(d).await;
        }
        self.create_offer().await
    }

    fn set_remote_hold(&self, hold: bool) {
        self.shared.remote_hold.store(hold, Ordering::Relaxed);
    }

    fn set_mute(&self, mute: bool) {
        self.shared.muted.store(mute, Ordering::Relaxed);
    }

    fn send_dtmf(&self, digits: &str) -> Result<(), EngineError> {
        parse_digits(digits)?;
        if !self.track.dtmf_negotiated() {
            return Err(EngineError::InvalidState(
                "the far end did not accept telephone-events".into(),
            ));
        }
        lock(&self.shared.dtmf).extend(digits.chars());
        Ok(())
    }

    fn set_source(&self, source: Box<dyn Source>) {
        *lock(&self.shared.next_source) = Some(source);
    }

    fn set_sink(&self, sink: Box<dyn Sink>) {
        *lock(&self.shared.next_sink) = Some(sink);
    }

    async fn close(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.pc.close().await;
    }
}
