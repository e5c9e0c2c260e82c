// One state object for the whole desk. Server events and the agent's actions come in as
// actions; `reduce` makes the next state; subscribers (the panels) redraw from it. Every chat
// item carries its `seq`, so a resync (`hello`, a fetched history) never shows one twice.

export function initialState() {
  return {
    auth: null,            // {token, agent, display_name, expires_at}
    connection: "closed",  // connecting | open | reconnecting | closed
    presence: "offline",
    load: 0,
    desk: { map_tiles_url: "", map_attribution: "" },
    mobileSettings: null,
    offers: new Map(),     // chat_id → offer
    chats: new Map(),      // chat_id → chat
    selected: null,
    notices: [],           // {id, text, kind}
    history: null,         // chats handled, when the History dialog asked
  };
}

function newChat(card) {
  return {
    id: card.chat_id,
    service: card.service ?? "",
    customer: card.customer ?? {},
    context: card.context ?? {},
    phase: card.phase ?? "active",
    items: new Map(),      // key (seq or local id) → item
    receipts: new Map(),   // msg_id → delivered | read
    calls: new Map(),      // leg → {leg, kind, state, reason, since, duration_s, recording}
    unread: 0,
    typing: false,
    ended: null,           // {reason, transcript}
    requests: new Map(),   // kind (voice|video) → leg awaiting the agent's answer
    answering: new Set(),  // kinds of request she answered, until the gateway says what became of them
  };
}

let noticeId = 0;
function notice(state, text, kind = "warn") {
  state.notices = [...state.notices.slice(-4), { id: ++noticeId, text, kind }];
}

const WITHDRAWN = {
  taken: "was taken by another agent",
  declined: "was declined",
  timeout: "was not answered in time",
  agent_left: "was withdrawn: you are not ready",
  ended: "ended before anyone took it",
  no_room: "was withdrawn: you have no room for another chat",
  reshared: "was offered to another agent",
};

function customerName(c) {
  return c?.name || c?.phone || "a customer";
}

function addItem(chat, key, item) {
  if (chat.items.has(key)) return false;
  chat.items.set(key, item);
  return true;
}

function callLine(e, before) {
  const what = e.kind === "video" ? "Video" : "Call";
  switch (e.state) {
    case "awaiting_approval":
      return e.number ? `Call to ${e.number} requested by the customer` : `${what} requested by the customer`;
    case "connecting":
      // The far end's phone rings (a 180 on the way to it): said once.
      if (e.reason === "ringing") return before?.reason === "ringing" ? null : `${e.number ? `${e.number} is` : "The phone is"} ringing`;
      return before?.state === "connecting" ? null : `${what} connecting${e.number ? ` to ${e.number}` : ""}`;
    case "up": return `${what} started`;
    case "releasing": return null;
    case "released": {
      const took = e.duration_s != null ? ` after ${formatDuration(e.duration_s)}` : "";
      const why = endReason(e.reason);
      return `${what} ended${took}${why ? ` (${why})` : ""}`;
    }
    default: return null;
  }
}

/** Why a call ended, in words, or null when it ended the usual way (released from here). */
export function endReason(reason) {
  if (!reason || reason === "released") return null;
  return String(reason).replaceAll("_", " ");
}

export function formatDuration(s) {
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

/** Applies one server event to `state` (mutated in place: the store copies before). */
function onEvent(state, e) {
  const id = e.chat_id;
  const chat = id ? state.chats.get(id) : null;
  const key = e.seq ?? `t${e.timestamp}-${Math.random()}`;
  switch (e.event) {
    case "hello":
      state.presence = e.state;
      state.load = e.load;
      state.desk = e.desk ?? state.desk;
      state.mobileSettings = e.mobile_settings ?? state.mobileSettings;
      state.offers = new Map((e.offers ?? []).map((o) => [o.chat_id, { ...(state.offers.get(o.chat_id) ?? {}), ...o }]));
      {
        const live = new Set();
        for (const card of e.chats ?? []) {
          live.add(card.chat_id);
          const c = state.chats.get(card.chat_id) ?? newChat(card);
          Object.assign(c, { service: card.service, customer: card.customer, context: card.context, phase: card.phase });
          // Calls the gateway still holds; the history fills in the rest.
          for (const leg of card.legs ?? []) {
            const known = c.calls.get(leg.leg);
            c.calls.set(leg.leg, { ...(known ?? { since: Date.now() }), leg: leg.leg, kind: leg.kind, state: leg.state });
          }
          state.chats.set(card.chat_id, c);
        }
        // Chats the gateway no longer gives us (re-queued while we were away) go.
        for (const [cid, c] of state.chats) {
          if (!c.ended && !live.has(cid)) {
            state.chats.delete(cid);
            notice(state, `The chat with ${customerName(c.customer)} went back to the queue.`);
          }
        }
        if (state.selected && !state.chats.has(state.selected)) state.selected = null;
        if (!state.selected && state.chats.size) state.selected = [...state.chats.keys()][0];
      }
      return;
    case "state":
      state.presence = e.state;
      state.load = e.load;
      return;
    case "settings":
      state.mobileSettings = e.mobile_settings;
      return;
    case "offer":
      state.offers.set(id, { ...(state.offers.get(id) ?? {}), ...e });
      return;
    case "withdrawn": {
      const offer = state.offers.get(id);
      state.offers.delete(id);
      if (offer && !state.chats.has(id)) {
        notice(state, `The chat from ${customerName(offer.customer)} ${WITHDRAWN[e.reason] ?? "was withdrawn"}.`);
      }
      return;
    }
    case "accepted": {
      const offer = state.offers.get(id);
      state.offers.delete(id);
      const c = chat ?? newChat({ ...offer, ...e });
      Object.assign(c, { service: e.service, customer: e.customer, context: e.context ?? c.context, phase: "active" });
      state.chats.set(id, c);
      if (!state.selected) state.selected = id;
      return;
    }
    case "removed":
      if (chat) {
        state.chats.delete(id);
        notice(state, `The chat with ${customerName(chat.customer)} went back to the queue.`);
        if (state.selected === id) state.selected = [...state.chats.keys()][0] ?? null;
      }
      return;
  }
  if (!chat) return;
  switch (e.event) {
    case "message":
      if (addItem(chat, key, { type: "message", from: e.from, text: e.msg, msgId: e.msg_id, at: e.timestamp, seq: e.seq })) {
        if (e.from === "customer") {
          chat.typing = false;
          if (state.selected !== id || document.hidden) chat.unread += 1;
        }
      }
      return;
    case "file":
      if (addItem(chat, key, { type: "file", from: e.from, fileId: e.file_id, name: e.file_name, fileType: e.file_type, size: e.size, at: e.timestamp, seq: e.seq })) {
        if (e.from === "customer" && state.selected !== id) chat.unread += 1;
      }
      return;
    case "typing":
      if (e.from === "customer") chat.typing = e.typing;
      return;
    case "receipt": {
      const before = chat.receipts.get(e.ref_msg_id);
      if (before !== "read") chat.receipts.set(e.ref_msg_id, e.receipt);
      return;
    }
    case "context":
      chat.context = e.context ?? chat.context;
      return;
    case "status":
      chat.phase = e.phase;
      return;
    case "dtmf":
      addItem(chat, key, { type: "system", text: `The customer keyed ${e.digit}`, at: e.timestamp, seq: e.seq });
      return;
    case "timeout_warning":
      addItem(chat, key, { type: "system", text: `No message for a while: the chat closes in ${e.remaining_s} s`, at: e.timestamp, seq: e.seq });
      return;
    case "call_state": {
      const before = chat.calls.get(e.leg);
      const call = { ...(before ?? {}), leg: e.leg, kind: e.kind, state: e.state, reason: e.reason, duration_s: e.duration_s };
      if (e.number) call.number = e.number;
      if (e.state === "up" && before?.state !== "up") call.since = Date.now() - 0;
      if (e.recording) call.recording = e.recording;
      chat.calls.set(e.leg, call);
      if (e.state === "awaiting_approval") chat.requests.set(e.kind, e.leg);
      else if (chat.requests.get(e.kind) === e.leg) chat.requests.delete(e.kind);
      chat.answering.delete(e.kind);
      // A leg reported twice in one state (a renegotiation) is one line; ringing is news.
      const line = before?.state === e.state && e.state !== "connecting" ? null : callLine(e, before);
      if (line) addItem(chat, key, { type: "system", text: line, at: e.timestamp, seq: e.seq, recording: e.recording });
      return;
    }
    case "ended":
      chat.ended = { reason: e.reason, transcript: e.transcript };
      chat.phase = "closed";
      chat.typing = false;
      chat.requests.clear();
      chat.answering.clear();
      addItem(chat, key, { type: "system", text: `Chat ended (${String(e.reason).replaceAll("_", " ")})`, at: e.timestamp, seq: e.seq });
      return;
  }
}

export function reduce(state, action) {
  const next = { ...state, offers: new Map(state.offers), chats: new Map(state.chats) };
  switch (action.type) {
    case "login":
      return { ...initialState(), auth: action.auth };
    case "logout":
      return initialState();
    case "connection":
      next.connection = action.state;
      return next;
    case "event":
      onEvent(next, action.event);
      return next;
    case "events":
      // A fetched history: the chat exists from its `accepted` on, but what the customer wrote
      // before comes earlier in it.
      for (const e of action.events) if (e.event === "accepted") onEvent(next, e);
      for (const e of action.events) if (e.event !== "accepted") onEvent(next, e);
      return next;
    case "answered": {
      // The agent answered requests of a chat: they are hidden until the gateway reports on
      // them, or shown again if it refused.
      const chat = next.chats.get(action.chatId);
      if (chat) for (const kind of action.kinds) chat.answering[action.ok === false ? "delete" : "add"](kind);
      return next;
    }
    case "select": {
      next.selected = action.chatId;
      const chat = next.chats.get(action.chatId);
      if (chat) chat.unread = 0;
      return next;
    }
    case "notice":
      notice(next, action.text, action.kind);
      return next;
    case "dismiss":
      next.notices = next.notices.filter((n) => n.id !== action.id);
      return next;
    case "history":
      next.history = action.chats;
      return next;
    case "close-chat":
      next.chats.delete(action.chatId);
      if (next.selected === action.chatId) next.selected = [...next.chats.keys()][0] ?? null;
      return next;
    default:
      return state;
  }
}

export function createStore() {
  let state = initialState();
  const subscribers = new Set();
  return {
    get: () => state,
    dispatch(action) {
      state = reduce(state, action);
      for (const f of subscribers) f(state, action);
    },
    subscribe(f) { subscribers.add(f); return () => subscribers.delete(f); },
  };
}
