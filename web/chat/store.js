// The chat's one state object. Everything the panels show is derived from it; it changes only
// through `dispatch(action)`, by the pure `reduce`, and subscribers are told after each change.
//
// Server events come in as `{type: "server", event}`. Durable ones carry a `seq`; an event with
// a `seq` at or below the last one applied was seen already (the socket resumes after the last
// `seq`, and a reloaded page replays the chat from the start into a fresh state), so nothing is
// shown twice. The customer's own messages are shown at once as "sending" and become "sent"
// when the server's copy (same `msg_id`) arrives, then "delivered" and "read" with the agent's
// receipts.

const IDLE_CALL = Object.freeze({ state: "idle", video: false, videoUp: false, localVideo: false });

export const initialState = Object.freeze({
  view: "loading", // loading | start | chat | ended
  availability: null, // {available, ewt, reason}
  chatId: null,
  lastSeq: 0,
  agent: null, // {id, name}
  typing: false,
  queue: null, // {position, ewt}
  items: [],
  call: IDLE_CALL,
  phone: null, // {state, number, reason, duration}
  phoneGiven: "", // the number given when the chat started
  connection: "connecting", // connecting | online | offline
  notice: null,
  endReason: null,
});

const RANK = { sending: 0, failed: 0, sent: 1, delivered: 2, read: 3 };

export function createStore(state = initialState) {
  const subscribers = new Set();
  return {
    get: () => state,
    dispatch(action) {
      const next = reduce(state, action);
      if (next === state) return;
      state = next;
      for (const fn of subscribers) fn(state);
    },
    subscribe(fn) {
      subscribers.add(fn);
      fn(state);
      return () => subscribers.delete(fn);
    },
  };
}

export function reduce(state, action) {
  switch (action.type) {
    case "availability":
      return { ...state, availability: action.availability, view: state.chatId ? state.view : "start" };
    case "started":
      return { ...state, chatId: action.chatId, view: "chat", queue: { position: null, ewt: action.ewt ?? null } };
    case "resumed":
      return { ...state, chatId: action.chatId, view: "chat" };
    case "reset":
      return { ...initialState, availability: state.availability, view: "start", connection: state.connection };
    case "connection":
      return state.connection === action.state ? state : { ...state, connection: action.state };
    case "phoneGiven":
      return { ...state, phoneGiven: action.phone ?? "" };
    case "notice":
      return { ...state, notice: action.text };
    case "send":
      return addItem(state, {
        key: `m:${action.msgId}`,
        from: "customer",
        kind: "text",
        msgId: action.msgId,
        text: action.text,
        status: "sending",
        at: action.at,
      });
    case "sendFile":
      return addItem(state, {
        key: `f:${action.fileKey}`,
        from: "customer",
        kind: "file",
        file: action.file,
        status: "sending",
        at: action.at,
      });
    case "fileUploaded":
      // The file has its server id now; its echo will find it by that.
      return mapItems(state, `f:${action.fileKey}`, (item) => ({
        ...item,
        previousKey: item.key,
        key: `f:${action.file.id}`,
        file: { ...item.file, ...action.file },
      }));
    case "status":
      return mapItems(state, action.key, (item) => withStatus(item, action.status));
    case "call": {
      const next = { ...state, call: { ...state.call, ...action.patch } };
      // The conversation keeps a record of the call as it went: it started here.
      return next.call.state === "up" && state.call.state !== "up" ? addNote(next, "The call started.") : next;
    }
    case "phone":
      return { ...state, phone: action.phone && { ...(state.phone ?? {}), ...action.phone } };
    case "note":
      return addNote(state, action.text, action.at);
    case "server":
      return serverEvent(state, action.event);
    default:
      return state;
  }
}

function serverEvent(state, event) {
  if (event.seq != null) {
    if (event.seq <= state.lastSeq) return state;
    state = { ...state, lastSeq: event.seq };
  }
  const at = event.timestamp ?? Date.now();
  switch (event.event) {
    case "chat_session_status":
      if (event.state === "completed") return ended(state, state.endReason);
      if (event.state === "queued") {
        return { ...state, queue: { position: event.position ?? state.queue?.position ?? null, ewt: event.ewt ?? null } };
      }
      if (event.state === "connected") return { ...state, queue: null };
      return state;
    case "chat_session_party_joined":
      return addNote(
        { ...state, agent: { id: event.party_id, name: event.display_name || "An agent" }, queue: null },
        `${event.display_name || "An agent"} joined the chat`,
        at,
      );
    case "chat_session_party_left": {
      const name = event.display_name || "The agent";
      const next = { ...state, agent: null, typing: false };
      return addNote(next, `${name} left the chat`, at);
    }
    case "chat_session_message":
      if (event.party_id === "customer") {
        const key = `m:${event.msg_id}`;
        if (state.items.some((i) => i.key === key)) {
          return mapItems(state, key, (item) => ({ ...withStatus(item, "sent"), seq: event.seq }));
        }
        return addItem(state, { key, from: "customer", kind: "text", msgId: event.msg_id, text: event.msg, status: "sent", seq: event.seq, at });
      }
      return addItem(
        { ...state, typing: false },
        { key: `m:${event.msg_id}`, from: "agent", kind: "text", msgId: event.msg_id, text: event.msg, by: state.agent?.name, seq: event.seq, at, receipt: null },
      );
    case "chat_session_file": {
      const file = { id: event.file_id, name: event.file_name, type: event.file_type, size: event.size };
      const key = `f:${event.file_id}`;
      if (event.party_id === "customer" && state.items.some((i) => i.key === key)) {
        return mapItems(state, key, (item) => ({ ...withStatus(item, "sent"), file: { ...item.file, ...file }, seq: event.seq }));
      }
      const from = event.party_id === "customer" ? "customer" : "agent";
      return addItem(state, { key, from, kind: "file", file, by: from === "agent" ? state.agent?.name : null, status: from === "customer" ? "sent" : null, seq: event.seq, at });
    }
    case "chat_session_typing":
      return { ...state, typing: true };
    case "chat_session_not_typing":
      return { ...state, typing: false };
    case "chat_session_message_delivered":
    case "chat_session_message_read": {
      const status = event.event.endsWith("read") ? "read" : "delivered";
      const key = `m:${event.ref_msg_id}`;
      if (event.party_id === "customer") {
        // Our own receipt for an agent's message (seen again after a reload).
        return mapItems(state, key, (item) => ({ ...item, receipt: maxStatus(item.receipt, status) }));
      }
      return mapItems(state, key, (item) => withStatus(item, status));
    }
    case "chat_session_signaling":
      return signaling(state, event.data ?? {}, at);
    case "chat_session_call_state":
      return phoneState(state, event, at);
    case "chat_session_timeout_warning":
      return addNote(state, event.msg || "The chat will close soon without a message.", at);
    case "chat_session_inactivity_timeout":
      return addNote({ ...state, endReason: "inactivity" }, "The chat was closed because nobody wrote for a while.", at);
    case "chat_session_ended": {
      const next = event.msg ? addNote(state, event.msg, at) : state;
      return ended(next, event.reason ?? state.endReason ?? "ended");
    }
    default:
      return state;
  }
}

function signaling(state, data, at) {
  switch (data.type) {
    case "CALL_REJECTED": {
      const declined = data.reason_code === "declined";
      if (data.video) {
        // Video declined with its call (or after it) says nothing more.
        if (state.call.state === "idle" || !state.call.video) return state;
        const text = declined ? "The agent declined the video." : "The video request was not answered in time.";
        return addNote({ ...state, call: { ...state.call, video: false } }, text, at);
      }
      if (state.phone?.state === "requested" && state.call.state !== "requested") {
        const text = declined
          ? "The agent declined the phone call."
          : "The phone call request was not answered in time.";
        return addNote({ ...state, phone: { ...state.phone, state: "released", reason: data.reason_code } }, text, at);
      }
      const text = declined ? "The agent declined the call." : "The call request was not answered in time.";
      return addNote({ ...state, call: { ...IDLE_CALL } }, text, at);
    }
    case "END_CALL": {
      const wasActive = state.call.state !== "idle";
      const next = { ...state, call: { ...IDLE_CALL } };
      return wasActive ? addNote(next, "The call ended.", at) : next;
    }
    default:
      return state;
  }
}

function phoneState(state, event, at) {
  const number = state.phone?.number ?? null;
  switch (event.state) {
    case "awaiting_approval":
      return { ...state, phone: { number, state: "requested", reason: null, duration: null } };
    case "connecting":
      return { ...state, phone: { number, state: event.reason === "ringing" ? "ringing" : "connecting", reason: event.reason, duration: null } };
    case "up":
      return { ...state, phone: { number, state: "up", reason: null, duration: null } };
    case "releasing":
      return state;
    case "released": {
      const duration = event.duration_s ?? null;
      let text = "The phone call ended";
      if (duration != null) text += ` after ${formatDuration(duration)}`;
      if (event.reason === "declined") text = "The agent declined the phone call";
      else if (event.reason === "expired") text = "The phone call request was not answered in time";
      else if (event.reason && !/^ended by|^released$/.test(event.reason)) text += ` (${event.reason})`;
      return addNote({ ...state, phone: { number, state: "released", reason: event.reason, duration } }, text + ".", at);
    }
    default:
      return state;
  }
}

export function formatDuration(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds % 60;
  return m ? `${m} min ${s} s` : `${s} s`;
}

function ended(state, reason) {
  if (state.view === "ended") return state;
  return {
    ...state,
    view: "ended",
    endReason: reason,
    typing: false,
    call: { ...IDLE_CALL },
  };
}

function addItem(state, item) {
  if (state.items.some((i) => i.key === item.key)) return state;
  return { ...state, items: [...state.items, item] };
}

function addNote(state, text, at) {
  const key = `n:${state.items.length}:${text}`;
  return addItem(state, { key, from: "system", kind: "note", text, at: at ?? Date.now() });
}

function mapItems(state, key, fn) {
  let changed = false;
  const items = state.items.map((item) => {
    if (item.key !== key) return item;
    const next = fn(item);
    if (next !== item) changed = true;
    return next;
  });
  return changed ? { ...state, items } : state;
}

/** A message is "sending" or "failed" until the server has it; from then on its status only
 * moves forward (a late "delivered" after "read" changes nothing). */
function withStatus(item, status) {
  if (item.from !== "customer") return item;
  const local = (s) => s === "sending" || s === "failed";
  if (local(item.status) && local(status)) return item.status === status ? item : { ...item, status };
  if (RANK[status] <= RANK[item.status]) return item;
  return { ...item, status };
}

function maxStatus(a, b) {
  return (RANK[a] ?? -1) >= RANK[b] ? a : b;
}
