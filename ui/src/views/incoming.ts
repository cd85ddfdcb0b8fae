// The incoming call: who calls (and, for a queue's offer, the screen-pop:
// which line, how long they waited, what a web caller typed), and two big
// buttons.
import { fill, h } from "../dom";
import { ringingCall } from "../store";
import type { QueueOffer } from "../backend";
import type { View } from "./view";

/** "0:48" for 48 000 ms. */
function waited(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** The screen-pop lines of a queue's offer. */
export function screenPop(q: QueueOffer): (HTMLElement | string)[] {
  const rows: (HTMLElement | string)[] = [
    h("div", { class: "pop-line", id: "pop-queue" }, `via ${q.name} · waited ${waited(q.waited_ms)}`),
  ];
  if (q.topic) rows.push(h("div", { class: "pop-topic", id: "pop-topic" }, q.topic));
  if (q.email) rows.push(h("div", { class: "pop-line", id: "pop-email" }, q.email));
  if (q.page) rows.push(h("div", { class: "pop-line pop-page", id: "pop-page", title: q.page }, `from ${q.page}`));
  if (q.earlier_calls != null) {
    const n = q.earlier_calls;
    rows.push(h("div", { class: "pop-line", id: "pop-earlier" }, n === 0 ? "First call" : `${n} earlier call${n === 1 ? "" : "s"}`));
  }
  return rows;
}

export const incomingView: View = (app) => {
  const name = h("div", { id: "incoming-name", class: "big-name" });
  const number = h("div", { id: "incoming-number", class: "muted" });
  const pop = h("div", { id: "screen-pop", class: "screen-pop", hidden: true });
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
      pop,
      h("div", { class: "row" }, decline, answer),
    ),
    update: (s) => {
      const c = ringingCall(s);
      if (!c) return;
      callId = c.call_id;
      name.textContent = c.peer.display_name || c.peer.user;
      // A web caller's user name is a generated one: not worth showing.
      number.textContent = c.peer.user.startsWith("guest-") ? "" : c.peer.user;
      pop.hidden = !c.queue;
      if (c.queue) fill(pop, ...screenPop(c.queue));
      answer.disabled = s.busy === "answer";
    },
  };
};
