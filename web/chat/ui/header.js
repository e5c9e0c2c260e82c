// The header: who the customer is talking to, the state of the chat, "End chat" (confirmed in a
// dialog) and, in the widget, "Minimize chat". Also the banner shown while the connection is
// being restored.

import { h, setText, formatWait } from "../dom.js";

export function renderHeader(container, { store, actions, onMinimize }) {
  const status = h("p", { class: "tandem-status", role: "status" });
  const end = h("button", { type: "button", hidden: true, onclick: () => confirm.showModal() }, "End chat");
  const minimize = onMinimize
    ? h("button", { type: "button", "aria-label": "Minimize chat", onclick: onMinimize }, "—")
    : null;
  const confirm = h(
    "dialog",
    { class: "tandem-confirm", "aria-label": "End this chat?" },
    h("p", {}, "End this chat? The agent will be told you left."),
    h(
      "form",
      { method: "dialog" },
      h("button", { class: "tandem-secondary", value: "keep" }, "Keep chatting"),
      h("button", { class: "tandem-primary", value: "end" }, "End the chat"),
    ),
  );
  confirm.addEventListener("close", () => {
    if (confirm.returnValue === "end") actions.endChat();
  });
  const banner = h("p", { class: "tandem-connection", role: "status", hidden: true });
  container.append(
    h(
      "header",
      { class: "tandem-header" },
      h("div", { class: "tandem-titles" }, h("h2", {}, "Chat with us"), status),
      end,
      minimize,
    ),
    banner,
    confirm,
  );

  // Until the chat's socket first opens the page is connecting; after that, any loss is a
  // lost connection until it is back (retries in between do not change what it says).
  let wasOnline = false;
  store.subscribe((state) => {
    setText(status, describe(state));
    end.hidden = state.view !== "chat";
    if (state.connection === "online") wasOnline = true;
    const lost = state.view === "chat" && state.connection !== "online";
    banner.hidden = !lost;
    setText(banner, wasOnline ? "Connection lost — reconnecting…" : "Connecting…");
    if (state.view !== "chat" && confirm.open) confirm.close("keep");
  });
}

function describe(state) {
  switch (state.view) {
    case "loading":
      return "Loading…";
    case "start":
      return state.availability?.available === false ? "Not available now" : "We are here to help";
    case "chat":
      if (state.agent) return `Chatting with ${state.agent.name}`;
      if (state.queue?.ewt) return `Waiting for an agent — ${formatWait(state.queue.ewt)}`;
      return "Waiting for an agent…";
    case "ended":
      return "Chat ended";
    default:
      return "";
  }
}
