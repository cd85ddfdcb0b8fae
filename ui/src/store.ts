// The UI's state: the shell's snapshot, kept current by `app` and `engine`
// events, plus what only the UI knows (tab, dial text, search results).
import type {
  AppEvent,
  CallRecord,
  CallView,
  Devices,
  DirectoryEntry,
  EngineEvent,
  HotkeyStatus,
  NoticeLevel,
  Presence,
  SessionInfo,
  Settings,
  Snapshot,
} from "./backend";

export type Tab = "phone" | "history" | "settings";

export interface State {
  session: SessionInfo | null;
  restoring: boolean;
  calls: CallView[];
  missed: number;
  presence: Presence;
  settings: Settings;
  hotkeys: HotkeyStatus[];
  online: boolean;
  tab: Tab;
  notice: { level: NoticeLevel; message: string } | null;
  directory: DirectoryEntry[];
  history: CallRecord[];
  devices: Devices;
  micLevel: number | null;
  dialText: string;
  /** DTMF digits sent in the current call, for the keypad's display. */
  dtmfSent: string;
  /** A command is under way (buttons show it instead of freezing). */
  busy: string | null;
}

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
  device_id: "",
};

export function initialState(): State {
  return {
    session: null,
    restoring: true,
    calls: [],
    missed: 0,
    presence: "available",
    settings: emptySettings,
    hotkeys: [],
    online: false,
    tab: "phone",
    notice: null,
    directory: [],
    history: [],
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

/** The incoming call that rings, if any. */
export function ringingCall(s: State): CallView | undefined {
  return s.calls.find((c) => !c.outgoing && c.state.state === "ringing");
}

/** The call the call screen shows: ours, or one we answered. */
export function currentCall(s: State): CallView | undefined {
  return s.calls.find((c) => c.outgoing || c.state.state !== "ringing");
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
        : { ...s, session: null, restoring: false, calls: [], online: false, tab: "phone" };
    case "presence":
      return { ...s, presence: e.status };
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

export function applyEngine(s: State, e: EngineEvent): State {
  if (e.event === "presence") {
    return {
      ...s,
      directory: s.directory.map((d) =>
        d.user === e.user.user ? { ...d, presence: e.status } : d,
      ),
    };
  }
  if (e.event === "reconnecting") {
    return { ...s, online: false };
  }
  if (e.event === "registered") {
    return { ...s, online: true };
  }
  return s;
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
  };
  return words[reason] ?? reason;
}
