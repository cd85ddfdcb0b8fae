// Sign-in: server URL, tenant, user, password. The token goes to the OS
// keyring (in Rust); the password is not kept.
import { h } from "../dom";
import type { View } from "./view";

export const signinView: View = (app) => {
  const last = app.state.settings.last_account;
  const server = h("input", { id: "server", type: "url", required: true, value: last?.server ?? "http://127.0.0.1:8080", autocomplete: "url" });
  const tenant = h("input", { id: "tenant", required: true, value: last?.tenant ?? "", autocomplete: "organization" });
  const user = h("input", { id: "user", required: true, value: last?.user ?? "", autocomplete: "username" });
  const password = h("input", { id: "password", type: "password", required: true, autocomplete: "current-password" });
  const error = h("p", { id: "signin-error", class: "error", role: "alert" });
  const submit = h("button", { id: "signin-submit", type: "submit", class: "primary big" }, "Sign in");
  const form = h(
    "form",
    {
      id: "signin",
      class: "card",
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        submit.disabled = true;
        submit.textContent = "Signing in…";
        error.textContent = "";
        try {
          await app.backend.signIn(server.value, tenant.value, user.value, password.value);
          password.value = "";
        } catch (e) {
          error.textContent = app.errorText(e);
        } finally {
          submit.disabled = false;
          submit.textContent = "Sign in";
        }
      },
    },
    h("h1", {}, "Softphone"),
    h("p", { class: "muted" }, "Sign in to your Switchboard"),
    h("label", {}, "Server", server),
    h("label", {}, "Tenant", tenant),
    h("label", {}, "User", user),
    h("label", {}, "Password", password),
    error,
    submit,
  );
  const restoring = h("p", { id: "restoring", class: "muted center" }, "Signing in…");
  return {
    el: h("section", { id: "screen-signin", class: "screen" }, form, restoring),
    update: (s) => {
      form.hidden = s.restoring;
      restoring.hidden = !s.restoring;
      if (!tenant.value && s.settings.last_account) {
        server.value = s.settings.last_account.server;
        tenant.value = s.settings.last_account.tenant;
        user.value = s.settings.last_account.user;
      }
    },
  };
};
