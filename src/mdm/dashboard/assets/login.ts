// The login page: user and password of the MDM's REST users (the same login as scli and the
// REST API). Nothing of the cluster is shown or fetched before it succeeds; the password is
// sent once, to /api/login, and only the token it returns is kept (in sessionStorage).

import { login, type Session } from "./api.ts";
import { h } from "./dom.ts";

export function showLogin(root: HTMLElement, message: string | null, onLogin: (s: Session) => void): void {
  const user = h("input", { type: "text", name: "username", value: "admin", autocomplete: "username", required: true, "data-testid": "login-user" });
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, "data-testid": "login-password" });
  const err = h("p", { class: "login-err", role: "alert", "data-testid": "login-error" }, message ?? "");
  err.hidden = message === null;
  const submit = h("button", { class: "btn primary wide", type: "submit", "data-testid": "login-submit" }, "Log in");
  const form = h(
    "form",
    {
      class: "login-card",
      "data-testid": "login-form",
      onsubmit: (e: Event) => {
        e.preventDefault();
        submit.disabled = true;
        err.hidden = true;
        void login(user.value.trim(), password.value).then((r) => {
          submit.disabled = false;
          if (r.ok) {
            onLogin(r.session);
            return;
          }
          err.textContent = r.message;
          err.hidden = false;
          password.select();
        });
      },
    },
    h("div", { class: "login-brand" }, h("img", { src: "/dashboard/assets/icon.svg", alt: "", width: 36, height: 36 }), h("div", null, h("b", null, "pf"), h("span", null, "Storage console"))),
    h("label", { class: "field" }, h("span", null, "User name"), user),
    h("label", { class: "field" }, h("span", null, "Password"), password),
    err,
    submit,
    h("p", { class: "muted small" }, "The MDM's REST users. The initial admin password is in the MDM's data folder (admin-password)."),
  );
  document.title = "pf storage console — log in";
  root.replaceChildren(h("div", { class: "login" }, form));
  (password.value ? submit : password).focus();
}
