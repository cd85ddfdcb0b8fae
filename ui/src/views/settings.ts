// Settings: devices (with a test tone and a live mic meter), hotkeys,
// ringtone and volume, start at login, start minimised.
import { fill, h } from "../dom";
import type { HotkeyAction, Ringtone, Settings } from "../backend";
import type { View } from "./view";

const ACTIONS: [HotkeyAction, string][] = [
  ["answer", "Answer"],
  ["hangup", "Hang up / decline"],
  ["mute", "Mute on/off"],
  ["hold", "Hold on/off"],
];

export const settingsView: View = (app) => {
  const sel = (id: string) => h("select", { id });
  const input = sel("set-input");
  const output = sel("set-output");
  const ringer = sel("set-ringer");
  const ringtone = h(
    "select",
    { id: "set-ringtone" },
    h("option", { value: "classic" }, "Classic"),
    h("option", { value: "soft" }, "Soft chime"),
    h("option", { value: "digital" }, "Digital"),
  );
  const volume = h("input", { id: "set-volume", type: "range", min: "0", max: "100", step: "5" });
  const autostart = h("input", { id: "set-autostart", type: "checkbox" });
  const minimised = h("input", { id: "set-minimised", type: "checkbox" });
  const meter = h("meter", { id: "mic-meter", min: "-60", max: "0", low: "-40", high: "-6", optimum: "-20", value: "-60" });
  const meterBtn = h("button", { id: "meter-toggle", class: "ghost" }, "Check microphone");
  const hk: Record<HotkeyAction, HTMLInputElement> = {} as Record<HotkeyAction, HTMLInputElement>;
  const hkStatus: Record<HotkeyAction, HTMLElement> = {} as Record<HotkeyAction, HTMLElement>;
  const hotkeyRows = ACTIONS.map(([a, label]) => {
    hk[a] = h("input", { id: `hk-${a}`, placeholder: "none", autocomplete: "off" });
    hkStatus[a] = h("small", { class: "hk-status", id: `hk-${a}-status` });
    return h("label", {}, label, hk[a], hkStatus[a]);
  });
  const saved = h("span", { id: "settings-saved", class: "muted" });

  const read = (): Settings => ({
    ...app.state.settings,
    input_device: input.value || null,
    output_device: output.value || null,
    ringer_device: ringer.value || null,
    ringtone: ringtone.value as Ringtone,
    ringtone_volume: Number(volume.value) / 100,
    hotkeys: { answer: hk.answer.value, hangup: hk.hangup.value, mute: hk.mute.value, hold: hk.hold.value },
    start_at_login: autostart.checked,
    start_minimised: minimised.checked,
  });
  const save = h("button", {
    id: "settings-save",
    class: "primary",
    onclick: async () => {
      saved.textContent = "";
      await app.run("save", async () => {
        const status = await app.backend.saveSettings(read());
        app.set({ hotkeys: status });
        saved.textContent = status.every((s) => s.registered || !s.accelerator) ? "Saved." : "Saved; a hotkey could not be registered.";
      });
    },
  }, "Save");
  let metering = false;
  meterBtn.addEventListener("click", async () => {
    metering = !metering;
    meterBtn.textContent = metering ? "Stop" : "Check microphone";
    await app.run("meter", () => app.backend.micMeter(metering, input.value || null));
  });

  let loaded = false;
  let filledFrom = "";
  return {
    el: h(
      "section",
      { id: "screen-settings", class: "screen" },
      h("h2", {}, "Audio"),
      h("label", {}, "Microphone", input),
      h("div", { class: "row" }, meterBtn, meter),
      h("label", {}, "Headset / speaker", output),
      h("button", { id: "test-output", class: "ghost", onclick: () => app.run("test", () => app.backend.testOutput(read())) }, "Play test tone"),
      h("label", {}, "Ringer device", ringer),
      h("label", {}, "Ringtone", ringtone),
      h("label", {}, "Ringtone volume", volume),
      h("button", { id: "test-ringer", class: "ghost", onclick: () => app.run("test", () => app.backend.testRinger(read())) }, "Play ringtone"),
      h("h2", {}, "Hotkeys"),
      h("p", { class: "muted" }, "Work from any application, e.g. Ctrl+Alt+A."),
      ...hotkeyRows,
      h("h2", {}, "Start"),
      h("label", { class: "check" }, autostart, "Start at login"),
      h("label", { class: "check" }, minimised, "Start minimised to the tray"),
      h("div", { class: "row" }, save, saved),
    ),
    update: (s) => {
      const visible = s.tab === "settings";
      if (visible && !loaded) {
        loaded = true;
        app.backend.devices().then((devices) => app.set({ devices }), (e) => app.set({ notice: { level: "warning", message: app.errorText(e) } }));
      }
      if (!visible) {
        loaded = false;
        if (metering) {
          metering = false;
          meterBtn.textContent = "Check microphone";
          void app.backend.micMeter(false, null);
        }
      }
      const key = JSON.stringify([s.settings, s.devices]);
      if (key !== filledFrom) {
        filledFrom = key;
        const opts = (names: string[], chosen: string | null) => [
          h("option", { value: "" }, "System default"),
          ...names.map((n) => h("option", { value: n, selected: n === chosen }, n)),
        ];
        fill(input, ...opts(s.devices.inputs, s.settings.input_device));
        fill(output, ...opts(s.devices.outputs, s.settings.output_device));
        fill(ringer, ...opts(s.devices.outputs, s.settings.ringer_device));
        ringtone.value = s.settings.ringtone;
        volume.value = String(Math.round(s.settings.ringtone_volume * 100));
        autostart.checked = s.settings.start_at_login;
        minimised.checked = s.settings.start_minimised;
        for (const [a] of ACTIONS) hk[a].value = s.settings.hotkeys[a];
      }
      for (const [a] of ACTIONS) {
        const st = s.hotkeys.find((x) => x.action === a);
        hkStatus[a].textContent = !st || !st.accelerator ? "" : st.registered ? "✓ active" : `✗ ${st.error ?? "not registered"}`;
        hkStatus[a].className = `hk-status ${st && st.accelerator && !st.registered ? "error" : "ok"}`;
      }
      meter.value = s.micLevel ?? -60;
    },
  };
};
