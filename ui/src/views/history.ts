// Call history: incoming, outgoing, missed highlighted; call back in one
// click.
import { fill, h } from "../dom";
import { endWords } from "../store";
import type { CallRecord } from "../backend";
import type { View } from "./view";

export function peerOf(c: CallRecord) {
  return c.direction === "outgoing" ? c.callee : c.caller;
}

function when(ms: number): string {
  const d = new Date(ms);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

function summary(c: CallRecord): string {
  if (c.missed) return "Missed";
  if (c.end_reason === "completed" && c.duration_ms != null) {
    const s = Math.round(c.duration_ms / 1000);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
  return c.end_reason ? endWords(c.end_reason) : "In progress";
}

export const historyView: View = (app) => {
  const list = h("ul", { id: "history-list", class: "list" });
  const refresh = h("button", {
    id: "history-refresh",
    class: "ghost",
    onclick: () => load(),
  }, "Refresh");
  const load = async () => {
    try {
      app.set({ history: await app.backend.history(50) });
      await app.backend.missedSeen();
    } catch (e) {
      app.set({ notice: { level: "warning", message: app.errorText(e) } });
    }
  };
  let shown = false;
  return {
    el: h("section", { id: "screen-history", class: "screen" }, h("div", { class: "row spread" }, h("h2", {}, "Recent calls"), refresh), list),
    update: (s) => {
      const visible = s.tab === "history";
      if (visible && !shown) void load();
      shown = visible;
      fill(
        list,
        ...s.history.map((c) => {
          const p = peerOf(c);
          return h(
            "li",
            {
              class: `history-item ${c.missed ? "missed" : ""} ${c.direction}`,
              "data-call-id": c.call_id,
              "data-missed": String(c.missed),
            },
            h("span", { class: "arrow", title: c.direction }, c.direction === "outgoing" ? "↗" : c.missed ? "↙✕" : "↙"),
            h(
              "span",
              { class: "grow" },
              h("b", {}, p.display_name),
              " ",
              h("span", { class: "muted" }, p.user),
              h("br"),
              h("small", { class: "muted" }, `${when(c.created_at_ms)} · ${summary(c)}`),
            ),
            h(
              "button",
              {
                class: "ghost callback",
                title: `Call ${p.display_name} back`,
                onclick: () => app.run("dial", () => app.backend.dial(p.user)),
              },
              "Call back",
            ),
          );
        }),
      );
      if (s.history.length === 0) list.append(h("li", { class: "muted" }, "No calls yet."));
    },
  };
};
