// Modal dialogs on the native <dialog> element: a title, a body (a form's fields or a
// confirmation text), Cancel and one action button. The action runs async and answers an error
// text to keep the dialog open and show it, or null to close. Dangerous actions get a red
// button and may require typing the object's name first.

import { h, type Child } from "./dom.ts";

export interface DialogSpec {
  title: string;
  body: Child[];
  action: string;
  danger?: boolean;
  /** the action button stays disabled until this text is typed (e.g. the volume's name) */
  typeToConfirm?: string;
  run: () => Promise<string | null>;
}

export function openDialog(spec: DialogSpec): HTMLDialogElement {
  const err = h("p", { class: "dlg-err", role: "alert", "data-testid": "dialog-error" });
  err.hidden = true;
  const ok = h("button", { class: `btn ${spec.danger ? "danger" : "primary"}`, type: "submit", "data-testid": "dialog-ok" }, spec.action);
  const cancel = h("button", { class: "btn", type: "button", "data-testid": "dialog-cancel", onclick: () => dlg.close() }, "Cancel");
  let confirmInput: HTMLInputElement | null = null;
  if (spec.typeToConfirm !== undefined) {
    const want = spec.typeToConfirm;
    ok.disabled = true;
    confirmInput = h("input", {
      type: "text",
      autocomplete: "off",
      spellcheck: "false",
      "data-testid": "dialog-confirm-name",
      oninput: () => {
        ok.disabled = confirmInput?.value !== want;
      },
    });
  }
  const form = h(
    "form",
    {
      class: "dlg-f",
      method: "dialog",
      onsubmit: (e: Event) => {
        e.preventDefault();
        if (ok.disabled) return;
        ok.disabled = true;
        err.hidden = true;
        void spec.run().then(
          (message) => {
            if (message === null) {
              dlg.close();
              return;
            }
            err.textContent = message;
            err.hidden = false;
            ok.disabled = false;
          },
          (e: unknown) => {
            err.textContent = e instanceof Error ? e.message : String(e);
            err.hidden = false;
            ok.disabled = false;
          },
        );
      },
    },
    h("h3", null, spec.title),
    h("div", { class: "dlg-b" }, ...spec.body, confirmInput ? h("label", { class: "field" }, h("span", null, `Type ${spec.typeToConfirm} to confirm`), confirmInput) : null),
    err,
    h("div", { class: "dlg-a" }, cancel, ok),
  );
  const dlg = h("dialog", { class: "dlg", "data-testid": "dialog" }, form);
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  return dlg;
}

/** A labelled form field around an input or select. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), control, hint ? h("small", null, hint) : null);
}
