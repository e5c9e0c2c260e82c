// The customer web chat: the one place where its parts are built and wired (the page at
// /chat/ and the widget both call `mount`).
//
// State flows one way: the socket's events → the store → the panels; the customer's actions →
// client events → the gateway, whose events come back through the socket. The chat in progress
// is remembered (session.js), so a reload resumes it: the socket replays the chat into a fresh
// store, and after that asks only for what came after the last `seq`.

import { createApi } from "./api.js";
import { createStore } from "./store.js";
import { createSocket } from "./socket.js";
import { createCall } from "./rtc.js";
import { createActions } from "./actions.js";
import { createSession } from "./session.js";
import { h } from "./dom.js";
import { renderHeader } from "./ui/header.js";
import { renderStart } from "./ui/start.js";
import { renderCall } from "./ui/call.js";
import { renderConversation } from "./ui/conversation.js";
import { renderComposer } from "./ui/composer.js";
import { renderEnded } from "./ui/ended.js";

/** File types the attach button suggests; the gateway decides what it takes. */
const ACCEPT = "image/*,application/pdf";

/**
 * Mounts the chat into `container`.
 * options: base (the gateway's origin), appId, context (an object for the agent),
 * onMinimize (the widget's), isShown (whether the customer can see the chat now).
 */
export function mount(container, { base, appId, context = {}, onMinimize = null, isShown = () => true }) {
  const session = createSession(appId);
  const api = createApi({ base, appId, device: session.device() });
  const store = createStore();
  let socket = null;
  let pendingContext = { ...context };
  const call = createCall({
    signal: (data) => actions.signal(data),
    dispatch: store.dispatch,
  });
  const actions = createActions({
    api,
    store,
    call,
    session,
    socket: () => socket ?? { send: () => Promise.reject(Object.assign(new Error("offline"), { code: "offline", status: 0 })) },
  });

  const root = h("div", { class: "tandem-root", role: "region", "aria-label": "Chat with us" });
  const body = h("div", { class: "tandem-body" });
  renderHeader(root, { store, actions, onMinimize });
  root.append(body);
  renderStart(body, { store, onStart: start, onCheck: checkAvailability });
  const chat = h("section", { class: "tandem-body", "aria-label": "Chat", hidden: true });
  body.append(chat);
  renderCall(chat, { store, actions, call, phoneNumber: () => store.get().phoneGiven });
  renderConversation(chat, { store, api });
  renderComposer(chat, { store, actions, accept: ACCEPT });
  renderEnded(body, { store, api, session, onNewChat: newChat });
  container.append(root);

  store.subscribe((state) => {
    chat.hidden = state.view !== "chat";
  });

  // A chat that ended stops the socket and the call, and is forgotten for the next visit.
  let ended = false;
  store.subscribe((state) => {
    if (state.view === "ended" && !ended) {
      ended = true;
      socket?.stop();
      socket = null;
      call.close();
      session.forgetChat();
    }
  });

  // Receipts: delivered as soon as a message is here, read once the customer can see it.
  store.subscribe(() => actions.receipts(isShown() && document.visibilityState === "visible"));
  document.addEventListener("visibilitychange", () => actions.receipts(isShown() && document.visibilityState === "visible"));

  let lastConnection = null;
  function open(chatId) {
    ended = false;
    socket = createSocket({
      api,
      chatId,
      lastSeq: () => store.get().lastSeq,
      onEvent(event) {
        store.dispatch({ type: "server", event });
        if (event.event === "chat_session_signaling" && event.data) {
          call.onSignal(event.data).catch((error) => {
            store.dispatch({ type: "note", text: `The call could not be set up (${error.message}).` });
            actions.hangUp();
          });
        }
      },
      onState(state) {
        if (state === "gone") {
          // The chat is not this browser's any more (storage was copied, or it is long over).
          session.forgetChat();
          socket = null;
          store.dispatch({ type: "reset" });
          checkAvailability();
          return;
        }
        store.dispatch({ type: "connection", state });
        if (state === "online" && lastConnection !== "online") actions.flush();
        lastConnection = state;
      },
    });
  }

  async function checkAvailability() {
    store.dispatch({ type: "availability", availability: null });
    try {
      const a = await api.availability();
      store.dispatch({
        type: "availability",
        availability: a.chat === "available" ? { available: true, ewt: a.ewt ?? 0 } : { available: false, reason: a.reason },
      });
    } catch (error) {
      store.dispatch({
        type: "availability",
        availability: { available: false, reason: "The chat service cannot be reached now." },
      });
    }
  }

  async function start({ name, phone }) {
    session.saveName(name);
    const created = await api.createChat({ name, phone, context: pendingContext }).catch((error) => {
      throw new Error(error.code === "not_available" ? error.message : "The chat could not be started. Please try again.");
    });
    pendingContext = {};
    session.saveChat(created.chat_id);
    store.dispatch({ type: "started", chatId: created.chat_id, ewt: created.ewt });
    store.dispatch({ type: "phoneGiven", phone });
    open(created.chat_id);
  }

  function newChat() {
    socket?.stop();
    socket = null;
    session.forgetChat();
    store.dispatch({ type: "reset" });
    checkAvailability();
  }

  const saved = session.chat();
  if (saved) {
    store.dispatch({ type: "resumed", chatId: saved });
    open(saved);
  } else {
    checkAvailability();
  }

  return {
    store,
    /** Context from the embedding page: sent now if a chat is open, else with the next one. */
    setContext(data) {
      if (!data || typeof data !== "object") return;
      if (store.get().view === "chat") actions.sendContext(data);
      else pendingContext = { ...pendingContext, ...data };
    },
    /** The customer is looking at the chat now (the widget was opened). */
    shown() {
      actions.receipts(isShown() && document.visibilityState === "visible");
    },
    /** What the call in the browser received and sent (for diagnostics). */
    callStats: () => call.stats(),
    hasChat: () => Boolean(store.get().chatId) && store.get().view === "chat",
  };
}
