// Test harness: the real App and backend module over Tauri's mockIPC, with
// a log of every command and a way to send shell events.
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { App } from "./app";
import type { AppEvent, Calls, CallView, Role, Settings, Snapshot } from "./backend";
import { emptySettings, noCalls } from "./store";

export interface Harness {
  app: App;
  root: HTMLElement;
  calls: { cmd: string; args: Record<string, unknown> }[];
  app_event(e: AppEvent): Promise<void>;
  $(sel: string): HTMLElement;
  $$(sel: string): HTMLElement[];
  click(sel: string): Promise<void>;
  flush(): Promise<void>;
}

export const alice = { server: "http://sb", tenant: "acme", user: { user: "alice", display_name: "Alice Martin" }, endpoint_id: "desktop-1", role: "agent" as Role };

export function snapshot(over: Partial<Snapshot> = {}): Snapshot {
  return {
    session: alice,
    restoring: false,
    calls: noCalls,
    missed: 0,
    presence: "available",
    settings: { ...emptySettings, hotkeys: { answer: "Ctrl+Alt+A", hangup: "Ctrl+Alt+H", mute: "Ctrl+Alt+M", hold: "Ctrl+Alt+P" } } as Settings,
    hotkeys: [],
    online: true,
    ...over,
  };
}

export function call(over: Partial<CallView> = {}): CallView {
  return {
    call_id: "c-1",
    peer: { user: "bob", display_name: "Bob Stone" },
    direction: "incoming",
    state: { state: "ringing" },
    muted: false,
    answered_at_ms: null,
    stats: null,
    queue: null,
    ...over,
  };
}

/** What the shell sends while `c` rings at us. */
export function ringing(c: CallView): Calls {
  return { calls: [c], ringing: c.call_id, current: null };
}

/** What the shell sends while `c` is the current call. */
export function current(c: CallView): Calls {
  return { calls: [c], ringing: null, current: c.call_id };
}

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

export async function start(
  snap: Snapshot,
  handlers: Record<string, (args: Record<string, unknown>) => unknown> = {},
): Promise<Harness> {
  clearMocks();
  const calls: Harness["calls"] = [];
  mockIPC(
    (cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      if (cmd === "snapshot") return snap;
      const f = handlers[cmd];
      if (f) return f(args);
      if (cmd === "directory") return [];
      if (cmd === "history") return [];
      if (cmd === "devices") return { inputs: [], outputs: [] };
      return null;
    },
    { shouldMockEvents: true },
  );
  document.body.innerHTML = '<div id="app"></div>';
  const root = document.getElementById("app")!;
  const app = new App(root);
  await app.start();
  await flush();
  const $ = (sel: string) => {
    const el = root.querySelector<HTMLElement>(sel);
    if (!el) throw new Error(`no ${sel}`);
    return el;
  };
  return {
    app,
    root,
    calls,
    $,
    $$: (sel) => Array.from(root.querySelectorAll<HTMLElement>(sel)),
    async app_event(e) {
      await emit("app", e);
      await flush();
    },
    async click(sel) {
      $(sel).click();
      await flush();
    },
    flush,
  };
}

/** The screen shown: the one section not hidden. */
export function screen(h: Harness): string {
  return h.$$("section.screen").filter((s) => !s.hidden).map((s) => s.id).join(",");
}
