// The end of a chat: why it ended, the transcript to read here or to download as a text file
// (from the chat's history, the server's record of it), and a new chat.

import { h, setText } from "../dom.js";
import { transcriptText } from "../transcript.js";

export function renderEnded(container, { store, api, session, onNewChat }) {
  const why = h("p", {});
  const list = h("ol", {});
  const transcript = h("section", { class: "tandem-transcript", "aria-label": "Transcript", hidden: true }, h("h4", {}, "Transcript"), list);
  const view = h("button", { type: "button", class: "tandem-secondary", "aria-expanded": "false" }, "View transcript");
  const download = h("a", { class: "tandem-secondary", href: "#", download: "chat-transcript.txt", "aria-disabled": "true" }, "Download transcript");
  const again = h("button", { type: "button", class: "tandem-primary", onclick: () => onNewChat() }, "Start a new chat");
  const panel = h(
    "section",
    { class: "tandem-ended", "aria-label": "Chat ended", hidden: true },
    h("h3", {}, "The chat has ended"),
    why,
    h("div", { class: "tandem-actions" }, view, download, again),
    transcript,
  );
  container.append(panel);

  view.addEventListener("click", () => {
    transcript.hidden = !transcript.hidden;
    view.setAttribute("aria-expanded", String(!transcript.hidden));
    setText(view, transcript.hidden ? "View transcript" : "Hide transcript");
  });
  download.addEventListener("click", (event) => {
    if (download.getAttribute("aria-disabled") === "true") event.preventDefault();
  });

  let loadedFor = null;
  store.subscribe((state) => {
    panel.hidden = state.view !== "ended";
    if (state.view !== "ended" || !state.chatId || loadedFor === state.chatId) return;
    loadedFor = state.chatId;
    setText(why, reason(state.endReason));
    transcript.hidden = true;
    list.replaceChildren(h("li", {}, "Loading…"));
    load(state.chatId);
  });

  async function load(chatId) {
    let events;
    try {
      events = await api.history(chatId);
    } catch {
      list.replaceChildren(h("li", {}, "The transcript is not available."));
      return;
    }
    const text = transcriptText(events, { customerName: session.name() || "You", title: "Chat transcript" });
    const lines = text.trim().split("\n").slice(2);
    list.replaceChildren(...lines.map((line) => h("li", {}, line)));
    if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    download.setAttribute("aria-disabled", "false");
  }
}

function reason(endReason) {
  switch (endReason) {
    case "no_agent_available":
      return "Nobody was available to answer. Please try again later.";
    case "inactivity":
      return "The chat was closed because nobody wrote for a while.";
    default:
      return "Thank you for chatting with us.";
  }
}
