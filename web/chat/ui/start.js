// The start panel: whether someone can answer now and how long it might take, and the form
// that opens a chat (a name, and a phone number for a call back if the customer wishes). An
// unavailable service says so and offers only to check again.

import { h, setText, formatWait } from "../dom.js";

export function renderStart(container, { store, onStart, onCheck }) {
  const availability = h("p", { class: "tandem-availability", role: "status" });
  const name = h("input", { type: "text", name: "name", autocomplete: "name", maxlength: "120" });
  const phone = h("input", { type: "tel", name: "phone", autocomplete: "tel", maxlength: "32" });
  const start = h("button", { type: "submit", class: "tandem-primary" }, "Start chat");
  const error = h("p", { class: "tandem-error", role: "alert" });
  const form = h(
    "form",
    { class: "tandem-fields", hidden: true },
    h("label", {}, "Your name", name),
    h("label", {}, h("span", {}, "Phone number ", h("span", { class: "tandem-hint" }, "(optional, to be called back)")), phone),
    start,
  );
  const again = h("button", { type: "button", class: "tandem-secondary", hidden: true, onclick: () => onCheck() }, "Check again");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    start.disabled = true;
    setText(error, "");
    try {
      await onStart({ name: name.value.trim(), phone: phone.value.trim() });
    } catch (e) {
      setText(error, e.message || "The chat could not be started.");
    } finally {
      start.disabled = false;
    }
  });
  const panel = h("section", { class: "tandem-start", "aria-label": "Start a chat", hidden: true }, h("h3", {}, "Talk to us"), availability, form, again, error);
  container.append(panel);

  store.subscribe((state) => {
    panel.hidden = state.view !== "start";
    const a = state.availability;
    if (!a) {
      setText(availability, "Checking whether someone can answer…");
      form.hidden = true;
      again.hidden = true;
      return;
    }
    availability.dataset.available = String(a.available);
    if (a.available) {
      setText(
        availability,
        a.ewt ? `We are available. Expected wait: ${formatWait(a.ewt)}.` : "We are available now: you will be answered right away.",
      );
    } else {
      setText(availability, a.reason || "Nobody is available to answer now.");
    }
    form.hidden = !a.available;
    again.hidden = a.available;
    setText(error, state.view === "start" ? state.notice ?? "" : "");
  });
}
