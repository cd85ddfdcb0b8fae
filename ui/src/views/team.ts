// The team view of supervisors and admins: the tenant's queues with their
// waiting callers, and every queue member's state and time in it. Read
// from the switchboard (GET /v1/supervisor) when shown and every
// POLL_MS while shown.
import { clock, fill, h } from "../dom";
import type { AgentState, SupervisedQueue, SupervisorView } from "../backend";
import type { State } from "../store";
import type { View } from "./view";

/** How often the shown view is read again, ms. */
export const POLL_MS = 2000;

const stateWords: Record<AgentState, string> = {
  available: "Available",
  ringing: "Ringing",
  on_call: "On a call",
  wrap_up: "Wrap-up",
  away: "Away",
  offline: "Offline",
};

/** Whether the signed-in user sees the team view. */
export function supervises(s: State): boolean {
  const role = s.session?.role;
  return role === "supervisor" || role === "admin";
}

function queueCard(q: SupervisedQueue, now: number) {
  return h(
    "li",
    { class: "team-queue", "data-queue": q.name },
    h(
      "div",
      { class: "row spread" },
      h("b", {}, q.name, q.number ? h("span", { class: "muted" }, ` · ${q.number}`) : null),
      h(
        "span",
        { class: "queue-waiting", "data-waiting": String(q.waiting.length) },
        q.waiting.length === 1 ? "1 waiting" : `${q.waiting.length} waiting`,
        q.waiting.length > 0 ? ` · longest ${clock(q.longest_wait_ms)}` : null,
      ),
    ),
    h(
      "small",
      { class: "muted queue-agents" },
      `${q.agents_available} available · ${q.agents_busy} busy · ${q.agents_wrap_up} in wrap-up`,
    ),
    h(
      "ul",
      { class: "list waiting-list" },
      ...q.waiting.map((w) =>
        h(
          "li",
          { class: "waiting-caller", "data-call-id": w.call_id },
          h("span", { class: "grow" }, w.caller.display_name),
          w.offered_to.length > 0 ? h("small", { class: "muted" }, `ringing ${w.offered_to.join(", ")} · `) : null,
          h("span", { class: "wait" }, clock(now - w.since_ms)),
        ),
      ),
    ),
  );
}

export const teamView: View = (app) => {
  const queues = h("ul", { id: "team-queues", class: "list" });
  const agents = h("ul", { id: "team-agents", class: "list" });
  const stamp = h("small", { id: "team-stamp", class: "muted" });
  let timer: ReturnType<typeof setInterval> | null = null;
  let loading = false;
  const load = async () => {
    if (loading) return;
    loading = true;
    try {
      app.set({ team: await app.backend.supervisor() });
    } catch (e) {
      stop();
      app.set({ notice: { level: "warning", message: app.errorText(e) } });
    } finally {
      loading = false;
    }
  };
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  return {
    el: h(
      "section",
      { id: "screen-team", class: "screen" },
      h("div", { class: "row spread" }, h("h2", {}, "Queues"), stamp),
      queues,
      h("h2", {}, "Agents"),
      agents,
    ),
    update: (s) => {
      const visible = s.tab === "team" && supervises(s);
      if (visible && timer === null) {
        void load();
        timer = setInterval(() => void load(), POLL_MS);
      } else if (!visible) {
        stop();
      }
      const v: SupervisorView | null = s.team;
      if (!v) {
        fill(queues, h("li", { class: "muted" }, "Loading…"));
        fill(agents);
        stamp.textContent = "";
        return;
      }
      stamp.textContent = `as of ${new Date(v.now_ms).toLocaleTimeString()}`;
      fill(
        queues,
        ...(v.queues.length === 0 ? [h("li", { class: "muted" }, "No queues yet.")] : v.queues.map((q) => queueCard(q, v.now_ms))),
      );
      fill(
        agents,
        ...v.agents.map((a) =>
          h(
            "li",
            { class: "team-agent", "data-user": a.agent.user, "data-state": a.state },
            h("span", { class: `dot state-${a.state}`, title: stateWords[a.state] }),
            h(
              "span",
              { class: "grow" },
              h("b", {}, a.agent.display_name),
              " ",
              h("span", { class: "muted" }, a.queues.join(", ")),
            ),
            h("span", { class: "agent-state" }, stateWords[a.state]),
            h("span", { class: "muted in-state" }, clock(v.now_ms - a.since_ms)),
          ),
        ),
      );
    },
  };
};
