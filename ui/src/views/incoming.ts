// The incoming call: who calls, and two big buttons.
import { h } from "../dom";
import { ringingCall } from "../store";
import type { View } from "./view";

export const incomingView: View = (app) => {
  const name = h("div", { id: "incoming-name", class: "big-name" });
  const number = h("div", { id: "incoming-number", class: "muted" });
  let callId = "";
  const answer = h(
    "button",
    { id: "answer", class: "answer huge", onclick: () => app.run("answer", () => app.backend.answer(callId)) },
    "Answer",
  );
  const decline = h(
    "button",
    { id: "decline", class: "decline huge", onclick: () => app.run("decline", () => app.backend.decline(callId)) },
    "Decline",
  );
  return {
    el: h(
      "section",
      { id: "incoming", class: "screen ringing", role: "alertdialog", "aria-label": "Incoming call" },
      h("div", { class: "pulse" }),
      h("p", { class: "muted" }, "Incoming call"),
      name,
      number,
      h("div", { class: "row" }, decline, answer),
    ),
    update: (s) => {
      const c = ringingCall(s);
      if (!c) return;
      callId = c.call_id;
      name.textContent = c.peer.display_name || c.peer.user;
      number.textContent = c.peer.user;
      answer.disabled = s.busy === "answer";
    },
  };
};
