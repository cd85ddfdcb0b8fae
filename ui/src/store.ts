// The UI's state: the shell's snapshot, kept current by `app` events, plus
// what only the UI knows (tab, dial text, search results). Which call rings
// and which is current is decided in Rust (crates/app-model), not here.
import type {
  AppEvent,
  AudioDevices,
  CallRecord,
  Calls,
  CallView,
  DirectoryEntry,
  HotkeyStatus,
  NoticeLevel,
  Presence,
  SessionInfo,
  Settings,
  Snapshot,
  SupervisorView,
} from "./backend";

export type Tab = "phone" | "history" | "team" | "settings";

export interface State {
  session: SessionInfo | null;
  restoring: boolean;
  calls: Calls;
  missed: number;
  presence: Presence;
  settings: Settings;
  hotkeys: HotkeyStatus[];
  online: boolean;
  tab: Tab;
  notice: { level: NoticeLevel; message: string } | null;
  directory: DirectoryEntry[];
  history: CallRecord[];
  /** The team view as last read (supervisors and admins). */
  team: SupervisorView | null;
  devices: AudioDevices;
  micLevel: number | null;
  dialText: string;
  /** DTMF digits sent in the current call, for the keypad's display. */
  dtmfSent: string;
  /** A command is under way (buttons show it instead of freezing). */
  busy: string | null;
}

export const noCalls: Calls = { calls: [], ringing: null, current: null };

export const emptySettings: Settings = {
  input_device: null,
  output_device: null,
  ringer_device: null,
  ringtone: "classic",
  ringtone_volume: 0.7,
  hotkeys: { answer: "", hangup: "", mute: "", hold: "" },
  start_at_login: false,
  start_minimised: false,
  last_account: null,
  endpoint_id: "",
};

export function initialState(): State {
  return {
    session: null,
    restoring: true,
    calls: noCalls,
    missed: 0,
    presence: "available",
    settings: emptySettings,
    hotkeys: [],
    online: false,
    tab: "phone",
    notice: null,
    directory: [],
    history: [],
    team: null,
    devices: { inputs: [], outputs: [] },
    micLevel: null,
    dialText: "",
    dtmfSent: "",
    busy: null,
  };
}

export function fromSnapshot(s: State, snap: Snapshot): State {
  return {
    ...s,
    session: snap.session,
    restoring: snap.restoring,
    calls: snap.calls,
    missed: snap.missed,
    presence: snap.presence,
    settings: snap.settings,
    hotkeys: snap.hotkeys,
    online: snap.online,
  };
}

/** The incoming call that rings, if any (as the shell says). */
export function ringingCall(s: State): CallView | undefined {
  return s.calls.calls.find((c) => c.call_id === s.calls.ringing);
}

/** The call the call screen shows (as the shell says). */
export function currentCall(s: State): CallView | undefined {
  return s.calls.calls.find((c) => c.call_id === s.calls.current);
}

export function applyApp(s: State, e: AppEvent): State {
  switch (e.event) {
    case "calls": {
      const before = currentCall(s)?.call_id;
      const next = { ...s, calls: e.calls };
      if (currentCall(next)?.call_id !== before) next.dtmfSent = "";
      return next;
    }
    case "missed_calls":
      return { ...s, missed: e.count };
    case "session":
      return e.session
        ? { ...s, session: e.session, restoring: false, online: true }
        : { ...s, session: null, restoring: false, calls: noCalls, online: false, tab: "phone", team: null };
    case "presence":
      return { ...s, presence: e.status };
    case "peer_presence":
      return {
        ...s,
        directory: s.directory.map((d) => (d.user === e.user.user ? { ...d, presence: e.status } : d)),
      };
    case "online":
      return { ...s, online: e.online };
    case "dial":
      return { ...s, dialText: e.number, tab: "phone" };
    case "mic_level":
      return { ...s, micLevel: e.dbfs };
    case "hotkeys":
      return { ...s, hotkeys: e.status };
    case "notice":
      return { ...s, notice: { level: e.level, message: e.message } };
    case "settings":
      return { ...s, settings: e.settings };
  }
}

/** Quality words for a MOS (ITU-T P.800 scale). */
export function mosWord(mos: number): string {
  if (mos >= 4.0) return "excellent";
  if (mos >= 3.6) return "good";
  if (mos >= 3.1) return "fair";
  return "poor";
}

/** Plain words for why a call ended. */
export function endWords(reason: string): string {
  const words: Record<string, string> = {
    completed: "Call ended",
    rejected: "Declined",
    busy: "Busy",
    no_answer: "No answer",
    cancelled: "Cancelled",
    unavailable: "Not available",
    failed: "Connection lost",
    answered_elsewhere: "Answered on another device",
    incompatible: "Could not agree on audio",
    abandoned: "Caller hung up while waiting",
  };
  return words[reason] ?? reason;
}
