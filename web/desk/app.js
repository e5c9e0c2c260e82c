// The Agent Desktop's composition root: it builds the store, the socket client, the media and
// the panels, and turns the agent's actions into API commands. State flows one way: server
// events → store → panels; actions → commands → server.
import * as api from "./api.js";
import { DeskSocket } from "./socket.js";
import { createStore } from "./store.js";
import { Media } from "./webrtc.js";
import { askOnce, notify } from "./notify.js";
import { $, customerName } from "./render/dom.js";
import { renderHeader } from "./render/header.js";
import { renderOffers } from "./render/offers.js";
import { renderChatList } from "./render/chats.js";
import { renderChatPanel } from "./render/chat_panel.js";
import { renderContact, talkOn } from "./render/contact.js";
import { renderContext } from "./render/context.js";
import { fillSettings, readSettings, renderHistory } from "./render/dialogs.js";

const SESSION = "tandem.desk.session";
const store = createStore();
let socket = null;
const media = new Media({
  signal: (chatId, data) => command({ command: "webrtc_signaling", chat_id: chatId, data }),
  onChange: () => render(store.get()),
});

// ---- commands ----

function fail(error) {
  const text = error?.message ?? String(error);
  store.dispatch({ type: "notice", text: error?.code ? `${text} (${error.code})` : text });
}

function command(body) {
  if (!socket) return Promise.reject({ code: "disconnected", message: "Not connected" });
  return socket.command(body);
}

/** Runs a command, showing any refusal as a notice (never swallowed). */
async function run(body) {
  try {
    return await command(body);
  } catch (error) {
    fail(error);
    return null;
  }
}

/** Answers a call or video request: it is put away at once, and back if the gateway refuses. */
async function answer(chatId, kinds, body) {
  store.dispatch({ type: "answered", chatId, kinds });
  const ack = await run(body);
  if (!ack) store.dispatch({ type: "answered", chatId, kinds, ok: false });
  return ack;
}

const actions = {
  accept: async (chatId) => { await run({ command: "accept", chat_id: chatId }); },
  decline: (chatId) => run({ command: "decline", chat_id: chatId }),
  dismiss: (id) => store.dispatch({ type: "dismiss", id }),
  select(chatId) {
    store.dispatch({ type: "select", chatId });
    markRead(chatId);
  },
  // The call is taken on the device chosen in Contact Info, like the calls the agent places.
  acceptCall: (chatId) => answer(chatId, ["voice"], { command: "accept_call", chat_id: chatId, device: talkOn() }),
  // Declining the call declines the video that would ride on it; allowing the video takes the
  // call with it.
  declineCall: (chatId) => answer(chatId, ["voice", "video"], { command: "decline_call", chat_id: chatId }),
  allowVideo: (chatId) => answer(chatId, ["voice", "video"], { command: "allow_video", chat_id: chatId }),
  declineVideo: (chatId) => answer(chatId, ["video"], { command: "decline_video", chat_id: chatId }),
  callCustomer(chatId, number, device) {
    const body = { command: "call_customer", chat_id: chatId, device };
    if (number) body.number = number;
    return run(body);
  },
  releaseCall: (chatId) => run({ command: "release_call", chat_id: chatId }),
  toggleMute: () => media.toggleMute(),
  enlarge(url, name) {
    $("image-large").src = url;
    $("image-large").alt = `Picture ${name}`;
    $("image-dialog").showModal();
  },
  async openPast(chatId) {
    $("history-dialog").close();
    await loadHistory(chatId);
    actions.select(chatId);
  },
};

function markRead(chatId) {
  const chat = store.get().chats.get(chatId);
  if (!chat || chat.ended || document.hidden) return;
  const last = [...chat.items.values()].filter((i) => i.type === "message" && i.from === "customer").pop();
  if (last && chat.lastRead !== last.msgId) {
    chat.lastRead = last.msgId;
    command({ command: "mark_read", chat_id: chatId, msg_id: last.msgId }).catch(() => {});
  }
}

async function loadHistory(chatId) {
  const auth = store.get().auth;
  try {
    const { events } = await api.history(auth.token, chatId);
    store.dispatch({ type: "events", events });
  } catch (error) {
    fail(error);
  }
}

// ---- events from the server ----

function onEvent(e) {
  const before = store.get();
  if (e.event === "webrtc_signaling") {
    media.onSignal(e.chat_id, e.data).catch((error) => fail({ message: `Audio/video: ${error.message ?? error}` }));
    return;
  }
  store.dispatch({ type: "event", event: e });
  switch (e.event) {
    case "hello":
      for (const card of e.chats ?? []) loadHistory(card.chat_id);
      for (const offer of e.offers ?? []) if (!before.offers.has(offer.chat_id)) announce(offer);
      break;
    case "offer":
      if (!before.offers.has(e.chat_id)) announce(e);
      break;
    case "accepted":
      loadHistory(e.chat_id);
      break;
    case "message":
      if (e.from === "customer" && store.get().selected === e.chat_id) markRead(e.chat_id);
      break;
    case "call_state":
      if (e.kind === "video" && e.state === "awaiting_approval") {
        const chat = store.get().chats.get(e.chat_id);
        notify("Video requested", `${customerName(chat?.customer)} asks for video`, `video-${e.chat_id}`);
      }
      // The browser's leg goes with the chat's last call (a request that became a call is
      // released as a request first).
      if (e.kind === "voice" && e.state === "released") {
        const chat = store.get().chats.get(e.chat_id);
        const live = [...(chat?.calls.values() ?? [])].some((c) => c.kind === "voice" && c.state !== "released" && c.state !== "awaiting_approval");
        if (!live) media.close(e.chat_id);
      }
      break;
    case "ended":
      media.close(e.chat_id);
      break;
  }
}

function announce(offer) {
  const text = `${offer.service}: ${customerName(offer.customer)}${offer.first_message ? ` — ${offer.first_message}` : ""}`;
  notify("New chat", text, `offer-${offer.chat_id}`);
}

// ---- session ----

function start(auth) {
  sessionStorage.setItem(SESSION, JSON.stringify(auth));
  store.dispatch({ type: "login", auth });
  document.body.dataset.view = "desk";
  $("login-view").hidden = true;
  $("desk-view").hidden = false;
  socket = new DeskSocket(auth.token, {
    onEvent,
    onState: (state) => store.dispatch({ type: "connection", state }),
    onRejected: async () => {
      // The socket was refused: an expired or revoked token ends the session.
      try { await api.settings(auth.token); } catch (e) { if (e.status === 401) end("Your session has expired. Please log in again."); }
    },
  });
  socket.connect();
}

function end(message) {
  socket?.close();
  socket = null;
  for (const id of [...media.peers.keys()]) media.close(id);
  sessionStorage.removeItem(SESSION);
  store.dispatch({ type: "logout" });
  document.body.dataset.view = "login";
  $("desk-view").hidden = true;
  $("login-view").hidden = false;
  $("login-error").textContent = message ?? "";
  $("login-password").value = "";
  $("login-name").focus();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const button = ev.submitter ?? $("login-form").querySelector("button");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const answer = await api.login($("login-name").value.trim(), $("login-password").value);
    askOnce();
    start({ token: answer.token, agent: answer.agent, display_name: answer.display_name, expires_at: answer.expires_at });
  } catch (error) {
    $("login-error").textContent = error.code === "bad_credentials"
      ? "Wrong name or password."
      : `Cannot log in now: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", async () => {
  const auth = store.get().auth;
  try { await api.logout(auth.token); } catch { /* the token may be gone already */ }
  end("You are logged out.");
});

$("presence").addEventListener("change", (ev) => run({ command: "set_state", state: ev.target.value }));

// ---- the Chat Panel's composer ----

let typingTimer = null;
$("message-text").addEventListener("input", () => {
  const chatId = store.get().selected;
  if (!chatId) return;
  if (!typingTimer) command({ command: "typing", chat_id: chatId, typing: true }).catch(() => {});
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    typingTimer = null;
    command({ command: "typing", chat_id: chatId, typing: false }).catch(() => {});
  }, 3000);
});
$("message-text").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("composer").requestSubmit(); }
});
$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const chatId = store.get().selected;
  const text = $("message-text").value;
  if (!chatId || !text.trim()) return;
  const msgId = `d${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const ack = await run({ command: "send_message", chat_id: chatId, msg_id: msgId, msg: text });
  if (ack) $("message-text").value = "";
});
$("attach").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  const chatId = store.get().selected;
  ev.target.value = "";
  if (!file || !chatId) return;
  try {
    const uploaded = await api.upload(store.get().auth.token, file);
    await run({ command: "send_file", chat_id: chatId, file_id: uploaded.file_id });
  } catch (error) {
    fail(error);
  }
});
$("end-chat").addEventListener("click", () => run({ command: "disconnect_chat", chat_id: store.get().selected }));
$("end-session").addEventListener("click", () => run({ command: "end_session", chat_id: store.get().selected }));

// ---- dialogs ----

$("open-settings").addEventListener("click", async () => {
  fillSettings(store.get().mobileSettings);
  $("settings-dialog").showModal();
});
$("close-settings").addEventListener("click", () => $("settings-dialog").close());
$("save-settings").addEventListener("click", async () => {
  $("settings-error").textContent = "";
  $("settings-status").textContent = "";
  try {
    const saved = await api.saveSettings(store.get().auth.token, readSettings());
    store.dispatch({ type: "event", event: { event: "settings", mobile_settings: saved.mobile_settings } });
    $("settings-status").textContent = "Saved.";
  } catch (error) {
    const why = { invalid_number: "That is not a phone number.", number_required: "Mobile chat needs your mobile number.",
      invalid_hours: "The hours do not parse.", invalid_time_zone: "Unknown time zone." }[error.code];
    $("settings-error").textContent = `${why ?? "Not saved."} ${error.message ?? ""}`.trim();
  }
});
$("open-history").addEventListener("click", async () => {
  store.dispatch({ type: "history", chats: null });
  $("history-dialog").showModal();
  try {
    const { chats } = await api.chats(store.get().auth.token);
    store.dispatch({ type: "history", chats });
  } catch (error) {
    fail(error);
  }
});
$("close-history").addEventListener("click", () => $("history-dialog").close());
$("close-image").addEventListener("click", () => $("image-dialog").close());

document.addEventListener("visibilitychange", () => { if (!document.hidden && store.get().selected) markRead(store.get().selected); });

// ---- drawing ----

let frame = 0;
function render(state) {
  if (!state.auth) return;
  renderHeader(state);
  renderOffers(state, actions);
  renderChatList(state, actions);
  renderChatPanel(state, actions);
  renderContact(state, actions, media);
  renderContext(state);
  if ($("history-dialog").open) renderHistory(state, actions);
}
store.subscribe((state) => {
  // Bursts of events draw once per frame.
  if (frame) return;
  frame = setTimeout(() => { frame = 0; render(store.get()); }, 0);
});
setInterval(() => { if (store.get().auth) renderContact(store.get(), actions, media); }, 1000);

// For people checking the line, and for the browser tests: what the media and the socket do.
window.tandemDesk = {
  stats: (chatId) => media.stats(chatId ?? store.get().selected),
  dropConnection: () => socket?.drop(),
};

// A reload keeps the agent signed in until the token expires.
const saved = JSON.parse(sessionStorage.getItem(SESSION) ?? "null");
if (saved && saved.expires_at > Date.now()) start(saved);
else $("login-name").focus();
