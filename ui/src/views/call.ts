// The call in progress: timer, mute, hold, DTMF keypad, devices, live
// quality, hang up.
import { clock, fill, h } from "../dom";
import { currentCall, mosWord } from "../store";
import type { CallView } from "../backend";
import { KEYS } from "./phone";
import type { View } from "./view";

export function stateWords(c: CallView): string {
  switch (c.state.state) {
    case "dialing":
      return "Calling…";
    case "ringing":
      return "Ringing…";
    case "connecting":
      return "Connecting…";
    case "active":
      return "Connected";
    case "held":
      return c.state.local ? "On hold" : "Held by the other side";
    case "ended":
      return "Ended";
  }
}

export const callView: View = (app) => {
  const peer = h("div", { id: "call-peer", class: "big-name" });
  const state = h("div", { id: "call-state", class: "muted" });
  const queueLine = h("div", { id: "call-queue", class: "muted", hidden: true });
  const timer = h("div", { id: "call-timer", class: "timer" }, "00:00");
  const id = () => currentCall(app.state)?.call_id ?? "";
  const mute = h("button", {
    id: "mute",
    class: "toggle",
    "aria-pressed": "false",
    onclick: () => {
      const c = currentCall(app.state);
      if (c) void app.run("mute", () => app.backend.setMute(c.call_id, !c.muted));
    },
  }, "Mute");
  const hold = h("button", {
    id: "hold",
    class: "toggle",
    "aria-pressed": "false",
    onclick: () => {
      const c = currentCall(app.state);
      if (!c) return;
      const held = c.state.state === "held" && c.state.local;
      void app.run("hold", () => app.backend.setHold(c.call_id, !held));
    },
  }, "Hold");
  const sent = h("div", { id: "dtmf-sent", class: "mono" });
  const keypad = h(
    "div",
    { class: "keypad small", id: "dtmf-pad", hidden: true },
    ...KEYS.map((k) =>
      h("button", { class: "key dtmf-key", "data-key": k, onclick: () => sendDigit(app, k) }, k),
    ),
  );
  const keypadBtn = h("button", {
    id: "dtmf-toggle",
    class: "toggle",
    "aria-pressed": "false",
    onclick: () => {
      keypad.hidden = !keypad.hidden;
      keypadBtn.setAttribute("aria-pressed", String(!keypad.hidden));
    },
  }, "Keypad");
  const input = h("select", { id: "call-input", title: "Microphone" });
  const output = h("select", { id: "call-output", title: "Headset or speaker" });
  const switchDevices = () =>
    app.run("devices", () => app.backend.setCallDevices(id(), input.value || null, output.value || null));
  input.addEventListener("change", switchDevices);
  output.addEventListener("change", switchDevices);
  const bars = [1, 2, 3, 4].map((i) => h("span", { class: `bar b${i}` }));
  const quality = h("div", { id: "quality", class: "quality", tabindex: "0" }, ...bars, h("span", { id: "quality-word", class: "muted" }, "measuring…"));
  const hangup = h("button", {
    id: "hangup",
    class: "decline big",
    onclick: () => app.run("hangup", () => app.backend.hangup(id())),
  }, "Hang up");
  let devicesFor = "";

  return {
    el: h(
      "section",
      { id: "call", class: "screen" },
      peer,
      state,
      queueLine,
      timer,
      quality,
      h("div", { class: "row controls" }, mute, hold, keypadBtn),
      keypad,
      sent,
      h("div", { class: "devices" }, h("label", {}, "Mic", input), h("label", {}, "Out", output)),
      hangup,
    ),
    update: (s) => {
      const c = currentCall(s);
      if (!c) {
        state.textContent = "";
        timer.textContent = "00:00";
        return;
      }
      // An outgoing call knows only the number dialed; the directory may
      // know the name.
      const known = s.directory.find((d) => d.user === c.peer.user);
      peer.textContent =
        (c.peer.display_name !== c.peer.user ? c.peer.display_name : known?.display_name) ||
        c.peer.user ||
        "…";
      state.textContent = stateWords(c);
      // A queue call keeps what the caller came for in view.
      queueLine.hidden = !c.queue;
      queueLine.textContent = c.queue ? [`via ${c.queue.name}`, c.queue.topic].filter(Boolean).join(" · ") : "";
      timer.textContent = c.answered_at_ms ? clock(Date.now() - c.answered_at_ms) : "00:00";
      const up = c.state.state === "active" || c.state.state === "held";
      mute.disabled = !up;
      hold.disabled = !up || s.busy === "hold";
      mute.setAttribute("aria-pressed", String(c.muted));
      mute.textContent = c.muted ? "Unmute" : "Mute";
      const held = c.state.state === "held" && c.state.local;
      hold.setAttribute("aria-pressed", String(held));
      hold.textContent = held ? "Resume" : "Hold";
      keypadBtn.disabled = !up;
      sent.textContent = s.dtmfSent;
      const st = c.stats;
      if (st) {
        const level = st.mos >= 4.0 ? 4 : st.mos >= 3.6 ? 3 : st.mos >= 3.1 ? 2 : 1;
        bars.forEach((b, i) => b.classList.toggle("on", i < level));
        quality.dataset.mos = st.mos.toFixed(1);
        quality.title =
          `MOS ${st.mos.toFixed(1)} (${mosWord(st.mos)})\n` +
          `RTT ${st.rtt_ms == null ? "–" : st.rtt_ms.toFixed(0) + " ms"}\n` +
          `Jitter ${st.jitter_ms.toFixed(1)} ms\n` +
          `Loss ${st.loss_pct.toFixed(1)} %\n` +
          `${st.send_kbps.toFixed(0)} kbit/s out, ${st.recv_kbps.toFixed(0)} kbit/s in` +
          (st.local_candidate === "relay" || st.remote_candidate === "relay"
            ? "\nRelayed through the TURN server"
            : st.local_candidate
              ? "\nDirect path"
              : "");
        quality.querySelector("#quality-word")!.textContent = mosWord(st.mos);
      } else {
        bars.forEach((b) => b.classList.remove("on"));
        delete quality.dataset.mos;
      }
      if (devicesFor !== c.call_id) {
        devicesFor = c.call_id;
        const opts = (names: string[], chosen: string | null) => [
          h("option", { value: "" }, "Keep current"),
          ...names.map((n) => h("option", { value: n, selected: n === chosen }, n)),
        ];
        fill(input, ...opts(s.devices.inputs, null));
        fill(output, ...opts(s.devices.outputs, null));
      }
    },
  };
};

/** Sends one DTMF digit in the current call. */
export function sendDigit(app: Parameters<View>[0], digit: string): void {
  const c = currentCall(app.state);
  if (!c) return;
  app.set((s) => ({ ...s, dtmfSent: s.dtmfSent + digit }));
  void app.run("dtmf", () => app.backend.sendDtmf(c.call_id, digit));
}
