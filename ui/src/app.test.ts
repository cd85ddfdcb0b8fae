import { afterEach, describe, expect, it, vi } from "vitest";
import { alice, call, current, ringing, screen, snapshot, start, type Harness } from "./test-util";

let h: Harness | undefined;
afterEach(() => h?.app.stop());

describe("sign-in", () => {
  it("shows 'signing in' while the keyring's token is tried, then the form", async () => {
    h = await start(snapshot({ session: null, restoring: true }));
    expect(screen(h)).toBe("screen-signin");
    expect(h.$("#restoring").hidden).toBe(false);
    expect(h.$("#signin").hidden).toBe(true);
    await h.app_event({ event: "session", session: null });
    expect(h.$("#signin").hidden).toBe(false);
    expect(h.$("#header").hidden).toBe(true);
  });

  it("sends what was typed and switches to the phone on success", async () => {
    h = await start(snapshot({ session: null }), {
      sign_in: () => ({ server: "http://sb", tenant: "acme", user: { user: "alice", display_name: "Alice Martin" }, endpoint_id: "d", role: "agent" }),
    });
    (h.$("#server") as HTMLInputElement).value = "http://sb:8080";
    (h.$("#tenant") as HTMLInputElement).value = "acme";
    (h.$("#user") as HTMLInputElement).value = "alice";
    (h.$("#password") as HTMLInputElement).value = "secret";
    await h.click("#signin-submit");
    const c = h.calls.find((c) => c.cmd === "sign_in");
    expect(c?.args).toEqual({ server: "http://sb:8080", tenant: "acme", user: "alice", password: "secret" });
    expect((h.$("#password") as HTMLInputElement).value).toBe("");
    await h.app_event({ event: "session", session: snapshot().session });
    expect(screen(h)).toBe("screen-phone");
    expect(h.$("#me").textContent).toBe("Alice Martin");
  });

  it("shows a refused sign-in in plain words and keeps the form usable", async () => {
    h = await start(snapshot({ session: null }), {
      sign_in: () => {
        throw { kind: "unauthorized", message: "Sign-in refused or expired — sign in again." };
      },
    });
    (h.$("#tenant") as HTMLInputElement).value = "acme";
    (h.$("#user") as HTMLInputElement).value = "alice";
    (h.$("#password") as HTMLInputElement).value = "wrong";
    await h.click("#signin-submit");
    expect(h.$("#signin-error").textContent).toContain("Sign-in refused");
    expect((h.$("#signin-submit") as HTMLButtonElement).disabled).toBe(false);
  });
});

describe("phone", () => {
  it("lists the directory with presence, and updates presence live", async () => {
    h = await start(snapshot(), {
      directory: () => [
        { user: "alice", display_name: "Alice Martin", presence: "available" },
        { user: "bob", display_name: "Bob Stone", presence: "away" },
        { user: "carol", display_name: "Carol King", presence: "offline" },
      ],
    });
    const entries = h.$$(".dir-entry");
    expect(entries.map((e) => e.dataset.user)).toEqual(["bob", "carol"]);
    expect(entries[0].querySelector(".dot")!.className).toContain("presence-away");
    expect((entries[1].querySelector("button") as HTMLButtonElement).disabled).toBe(true);
    await h.app_event({ event: "peer_presence", user: { user: "carol", display_name: "Carol King" }, status: "dnd" });
    expect(h.$('.dir-entry[data-user="carol"] .dot').className).toContain("presence-dnd");
  });

  it("takes digits from the keyboard and the pad, and dials on Enter", async () => {
    h = await start(snapshot(), { dial: () => "c-9" });
    for (const key of ["2", "0", "0", "1"]) document.body.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));
    await h.click('.key[data-key="#"]');
    expect((h.$("#dial-input") as HTMLInputElement).value).toBe("2001#");
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "Backspace", bubbles: true }));
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    await h.flush();
    expect(h.calls.find((c) => c.cmd === "dial")?.args).toEqual({ to: "2001" });
  });

  it("a tel: link fills the dialer", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "dial", number: "+15550100" });
    expect((h.$("#dial-input") as HTMLInputElement).value).toBe("+15550100");
  });

  it("sets my availability, and shows it on the header dot", async () => {
    h = await start(snapshot());
    const sel = h.$("#presence") as HTMLSelectElement;
    sel.value = "dnd";
    sel.dispatchEvent(new Event("change"));
    await h.flush();
    expect(h.calls.find((c) => c.cmd === "set_presence")?.args).toEqual({ status: "dnd" });
    await h.app_event({ event: "presence", status: "dnd" });
    expect(h.$("#online").className).toContain("presence-dnd");
  });

  it("turns a failed command into a notice instead of a frozen button", async () => {
    h = await start(snapshot(), {
      dial: () => {
        throw { kind: "unreachable", message: "Can't reach the server." };
      },
    });
    (h.$("#dial-input") as HTMLInputElement).value = "bob";
    h.$("#dial-input").dispatchEvent(new Event("input"));
    await h.click("#dial-call");
    expect(h.$("#notice").hidden).toBe(false);
    expect(h.$("#notice").textContent).toContain("Can't reach the server.");
    expect((h.$("#dial-call") as HTMLButtonElement).disabled).toBe(false);
    await h.click("#notice-close");
    expect(h.$("#notice").hidden).toBe(true);
  });
});

describe("incoming call", () => {
  it("shows who calls, answers and declines", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "calls", calls: ringing(call()) });
    expect(screen(h)).toBe("incoming");
    expect(h.$("#incoming-name").textContent).toBe("Bob Stone");
    expect(h.$("#incoming-number").textContent).toBe("bob");
    await h.click("#answer");
    expect(h.calls.find((c) => c.cmd === "answer")?.args).toEqual({ callId: "c-1" });
    await h.click("#decline");
    expect(h.calls.find((c) => c.cmd === "decline")?.args).toEqual({ callId: "c-1" });
  });
});

describe("queue call", () => {
  it("shows the screen-pop before answering and the line during the call", async () => {
    h = await start(snapshot());
    const queue = { name: "support", waited_ms: 48_000, email: "zoe@example.org", topic: "Broken headset",
      page: "https://shop.example/help", earlier_calls: 2 };
    const c = call({ peer: { user: "guest-0123456789abcdef", display_name: "Zoe Quinn" }, queue });
    await h.app_event({ event: "calls", calls: ringing(c) });
    expect(screen(h)).toBe("incoming");
    expect(h.$("#incoming-name").textContent).toBe("Zoe Quinn");
    expect(h.$("#incoming-number").textContent).toBe("");
    expect(h.$("#screen-pop").hidden).toBe(false);
    expect(h.$("#pop-queue").textContent).toBe("via support · waited 0:48");
    expect(h.$("#pop-topic").textContent).toBe("Broken headset");
    expect(h.$("#pop-email").textContent).toBe("zoe@example.org");
    expect(h.$("#pop-page").textContent).toBe("from https://shop.example/help");
    expect(h.$("#pop-earlier").textContent).toBe("2 earlier calls");
    await h.app_event({ event: "calls", calls: current({ ...c, state: { state: "active" }, answered_at_ms: Date.now() }) });
    expect(screen(h)).toBe("call");
    expect(h.$("#call-queue").hidden).toBe(false);
    expect(h.$("#call-queue").textContent).toBe("via support · Broken headset");
  });

  it("shows no screen-pop for a direct call", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "calls", calls: ringing(call()) });
    expect(h.$("#screen-pop").hidden).toBe(true);
    expect(h.$("#incoming-number").textContent).toBe("bob");
  });
});

describe("active call", () => {
  const stats = { rtt_ms: 12, jitter_ms: 3.5, loss_pct: 0.5, send_kbps: 33, recv_kbps: 32, packets_sent: 100, packets_received: 99, jitter_buffer_ms: 40, mos: 4.3, local_candidate: "relay" as const, remote_candidate: "host" as const };

  it("shows the timer, the quality with its figures, and the controls", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "calls", calls: current(call({ state: { state: "active" }, answered_at_ms: Date.now() - 65_000 })) });
    expect(screen(h)).toBe("call");
    expect(h.$("#call-timer").textContent).toBe("01:05");
    expect(h.$("#call-state").textContent).toBe("Connected");
    expect(h.$("#quality").dataset.mos).toBeUndefined();
    await h.app_event({ event: "calls", calls: current(call({ state: { state: "active" }, answered_at_ms: Date.now(), stats })) });
    expect(h.$("#quality").dataset.mos).toBe("4.3");
    expect(h.$("#quality").title).toContain("RTT 12 ms");
    expect(h.$("#quality").title).toContain("Loss 0.5 %");
    expect(h.$("#quality").title).toContain("Relayed through the TURN server");
    expect(h.$$(".quality .bar.on").length).toBe(4);
  });

  it("mutes, holds, sends DTMF from the keypad and the keyboard, and hangs up", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "calls", calls: current(call({ state: { state: "active" }, answered_at_ms: Date.now() })) });
    await h.click("#mute");
    expect(h.calls.find((c) => c.cmd === "set_mute")?.args).toEqual({ callId: "c-1", muted: true });
    await h.app_event({ event: "calls", calls: current(call({ state: { state: "active" }, muted: true, answered_at_ms: Date.now() })) });
    expect(h.$("#mute").getAttribute("aria-pressed")).toBe("true");
    expect(h.$("#mute").textContent).toBe("Unmute");
    await h.click("#hold");
    expect(h.calls.find((c) => c.cmd === "set_hold")?.args).toEqual({ callId: "c-1", held: true });
    await h.app_event({ event: "calls", calls: current(call({ state: { state: "held", local: true, remote: false }, answered_at_ms: Date.now() })) });
    expect(h.$("#call-state").textContent).toBe("On hold");
    expect(h.$("#hold").textContent).toBe("Resume");
    await h.click("#dtmf-toggle");
    await h.click('.dtmf-key[data-key="5"]');
    document.body.dispatchEvent(new KeyboardEvent("keydown", { key: "#", bubbles: true }));
    await h.flush();
    expect(h.calls.filter((c) => c.cmd === "send_dtmf").map((c) => c.args.digits)).toEqual(["5", "#"]);
    expect(h.$("#dtmf-sent").textContent).toBe("5#");
    await h.click("#hangup");
    expect(h.calls.find((c) => c.cmd === "hangup")?.args).toEqual({ callId: "c-1" });
    await h.app_event({ event: "calls", calls: { calls: [], ringing: null, current: null } });
    expect(screen(h)).toBe("screen-phone");
  });

  it("an outgoing call shows Calling… before the answer", async () => {
    h = await start(snapshot());
    await h.app_event({ event: "calls", calls: current(call({ direction: "outgoing", state: { state: "ringing" } })) });
    expect(screen(h)).toBe("call");
    expect(h.$("#call-state").textContent).toBe("Ringing…");
    expect((h.$("#mute") as HTMLButtonElement).disabled).toBe(true);
  });
});

describe("history", () => {
  const rec = (id: string, over: Record<string, unknown>) => ({
    call_id: id, direction: "incoming", caller: { user: "bob", display_name: "Bob Stone" }, callee: { user: "alice", display_name: "Alice Martin" },
    answered_device: null, created_at_ms: Date.now(), ringing_at_ms: null, answered_at_ms: null, ended_at_ms: Date.now(),
    duration_ms: 0, end_reason: "no_answer", ended_by: null, missed: true, caller_quality: null, callee_quality: null,
    queue: null, wait_ms: null, ...over,
  });

  it("highlights missed calls, counts them, and calls back in one click", async () => {
    h = await start(snapshot({ missed: 2 }), {
      history: () => [rec("c-2", {}), rec("c-1", { direction: "outgoing", missed: false, end_reason: "completed", duration_ms: 61_000 })],
    });
    expect(h.$("#missed-badge").hidden).toBe(false);
    expect(h.$("#missed-badge").textContent).toBe("2");
    await h.click("#tab-history");
    expect(h.calls.some((c) => c.cmd === "missed_seen")).toBe(true);
    const items = h.$$(".history-item");
    expect(items.length).toBe(2);
    expect(items[0].classList.contains("missed")).toBe(true);
    expect(items[0].textContent).toContain("Missed");
    expect(items[1].classList.contains("missed")).toBe(false);
    expect(items[1].textContent).toContain("1:01");
    await h.app_event({ event: "missed_calls", count: 0 });
    expect(h.$("#missed-badge").hidden).toBe(true);
    (items[1].querySelector(".callback") as HTMLElement).click();
    await h.flush();
    expect(h.calls.find((c) => c.cmd === "dial")?.args).toEqual({ to: "alice" });
  });

  it("is not rebuilt by the clock while the window idles; the call timer ticks", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    try {
      h = await start(snapshot(), { history: () => [rec("c-1", {})] });
      await h.click("#tab-history");
      const before = h.$$(".history-item")[0];
      expect(before).toBeDefined();
      vi.advanceTimersByTime(5_000);
      expect(h.$$(".history-item")[0]).toBe(before);

      await h.app_event({ event: "calls", calls: current(call({ state: { state: "active" }, answered_at_ms: Date.now() })) });
      expect(h.$("#call-timer").textContent).toBe("00:00");
      vi.advanceTimersByTime(3_000);
      expect(h.$("#call-timer").textContent).toBe("00:03");
    } finally {
      vi.useRealTimers();
    }
  });
});

describe("team view", () => {
  const view = (now: number, waiting: number) => ({
    now_ms: now,
    queues: [{
      name: "support", number: "2001",
      waiting: waiting > 0 ? [{ call_id: "q-1", caller: { user: "guest-1", display_name: "Zoe Quinn" }, since_ms: now - 42_000, offered_to: ["bob"] }] : [],
      longest_wait_ms: waiting > 0 ? 42_000 : 0, agents_available: 1, agents_busy: 0, agents_wrap_up: 0,
    }],
    agents: [
      { agent: { user: "bob", display_name: "Bob Stone" }, state: waiting > 0 ? "ringing" : "available", since_ms: now - 5_000, queues: ["support"] },
      { agent: { user: "carol", display_name: "Carol King" }, state: "offline", since_ms: now - 3_600_000, queues: ["support"] },
    ],
  });

  it("is only for supervisors and admins", async () => {
    h = await start(snapshot());
    expect(h.$("#tab-team").hidden).toBe(true);
    h.app.stop();
    h = await start(snapshot({ session: { ...alice, role: "admin" } }));
    expect(h.$("#tab-team").hidden).toBe(false);
  });

  it("shows queues, waiting callers and agents' states, read again while shown", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    try {
      let reads = 0;
      const t0 = 1_700_000_000_000;
      h = await start(snapshot({ session: { ...alice, role: "supervisor" } }), {
        supervisor: () => view(t0 + 2_000 * reads, reads++ === 0 ? 1 : 0),
      });
      expect(reads).toBe(0);
      await h.click("#tab-team");
      expect(screen(h)).toBe("screen-team");
      expect(reads).toBe(1);
      const q = h.$(".team-queue");
      expect(q.dataset.queue).toBe("support");
      expect(q.textContent).toContain("1 waiting · longest 00:42");
      expect(h.$(".waiting-caller").textContent).toContain("Zoe Quinn");
      expect(h.$(".waiting-caller").textContent).toContain("ringing bob");
      const agents = h.$$(".team-agent");
      expect(agents.map((a) => [a.dataset.user, a.dataset.state])).toEqual([["bob", "ringing"], ["carol", "offline"]]);
      expect(agents[1].querySelector(".in-state")?.textContent).toBe("1:00:00");

      vi.advanceTimersByTime(2_000);
      await h.flush();
      expect(reads).toBe(2);
      expect(h.$$(".waiting-caller").length).toBe(0);
      expect(h.$(".team-agent").dataset.state).toBe("available");

      // Away from the tab, it is not read any more.
      await h.click("#tab-phone");
      vi.advanceTimersByTime(10_000);
      await h.flush();
      expect(reads).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it("stops reading and says why when the server refuses", async () => {
    h = await start(snapshot({ session: { ...alice, role: "supervisor" } }), {
      supervisor: () => {
        throw { kind: "other", message: "supervisors and administrators only" };
      },
    });
    await h.click("#tab-team");
    expect(h.$("#notice").textContent).toContain("supervisors and administrators only");
  });
});

describe("settings", () => {
  it("lists devices, saves, and shows a hotkey that could not be registered", async () => {
    h = await start(snapshot(), {
      devices: () => ({ inputs: ["Headset mic"], outputs: ["Headset", "Speakers"] }),
      save_settings: () => [
        { action: "answer", accelerator: "Ctrl+Alt+A", registered: true, error: null },
        { action: "hangup", accelerator: "Ctrl+Alt+H", registered: false, error: "taken by another program? already registered" },
        { action: "mute", accelerator: "Ctrl+Alt+M", registered: true, error: null },
        { action: "hold", accelerator: "", registered: false, error: null },
      ],
    });
    await h.click("#tab-settings");
    expect(screen(h)).toBe("screen-settings");
    const ringer = h.$("#set-ringer") as HTMLSelectElement;
    expect(Array.from(ringer.options).map((o) => o.value)).toEqual(["", "Headset", "Speakers"]);
    ringer.value = "Speakers";
    (h.$("#hk-hold") as HTMLInputElement).value = "";
    (h.$("#set-autostart") as HTMLInputElement).checked = true;
    await h.click("#settings-save");
    const saved = h.calls.find((c) => c.cmd === "save_settings")?.args.settings as Record<string, unknown>;
    expect(saved.ringer_device).toBe("Speakers");
    expect(saved.start_at_login).toBe(true);
    expect((saved.hotkeys as Record<string, string>).hold).toBe("");
    expect(h.$("#hk-hangup-status").textContent).toContain("taken by another program");
    expect(h.$("#hk-answer-status").textContent).toContain("active");
    expect(h.$("#settings-saved").textContent).toContain("could not be registered");
  });

  it("runs the mic meter while asked and shows the level", async () => {
    h = await start(snapshot());
    await h.click("#tab-settings");
    await h.click("#meter-toggle");
    expect(h.calls.find((c) => c.cmd === "mic_meter")?.args).toEqual({ on: true, device: null });
    await h.app_event({ event: "mic_level", dbfs: -23 });
    expect((h.$("#mic-meter") as HTMLMeterElement).value).toBe(-23);
    await h.click("#tab-phone");
    expect(h.calls.filter((c) => c.cmd === "mic_meter").at(-1)?.args).toEqual({ on: false, device: null });
  });

  it("signs out", async () => {
    h = await start(snapshot());
    await h.click("#signout");
    expect(h.calls.some((c) => c.cmd === "sign_out")).toBe(true);
    await h.app_event({ event: "session", session: null });
    expect(screen(h)).toBe("screen-signin");
  });
});
