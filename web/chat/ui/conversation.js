// The conversation: messages, files and what happened, in order, with the customer's own
// messages marked sending / sent / delivered / read; the agent's typing; and the last problem
// to tell the customer. Items are added once and updated in place, so pictures are not
// reloaded and a screen reader hears each new message once (`role="log"`).

import { h, setText, formatSize } from "../dom.js";

const RECEIPT = { sending: "Sending…", failed: "Not sent yet — will retry", sent: "Sent", delivered: "Delivered", read: "Read" };

export function renderConversation(container, { store, api }) {
  const log = h("ol", { class: "tandem-log", role: "log", "aria-label": "Conversation" });
  const scroller = h("div", { class: "tandem-scroll" }, log);
  const typing = h("p", { class: "tandem-typing", "aria-live": "polite" });
  const notice = h("p", { class: "tandem-error", role: "alert" });
  container.append(scroller, typing, notice);
  const shown = new Map();
  let chatId = null;
  // The log follows new content (a message, a picture that finished loading) while the
  // customer is at the bottom, and stays put while they read further up.
  let stick = true;
  scroller.addEventListener("scroll", () => {
    stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  });
  new ResizeObserver(() => {
    if (stick) scroller.scrollTop = scroller.scrollHeight;
  }).observe(log);

  store.subscribe((state) => {
    if (state.chatId !== chatId || state.items.length < shown.size) {
      // Another chat (a new one after the last ended): start the log afresh.
      chatId = state.chatId;
      shown.clear();
      log.replaceChildren();
    }
    let added = false;
    for (const item of state.items) {
      let known = shown.get(item.key);
      if (!known && item.previousKey && shown.has(item.previousKey)) {
        // An uploaded file now known by its server id.
        known = shown.get(item.previousKey);
        shown.delete(item.previousKey);
        shown.set(item.key, known);
      }
      if (known) {
        if (known.item !== item) update(known, item);
        continue;
      }
      const entry = create(item, state, api);
      shown.set(item.key, entry);
      log.append(entry.li);
      added = true;
    }
    setText(typing, state.typing && state.agent ? `${state.agent.name} is typing…` : "");
    setText(notice, state.view === "chat" ? state.notice ?? "" : "");
    if (added && stick) scroller.scrollTop = scroller.scrollHeight;
  });
}

function create(item, state, api) {
  const li = h("li", { class: `from-${item.from}` });
  const entry = { li, item, receipt: null };
  if (item.from === "agent") li.append(h("p", { class: "tandem-who" }, item.by || state.agent?.name || "Agent"));
  if (item.kind === "text" || item.kind === "note") {
    li.append(h("div", { class: "tandem-bubble" }, item.text));
  } else if (item.kind === "file") {
    li.append(h("div", { class: "tandem-bubble" }, fileView(item, state, api)));
  }
  if (item.from === "customer") {
    entry.receipt = h("p", { class: "tandem-receipt" });
    li.append(entry.receipt);
  }
  update(entry, item);
  return entry;
}

function update(entry, item) {
  entry.item = item;
  if (entry.receipt) {
    entry.receipt.dataset.status = item.status ?? "";
    setText(entry.receipt, RECEIPT[item.status] ?? "");
  }
}

/** A picture shows itself; another file is a link that downloads it. */
function fileView(item, state, api) {
  const { file } = item;
  const isImage = (file.type || "").startsWith("image/");
  if (isImage) {
    const img = h("img", { alt: file.name || "picture", loading: "lazy" });
    if (file.preview) img.src = file.preview;
    if (file.id && state.chatId && !file.preview) {
      api.fileUrl(state.chatId, file.id).then((url) => (img.src = url), () => (img.alt = `${file.name} (not available)`));
    }
    return img;
  }
  const link = h("a", { href: "#", download: file.name || "file" }, `${file.name || "file"} (${formatSize(file.size)})`);
  link.addEventListener("click", async (event) => {
    if (link.dataset.ready) return;
    event.preventDefault();
    if (!file.id || !state.chatId) return;
    link.href = await api.fileUrl(state.chatId, file.id);
    link.dataset.ready = "1";
    link.click();
  });
  return link;
}
