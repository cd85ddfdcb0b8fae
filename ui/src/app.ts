// The app: one state, screens built once and shown by state, keyboard
// digits for the dial pad and DTMF, and the notice bar for errors.
import { backend as realBackend, type Backend, type Presence, type UiError, asUiError } from "./backend";
import { h } from "./dom";
import {
  applyApp,
  currentCall,
  fromSnapshot,
  initialState,
  ringingCall,
  type State,
  type Tab,
} from "./store";
import { callView, sendDigit } from "./views/call";
import { historyView } from "./views/history";
import { supervises, teamView } from "./views/team";
import { incomingView } from "./views/incoming";
import { phoneView } from "./views/phone";
import { settingsView } from "./views/settings";
import { signinView } from "./views/signin";
import type { AppApi, Mounted } from "./views/view";

/** Plain words for any failure. */
export function errorText(e: unknown): string {
  const err = asUiError(e);
  return err.message;
}

export class App implements AppApi {
  state: State = initialState();
  private views: Record<string, Mounted> = {};
  private header!: { el: HTMLElement; update(s: State): void };
  private noticeEl!: HTMLElement;
  private timer: ReturnType<typeof setInterval> | undefined;
  readonly root: HTMLElement;
  readonly backend: Backend;

  constructor(root: HTMLElement, backend: Backend = realBackend) {
    this.root = root;
    this.backend = backend;
  }

  /** Subscribes to events, then loads the snapshot (so nothing is missed). */
  async start(): Promise<void> {
    this.build();
    await this.backend.onApp((e) => this.set((s) => applyApp(s, e)));
    const snap = await this.backend.snapshot();
    this.set((s) => fromSnapshot(s, snap));
    document.addEventListener("keydown", this.keyHandler);
    // The clock only shows on the call screen (its timer); ticking other
    // screens would rebuild lists every second for nothing, garbage that
    // an idle window would pile up between collections.
    this.timer = setInterval(() => {
      if (this.screen() === "call") this.render();
    }, 1000);
  }

  stop(): void {
    clearInterval(this.timer);
    document.removeEventListener("keydown", this.keyHandler);
  }

  private readonly keyHandler = (e: KeyboardEvent) => this.onKey(e);

  set(patch: Partial<State> | ((s: State) => State)): void {
    this.state = typeof patch === "function" ? patch(this.state) : { ...this.state, ...patch };
    this.render();
  }

  errorText(e: unknown): string {
    return errorText(e);
  }

  showError(e: UiError): void {
    this.set({ notice: { level: "error", message: e.message } });
  }

  async run(what: string, f: () => Promise<unknown>): Promise<void> {
    this.set({ busy: what });
    try {
      await f();
    } catch (e) {
      this.showError(asUiError(e));
    } finally {
      if (this.state.busy === what) this.set({ busy: null });
    }
  }

  private build(): void {
    this.views = {
      signin: signinView(this),
      phone: phoneView(this),
      history: historyView(this),
      team: teamView(this),
      settings: settingsView(this),
      incoming: incomingView(this),
      call: callView(this),
    };
    this.header = this.buildHeader();
    this.noticeEl = h("div", { id: "notice", role: "status", hidden: true });
    this.root.replaceChildren(
      this.header.el,
      this.noticeEl,
      ...Object.values(this.views).map((v) => v.el),
    );
    this.render();
  }

  private buildHeader() {
    const me = h("span", { id: "me" });
    const online = h("span", { id: "online", class: "dot" });
    const presence = h(
      "select",
      {
        id: "presence",
        title: "My availability",
        onchange: () => {
          const status = presence.value as Presence;
          this.set({ presence: status });
          void this.run("presence", () => this.backend.setPresence(status));
        },
      },
      h("option", { value: "available" }, "Available"),
      h("option", { value: "away" }, "Away"),
      h("option", { value: "dnd" }, "Do not disturb"),
    );
    const tab = (id: Tab, label: string, ...extra: Node[]) =>
      h("button", { id: `tab-${id}`, class: "tab", onclick: () => this.set({ tab: id }) }, label, ...extra);
    const badge = h("span", { id: "missed-badge", class: "badge", hidden: true });
    const tabs = [tab("phone", "Phone"), tab("history", "History", badge), tab("team", "Team"), tab("settings", "Settings")];
    const signout = h("button", { id: "signout", class: "ghost", onclick: () => this.run("signout", () => this.backend.signOut()) }, "Sign out");
    const el = h(
      "header",
      { id: "header" },
      h("div", { class: "row spread" }, h("span", {}, online, me), presence, signout),
      h("nav", { class: "tabs" }, ...tabs),
    );
    return {
      el,
      update: (s: State) => {
        me.textContent = s.session ? s.session.user.display_name : "";
        online.className = `dot ${s.online ? "presence-" + s.presence : "presence-offline"}`;
        online.title = s.online ? s.presence : "offline — reconnecting";
        presence.value = s.presence;
        badge.hidden = s.missed === 0;
        badge.textContent = String(s.missed);
        for (const t of tabs) t.classList.toggle("active", t.id === `tab-${s.tab}`);
        const team = tabs[2];
        if (team) team.hidden = !supervises(s);
      },
    };
  }

  /** Shows the screen the state calls for. */
  screen(): string {
    const s = this.state;
    if (!s.session) return "signin";
    if (ringingCall(s)) return "incoming";
    if (currentCall(s)) return "call";
    return s.tab;
  }

  render(): void {
    if (!this.header) return;
    const s = this.state;
    const screen = this.screen();
    this.header.el.hidden = !s.session;
    this.header.update(s);
    for (const [name, v] of Object.entries(this.views)) {
      v.el.hidden = name !== screen;
      if (!v.el.hidden || name === "history" || name === "team" || name === "settings") v.update(s);
    }
    this.noticeEl.hidden = !s.notice;
    if (s.notice) {
      this.noticeEl.className = `notice ${s.notice.level}`;
      this.noticeEl.replaceChildren(
        h("span", { class: "grow" }, s.notice.message),
        h("button", { class: "ghost", id: "notice-close", onclick: () => this.set({ notice: null }) }, "✕"),
      );
    }
  }

  /** Digits from the keyboard: into the dial pad, or DTMF in a call. */
  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement | null;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    if (e.ctrlKey || e.altKey || e.metaKey) return;
    const screen = this.screen();
    const digit = /^[0-9*#]$/.test(e.key) ? e.key : null;
    if (screen === "call" && digit) {
      sendDigit(this, digit);
    } else if (screen === "phone") {
      if (digit) this.set({ dialText: this.state.dialText + digit });
      else if (e.key === "Backspace") this.set({ dialText: this.state.dialText.slice(0, -1) });
      else if (e.key === "Enter" && this.state.dialText.trim()) {
        const to = this.state.dialText.trim();
        void this.run("dial", () => this.backend.dial(to));
      }
    }
  }
}
