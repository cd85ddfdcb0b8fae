// The main view: dial pad (keyboard digits work) and the directory with
// presence.
import { fill, h } from "../dom";
import type { View } from "./view";

export const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"];

export const phoneView: View = (app) => {
  const input = h("input", {
    id: "dial-input",
    placeholder: "Number or name",
    autocomplete: "off",
    oninput: () => app.set({ dialText: input.value }),
    onkeydown: (e: KeyboardEvent) => {
      if (e.key === "Enter") dial();
    },
  });
  const dial = () => {
    const to = input.value.trim();
    if (!to) return;
    void app.run("dial", () => app.backend.dial(to));
  };
  const pad = h(
    "div",
    { class: "keypad", id: "dialpad" },
    ...KEYS.map((k) =>
      h(
        "button",
        {
          class: "key",
          "data-key": k,
          onclick: () => {
            app.set({ dialText: app.state.dialText + k });
          },
        },
        k,
      ),
    ),
  );
  const callBtn = h("button", { id: "dial-call", class: "answer big", onclick: dial }, "Call");
  const backspace = h(
    "button",
    { id: "dial-back", class: "ghost", title: "Delete", onclick: () => app.set({ dialText: app.state.dialText.slice(0, -1) }) },
    "⌫",
  );

  const search = h("input", { id: "dir-search", type: "search", placeholder: "Search people", autocomplete: "off" });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const runSearch = async () => {
    try {
      const found = await app.backend.directory(search.value.trim());
      app.set({ directory: found });
    } catch (e) {
      app.set({ notice: { level: "warning", message: app.errorText(e) } });
    }
  };
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(runSearch, 200);
  });
  const list = h("ul", { id: "dir-list", class: "list" });
  let loadedFor: string | null = null;

  return {
    el: h(
      "section",
      { id: "screen-phone", class: "screen" },
      h("div", { class: "dial-row" }, input, backspace),
      pad,
      callBtn,
      h("h2", {}, "Directory"),
      search,
      list,
    ),
    update: (s) => {
      if (input.value !== s.dialText) input.value = s.dialText;
      callBtn.disabled = s.busy === "dial" || !s.online;
      const me = s.session?.user.user;
      if (s.session && loadedFor !== s.session.user.user) {
        loadedFor = s.session.user.user;
        void runSearch();
      }
      fill(
        list,
        ...s.directory
          .filter((d) => d.user !== me)
          .map((d) =>
            h(
              "li",
              { class: "dir-entry", "data-user": d.user },
              h("span", { class: `dot presence-${d.presence}`, title: d.presence }),
              h("span", { class: "grow" }, h("b", {}, d.display_name), " ", h("span", { class: "muted" }, d.user)),
              h(
                "button",
                {
                  class: "ghost call-user",
                  title: `Call ${d.display_name}`,
                  disabled: d.presence === "offline",
                  onclick: () => app.run("dial", () => app.backend.dial(d.user)),
                },
                "Call",
              ),
            ),
          ),
      );
      if (s.directory.length > 0 && s.directory.every((d) => d.user === me)) {
        list.append(h("li", { class: "muted" }, "Nobody else here."));
      }
    },
  };
};
