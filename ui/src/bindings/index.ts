// Generated from the Rust types by ts-rs (crates/app-model/src/bindings.rs). Do not edit:
// run `UPDATE_BINDINGS=1 cargo test -p softphone-app-model bindings` after changing them.

export type UserRef = { 
/**
 * User name, unique within the tenant (what `call.invite` takes in `to`).
 */
user: string, 
/**
 * Display name, e.g. `"Alice Martin"`.
 */
display_name: string, };

export type Presence = "available" | "away" | "dnd" | "offline";

export type EndReason = "completed" | "rejected" | "busy" | "no_answer" | "cancelled" | "unavailable" | "failed" | "answered_elsewhere" | "incompatible" | "abandoned";

export type CallDirection = "outgoing" | "incoming";

export type ErrorCode = "bad_frame" | "unknown_type" | "frame_too_large" | "invalid_value" | "not_authenticated" | "already_authenticated" | "unauthorized" | "token_expired" | "invalid_credentials" | "not_found" | "call_state" | "call_exists" | "glare" | "self_call" | "rate_limited" | "protocol_version" | "forbidden" | "conflict" | "internal";

export type CallQuality = { 
/**
 * Round-trip time from RTCP, in ms.
 */
rtt_ms?: number | null, 
/**
 * Interarrival jitter of received RTP (RFC 3550 §6.4.1), in ms.
 */
jitter_ms?: number | null, 
/**
 * Received packets lost, in percent (0–100).
 */
loss_pct?: number | null, 
/**
 * Estimated mean opinion score (ITU-T G.107 E-model gives 1.0–4.5;
 * values up to 5.0 are accepted).
 */
mos?: number | null, 
/**
 * Average bitrate sent, in kbit/s.
 */
send_kbps?: number | null, 
/**
 * Average bitrate received, in kbit/s.
 */
recv_kbps?: number | null, };

export type DirectoryEntry = { 
/**
 * User name.
 */
user: string, 
/**
 * Display name.
 */
display_name: string, 
/**
 * Current availability.
 */
presence: Presence, };

export type CallRecord = { 
/**
 * The call's id.
 */
call_id: string, 
/**
 * From the asking user's side: `"outgoing"` or `"incoming"`.
 */
direction: CallDirection, 
/**
 * Caller.
 */
caller: UserRef, 
/**
 * Callee: for a queue call, the agent who answered, or the queue
 * (`user` and `display_name` its name) when none did.
 */
callee: UserRef, 
/**
 * The queue that routed the call (the last one after an overflow);
 * `null` for a direct call.
 */
queue: string | null, 
/**
 * For a queue call, how long the caller waited: until an agent
 * answered, or until the call ended unanswered, ms.
 */
wait_ms: number | null, 
/**
 * The endpoint id (`hello.device_id`) that answered, once answered.
 */
answered_device: string | null, 
/**
 * Invite received, ms since the Unix epoch.
 */
created_at_ms: number, 
/**
 * First callee endpoint ringing, ms since the Unix epoch.
 */
ringing_at_ms: number | null, 
/**
 * Answered, ms since the Unix epoch.
 */
answered_at_ms: number | null, 
/**
 * Ended, ms since the Unix epoch (`null` while the call is up).
 */
ended_at_ms: number | null, 
/**
 * Answered time, in ms (0 when never answered; `null` while up).
 */
duration_ms: number | null, 
/**
 * Why it ended (`null` while up).
 */
end_reason: EndReason | null, 
/**
 * User name of the party that ended it, when a party did.
 */
ended_by: string | null, 
/**
 * `true` for an incoming call that was never answered by me (no_answer,
 * or cancelled/unavailable/failed before an answer):
 * [`EndReason::is_missed`].
 */
missed: boolean, 
/**
 * Quality as the caller reported it.
 */
caller_quality: CallQuality | null, 
/**
 * Quality as the callee reported it.
 */
callee_quality: CallQuality | null, };

export type CallState = { "state": "dialing" } | { "state": "ringing" } | { "state": "connecting" } | { "state": "active" } | { "state": "held", 
/**
 * This side put the call on hold.
 */
local: boolean, 
/**
 * The other side put the call on hold.
 */
remote: boolean, } | { "state": "ended", 
/**
 * Why.
 */
reason: EndReason, };

export type CandidateKind = "host" | "srflx" | "prflx" | "relay";

export type MediaStats = { 
/**
 * ICE round-trip time (STUN consent checks), in ms.
 */
rtt_ms: number | null, 
/**
 * Interarrival jitter of received RTP (RFC 3550 §6.4.1), in ms.
 */
jitter_ms: number, 
/**
 * Received packets lost, in percent of those expected.
 */
loss_pct: number, 
/**
 * RTP payload bitrate sent over the last period, in kbit/s.
 */
send_kbps: number, 
/**
 * RTP payload bitrate received over the last period, in kbit/s.
 */
recv_kbps: number, 
/**
 * RTP packets sent in total.
 */
packets_sent: number, 
/**
 * RTP packets received in total.
 */
packets_received: number, 
/**
 * Current jitter buffer target delay, in ms.
 */
jitter_buffer_ms: number, 
/**
 * Estimated MOS (ITU-T G.107 E-model), 1.0–4.5.
 */
mos: number, 
/**
 * Our end of the selected ICE candidate pair, once one is selected;
 * `relay` when our media goes through a TURN server.
 */
local_candidate: CandidateKind | null, 
/**
 * The far end of the selected ICE candidate pair.
 */
remote_candidate: CandidateKind | null, };

export type QueueOffer = { 
/**
 * The queue's name, e.g. `support`.
 */
name: string, 
/**
 * How long the caller has waited so far, ms.
 */
waited_ms: number, 
/**
 * A web caller's email, as they typed it in the widget.
 */
email?: string | null, 
/**
 * A web caller's topic.
 */
topic?: string | null, 
/**
 * The page a web caller called from.
 */
page?: string | null, 
/**
 * Earlier calls of this tenant from web callers with the same email.
 */
earlier_calls?: number | null, };

export type Role = "agent" | "supervisor" | "admin" | "guest";

export type AgentState = "available" | "ringing" | "on_call" | "wrap_up" | "away" | "offline";

export type SupervisedAgent = { 
/**
 * Who.
 */
agent: UserRef, 
/**
 * Their state now.
 */
state: AgentState, 
/**
 * Since when, ms since the Unix epoch (when this node first saw them,
 * if the state began before).
 */
since_ms: number, 
/**
 * The queues they are a member of, by name.
 */
queues: Array<string>, };

export type WaitingCaller = { 
/**
 * The call.
 */
call_id: string, 
/**
 * Who is calling (a web caller: the name they typed).
 */
caller: UserRef, 
/**
 * When they entered their first queue, ms since the Unix epoch.
 */
since_ms: number, 
/**
 * Agents (user names) ringing with this call now.
 */
offered_to: Array<string>, };

export type SupervisedQueue = { 
/**
 * The queue's name.
 */
name: string, 
/**
 * Its number, if any.
 */
number: string | null, 
/**
 * Callers waiting, longest-waiting first.
 */
waiting: Array<WaitingCaller>, 
/**
 * The longest current wait, ms.
 */
longest_wait_ms: number, 
/**
 * Member agents available (idle or ringing with an offer).
 */
agents_available: number, 
/**
 * Member agents in a call.
 */
agents_busy: number, 
/**
 * Member agents in wrap-up.
 */
agents_wrap_up: number, };

export type SupervisorView = { 
/**
 * When the view was taken, ms since the Unix epoch.
 */
now_ms: number, 
/**
 * The queues, by name.
 */
queues: Array<SupervisedQueue>, 
/**
 * Every member of a queue, by user name.
 */
agents: Array<SupervisedAgent>, };

export type SessionInfo = { 
/**
 * Switchboard base URL, e.g. `http://127.0.0.1:8080`.
 */
server: string, 
/**
 * Tenant.
 */
tenant: string, 
/**
 * Me.
 */
user: UserRef, 
/**
 * This installation's endpoint id at the switchboard.
 */
endpoint_id: string, 
/**
 * What I may do beyond calling: a `supervisor` or `admin` also sees
 * the team view.
 */
role: Role, };

export type CallView = { 
/**
 * The call's id.
 */
call_id: string, 
/**
 * The other party.
 */
peer: UserRef, 
/**
 * Who placed it.
 */
direction: CallDirection, 
/**
 * Where the call stands.
 */
state: CallState, 
/**
 * Our microphone is muted (digital silence is sent).
 */
muted: boolean, 
/**
 * When it became Active the first time, ms since the Unix epoch (the
 * call timer starts there).
 */
answered_at_ms: number | null, 
/**
 * Latest media statistics (every 2 s while up).
 */
stats: MediaStats | null, 
/**
 * For a call a queue offered us: the queue, the caller's wait and what
 * a web caller typed (the screen-pop); `null` for a direct call.
 */
queue: QueueOffer | null, };

export type Calls = { 
/**
 * Every call in progress, oldest first.
 */
calls: Array<CallView>, 
/**
 * The incoming call that rings, if any (the incoming-call screen,
 * Answer and Decline).
 */
ringing: string | null, 
/**
 * The call that is not ringing at us: ours, or one we answered (the
 * call screen, Hang up, Mute, Hold).
 */
current: string | null, };

export type HotkeyAction = "answer" | "hangup" | "mute" | "hold";

export type HotkeyStatus = { 
/**
 * What it does.
 */
action: HotkeyAction, 
/**
 * The accelerator, e.g. `Ctrl+Alt+A` (empty: none).
 */
accelerator: string, 
/**
 * Registered and working.
 */
registered: boolean, 
/**
 * Why not (taken by another program, not a valid accelerator).
 */
error: string | null, };

export type Ringtone = "classic" | "soft" | "digital";

export type Account = { 
/**
 * Switchboard base URL.
 */
server: string, 
/**
 * Tenant.
 */
tenant: string, 
/**
 * User name.
 */
user: string, };

export type Hotkeys = { 
/**
 * Answer the ringing call.
 */
answer: string, 
/**
 * Hang up or decline.
 */
hangup: string, 
/**
 * Mute toggle.
 */
mute: string, 
/**
 * Hold toggle.
 */
hold: string, };

export type Settings = { 
/**
 * Microphone (a name from [`AudioDevices`]); `None`: the system
 * default.
 */
input_device: string | null, 
/**
 * Headset or speakers for calls; `None`: the system default.
 */
output_device: string | null, 
/**
 * Where the ringtone plays (often the laptop's speakers while the
 * headset is off); `None`: the system default.
 */
ringer_device: string | null, 
/**
 * Which ringtone.
 */
ringtone: Ringtone, 
/**
 * Ringtone volume, 0.0–1.0.
 */
ringtone_volume: number, 
/**
 * Global hotkeys.
 */
hotkeys: Hotkeys, 
/**
 * Start when the agent logs in to the desktop.
 */
start_at_login: boolean, 
/**
 * Start hidden in the tray.
 */
start_minimised: boolean, 
/**
 * Last account, for the silent sign-in at start.
 */
last_account: Account | null, 
/**
 * This installation's endpoint id at the switchboard (made once;
 * files of earlier versions call it `device_id`).
 */
endpoint_id: string, };

export type AudioDevices = { 
/**
 * Names of devices that can record.
 */
inputs: Array<string>, 
/**
 * Names of devices that can play.
 */
outputs: Array<string>, };

export type Snapshot = { 
/**
 * Signed in, or not.
 */
session: SessionInfo | null, 
/**
 * A silent sign-in with the keyring's token is under way.
 */
restoring: boolean, 
/**
 * Calls in progress.
 */
calls: Calls, 
/**
 * Missed calls since the agent last looked at the history.
 */
missed: number, 
/**
 * My availability.
 */
presence: Presence, 
/**
 * Settings.
 */
settings: Settings, 
/**
 * Hotkey registration results.
 */
hotkeys: Array<HotkeyStatus>, 
/**
 * Whether signaling is connected (`false` while reconnecting).
 */
online: boolean, };

export type NoticeLevel = "info" | "warning" | "error";

export type AppEvent = { "event": "calls", 
/**
 * All of them, and which is which.
 */
calls: Calls, } | { "event": "missed_calls", 
/**
 * Unseen missed calls.
 */
count: number, } | { "event": "session", 
/**
 * The session, or `None` after sign-out.
 */
session: SessionInfo | null, } | { "event": "presence", 
/**
 * Now.
 */
status: Presence, } | { "event": "peer_presence", 
/**
 * Who.
 */
user: UserRef, 
/**
 * Now.
 */
status: Presence, } | { "event": "online", 
/**
 * Connected.
 */
online: boolean, } | { "event": "dial", 
/**
 * The number or user, without `tel:`.
 */
number: string, } | { "event": "mic_level", 
/**
 * Peak RMS over 100 ms, in dBFS (−100 for silence).
 */
dbfs: number, } | { "event": "hotkeys", 
/**
 * One per action.
 */
status: Array<HotkeyStatus>, } | { "event": "notice", 
/**
 * How serious.
 */
level: NoticeLevel, 
/**
 * What happened and what to do.
 */
message: string, } | { "event": "settings", 
/**
 * The new settings.
 */
settings: Settings, };

export type ErrorKind = "unreachable" | "unauthorized" | "credentials" | "audio_device" | "invalid_state" | "other";

export type UiError = { 
/**
 * The kind.
 */
kind: ErrorKind, 
/**
 * Plain words for the agent.
 */
message: string, };
