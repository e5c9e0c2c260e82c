// The composer: the message box (Enter sends, Shift+Enter starts a new line), a file to attach,
// a photo taken with the phone's camera (the same file input, asking for the camera), and the
// customer's location.

import { h } from "../dom.js";

export function renderComposer(container, { store, actions, accept }) {
  const text = h("textarea", { name: "message", rows: "1", "aria-label": "Message", placeholder: "Write a message…", maxlength: "60000" });
  const send = h("button", { type: "submit", class: "tandem-primary" }, "Send");
  const form = h("form", { class: "tandem-composer", "aria-label": "Write to us" });
  const attach = fileInput("Attach a file", { accept });
  const photo = fileInput("Take a photo", { accept: "image/*", capture: "environment" });
  const locate = h("button", { type: "button", class: "tandem-secondary" }, "Share my location");
  form.append(h("div", { class: "tandem-row" }, text, send), h("div", { class: "tandem-tools" }, attach.label, photo.label, locate));
  container.append(form);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) return;
    text.value = "";
    actions.sendMessage(value);
    text.focus();
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  text.addEventListener("input", () => {
    if (text.value) actions.typing();
  });
  for (const input of [attach.input, photo.input]) {
    input.addEventListener("change", () => {
      for (const file of input.files) actions.sendFile(file);
      input.value = "";
    });
  }
  locate.addEventListener("click", async () => {
    locate.disabled = true;
    try {
      await actions.shareLocation();
    } finally {
      locate.disabled = false;
    }
  });

  store.subscribe((state) => {
    form.hidden = state.view !== "chat";
  });
}

/** A file input inside its label: the label is what people see and click. */
function fileInput(name, attrs) {
  const input = h("input", { type: "file", ...attrs });
  const label = h("label", { class: "tandem-file-label" }, name, input);
  return { input, label };
}
