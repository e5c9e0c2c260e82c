// The Chat Panel: the conversation oldest first (the customer's and the agent's messages told
// apart, times, receipts, pictures inline, files as links, call and video events as system
// lines), the customer's typing, the call and video requests to answer, the composer, and End
// chat (disabled with its reason while a call is up).
import { $, h, time, customerName } from "./dom.js";
import { fileUrl, recordingUrl, transcriptUrl } from "../api.js";

let shownChat = null;
let shownKeys = new Set();
let lastSeq = -1;
/** Whether the conversation follows what comes in: yes while the agent is at its bottom. */
let stick = true;
let follower = null;

/** Keeps the conversation at its bottom while the agent is there, also when lines change
 * size after they were drawn (pictures loading, lines laid out once on screen) or the
 * panel around them does (requests, video windows). */
function follow(list) {
  if (follower) return follower;
  const bottom = () => { if (stick) list.scrollTop = list.scrollHeight; };
  // Only the agent scrolling up lets go of the bottom: the browser moves the list too, as
  // lines above change size, and that is no reason to stop following.
  let touched = 0;
  for (const kind of ["wheel", "touchmove", "keydown", "pointerdown"]) {
    list.addEventListener(kind, () => { touched = performance.now(); }, { passive: true });
  }
  list.addEventListener("scroll", () => {
    if (list.scrollHeight - list.scrollTop - list.clientHeight < 40) stick = true;
    else if (performance.now() - touched < 1000) stick = false;
  });
  list.addEventListener("load", bottom, true);
  follower = new ResizeObserver(bottom);
  follower.observe(list);
  return follower;
}
/** A chat opened shows its latest items; older ones come on demand. */
const WINDOW = 100;
const expanded = new Set();

function isLive(call) {
  return call.state !== "released";
}

export function activeCall(chat) {
  return [...chat.calls.values()].filter((c) => c.kind === "voice" && c.state !== "awaiting_approval" && isLive(c)).pop() ?? null;
}

function receiptText(r) {
  return r === "read" ? "Read" : r === "delivered" ? "Delivered" : "Sent";
}

function itemNode(state, chat, item, actions) {
  const token = state.auth.token;
  const mine = item.from && item.from !== "customer" && item.from !== "system";
  if (item.type === "system") {
    const line = h("li", { class: "msg system" }, h("span", {}, item.text), " ", h("span", { class: "meta" }, time(item.at)));
    if (item.recording) {
      line.append(h("audio", { controls: true, preload: "none", src: recordingUrl(token, chat.id, item.recording), "aria-label": `Recording ${item.recording}` }));
    }
    return line;
  }
  const who = mine ? "You" : customerName(chat.customer);
  const meta = h("span", { class: "meta" }, `${who} · ${time(item.at)}`);
  const li = h("li", { class: `msg ${mine ? "mine" : "theirs"}`, dataset: { key: String(item.seq ?? ""), msg: item.msgId ?? "" } });
  li.append(h("span", { class: "visually-hidden" }, `${who} said: `));
  if (item.type === "message") {
    li.append(h("span", { class: "text" }, item.text));
  } else if (item.type === "file") {
    const url = fileUrl(token, chat.id, item.fileId);
    if (String(item.fileType).startsWith("image/")) {
      const img = h("img", { src: url, alt: `Picture ${item.name} from ${who}`, loading: "lazy" });
      li.append(h("button", { type: "button", class: "picture", "aria-label": `Enlarge picture ${item.name}`, onclick: () => actions.enlarge(url, item.name) }, img));
    } else {
      li.append(h("a", { href: url, download: item.name, target: "_blank", rel: "noopener" }, `Download ${item.name}`));
    }
  }
  li.append(meta);
  if (mine && item.msgId) {
    li.append(h("span", { class: "meta receipt", dataset: { receipt: item.msgId } }, receiptText(chat.receipts.get(item.msgId))));
  }
  return li;
}

export function renderChatPanel(state, actions) {
  const chat = state.selected ? state.chats.get(state.selected) : null;
  $("chat-empty").hidden = !!chat;
  $("chat-body").hidden = !chat;
  $("chat-title").textContent = chat ? `Chat with ${customerName(chat.customer)} (${chat.service})` : "Chat Panel";
  if (!chat) { shownChat = null; return; }
  const list = $("messages");
  const sizes = follow(list);
  if (shownChat !== chat.id) {
    sizes.disconnect();
    sizes.observe(list);
    stick = true;
    list.replaceChildren();
    shownKeys = new Set();
    lastSeq = -1;
    shownChat = chat.id;
    const all = [...chat.items.entries()].sort((a, b) => (a[1].seq ?? Infinity) - (b[1].seq ?? Infinity));
    if (!expanded.has(chat.id) && all.length > WINDOW) {
      const earlier = all.slice(0, all.length - WINDOW);
      for (const [k, item] of earlier) {
        shownKeys.add(k);
        if (item.seq != null) lastSeq = Math.max(lastSeq, item.seq);
      }
      list.append(h("li", { class: "msg system earlier" }, h("button", {
        type: "button",
        onclick: () => { expanded.add(chat.id); shownChat = null; renderChatPanel(state, actions); },
      }, `Show ${earlier.length} earlier messages`)));
    }
  }
  // Only new items are drawn: a long chat costs nothing to redraw. New items after the last
  // drawn one (the usual case, and a whole chat drawn at once) are appended in one go; one that
  // a fetched history puts earlier is inserted in its place.
  const items = [...chat.items.entries()].filter(([k]) => !shownKeys.has(k));
  if (items.length) {
    items.sort((a, b) => (a[1].seq ?? Infinity) - (b[1].seq ?? Infinity));
    const tail = document.createDocumentFragment();
    for (const [k, item] of items) {
      shownKeys.add(k);
      const node = itemNode(state, chat, item, actions);
      sizes.observe(node);
      if (item.seq != null) node.dataset.seq = String(item.seq);
      if (item.seq == null || item.seq > lastSeq) {
        tail.append(node);
        if (item.seq != null) lastSeq = item.seq;
      } else {
        const after = [...list.children].find((el) => Number(el.dataset.seq) > item.seq);
        list.insertBefore(node, after ?? null);
      }
    }
    list.append(tail);
    if (stick) list.scrollTop = list.scrollHeight;
  }
  for (const el of list.querySelectorAll("[data-receipt]")) {
    el.textContent = receiptText(chat.receipts.get(el.dataset.receipt));
  }
  $("typing").textContent = chat.typing ? `${customerName(chat.customer)} is typing…` : "";

  // Requests waiting for the agent: a call, video. One she has answered goes at once (allowing
  // video takes the call with it: nothing is left to accept), and comes back if refused.
  const requests = [];
  const waiting = (kind) => chat.requests.has(kind) && !chat.answering.has(kind);
  if (waiting("voice")) {
    // A call-me request names the number to call, which may not be the one in Contact Info.
    const number = chat.calls.get(chat.requests.get("voice"))?.number;
    requests.push(h("div", { class: "request", role: "alert" },
      h("strong", {}, number ? `The customer asks to be called at ${number}.` : "The customer asks for a call."),
      h("button", { type: "button", class: "primary", onclick: () => actions.acceptCall(chat.id) }, "Accept call"),
      h("button", { type: "button", onclick: () => actions.declineCall(chat.id) }, "Decline call")));
  }
  if (waiting("video")) {
    requests.push(h("div", { class: "request", role: "alert" },
      h("strong", {}, "The customer asks for video."),
      h("button", { type: "button", class: "primary", onclick: () => actions.allowVideo(chat.id) }, "Allow video"),
      h("button", { type: "button", onclick: () => actions.declineVideo(chat.id) }, "Decline video")));
  }
  $("requests").replaceChildren(...requests);

  const videoUp = [...chat.calls.values()].some((c) => c.kind === "video" && (c.state === "up" || c.state === "connecting"));
  $("video-area").hidden = !videoUp;

  const ended = !!chat.ended;
  const call = activeCall(chat);
  for (const id of ["message-text", "send", "attach"]) $(id).disabled = ended;
  const end = $("end-chat");
  end.disabled = ended || !!call;
  $("end-session").disabled = ended;
  $("end-reason").textContent = ended ? "This chat has ended." : call ? "Release the call first." : "";
  end.setAttribute("aria-describedby", "end-reason");
  const link = $("transcript-link");
  link.hidden = !ended;
  link.href = ended ? transcriptUrl(state.auth.token, chat.id) : "#";
}
