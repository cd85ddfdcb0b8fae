// The one module that talks to the Rust shell: every command and event
// subscription of the UI goes through here. Types come from ./bindings,
// generated from the Rust types.
import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  AppEvent,
  AudioDevices,
  CallRecord,
  DirectoryEntry,
  HotkeyStatus,
  Presence,
  SessionInfo,
  Settings,
  Snapshot,
  SupervisorView,
  UiError,
} from "./bindings";

export type * from "./bindings";

/** Turns whatever a command rejected with into a UiError. */
export function asUiError(e: unknown): UiError {
  if (e && typeof e === "object" && "message" in e && "kind" in e) return e as UiError;
  return { kind: "other", message: String(e) };
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (e) {
    throw asUiError(e);
  }
}

export const backend = {
  snapshot: () => call<Snapshot>("snapshot"),
  signIn: (server: string, tenant: string, user: string, password: string) =>
    call<SessionInfo>("sign_in", { server, tenant, user, password }),
  signOut: () => call<void>("sign_out"),
  dial: (to: string) => call<string>("dial", { to }),
  answer: (callId: string) => call<void>("answer", { callId }),
  decline: (callId: string) => call<void>("decline", { callId }),
  hangup: (callId: string) => call<void>("hangup", { callId }),
  setMute: (callId: string, muted: boolean) => call<void>("set_mute", { callId, muted }),
  setHold: (callId: string, held: boolean) => call<void>("set_hold", { callId, held }),
  sendDtmf: (callId: string, digits: string) => call<void>("send_dtmf", { callId, digits }),
  setPresence: (status: Presence) => call<void>("set_presence", { status }),
  directory: (query: string) => call<DirectoryEntry[]>("directory", { query }),
  history: (limit = 50) => call<CallRecord[]>("history", { limit }),
  missedSeen: () => call<void>("missed_seen"),
  supervisor: () => call<SupervisorView>("supervisor"),
  devices: () => call<AudioDevices>("devices"),
  setCallDevices: (callId: string, input: string | null, output: string | null) =>
    call<void>("set_call_devices", { callId, input, output }),
  saveSettings: (settings: Settings) => call<HotkeyStatus[]>("save_settings", { settings }),
  testRinger: (settings: Settings) => call<void>("test_ringer", { settings }),
  testOutput: (settings: Settings) => call<void>("test_output", { settings }),
  micMeter: (on: boolean, device: string | null) => call<void>("mic_meter", { on, device }),
  onApp: (f: (e: AppEvent) => void): Promise<UnlistenFn> =>
    listen<AppEvent>("app", (e) => f(e.payload)),
};

export type Backend = typeof backend;
