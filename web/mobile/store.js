// The page's one state object. Server events and the page's own outcomes go in through
// `dispatch`; every subscriber is told after each change. Nothing else writes the state.

import { legNote } from "./format.js";

/** Where the page stands: `opening`, `chatting`, `ended`, or a refusal's code. */
function initial() {
  return {
    phase: "opening",
    me: null,
    service: "",
    customer: { name: null, phone: null },
    context: {},
    /** The conversation, in `seq` order: messages, files and notes. */
    entries: [],
    /** Every call and request by leg id: its latest state. */
    legs: {},
    /** Calls numbered as the page shows them ("Call 2"), by leg id. */
    callNumbers: {},
    lastSeq: 0,
    /** The last refusal of something the operator asked, as a sentence. */
    alert: "",
    /** An action is on its way to the server. */
    busy: false,
    transcript: null,
  };
}

/** The voice leg being set up or up, if any. */
export function currentCall(state) {
  return Object.values(state.legs).find(
    (l) => l.kind === "voice" && ["connecting", "up", "releasing"].includes(l.state),
  );
}

/** The customer's call request waiting for the operator, if any. */
export function pendingRequest(state) {
  return Object.values(state.legs).find(
    (l) => l.kind === "voice" && l.state === "awaiting_approval",
  );
}

/** The last voice call that ended, if any. */
export function lastCall(state) {
  const ended = Object.values(state.legs).filter(
    (l) => l.kind === "voice" && l.state === "released" && state.callNumbers[l.leg],
  );
  return ended[ended.length - 1];
}

/** The customer's name, or a neutral word. */
export function customerName(state) {
  return state.customer.name || "The customer";
}

/** Shallow merge, as the gateway merges context updates. */
function merge(context, data) {
  if (data && typeof data === "object" && !Array.isArray(data)) return { ...context, ...data };
  return data;
}

function applyEvent(state, e) {
  const entry = (fields) => state.entries.push({ seq: e.seq, at: e.at, ...fields });
  switch (e.event) {
    case "created":
      state.service = e.service;
      state.customer = e.customer || state.customer;
      state.context = e.context || {};
      break;
    case "message":
      entry({ type: "message", mine: e.mine, text: e.msg });
      break;
    case "file":
      entry({
        type: "file", mine: e.mine, name: e.file_name, fileType: e.file_type,
        size: e.size, url: e.url,
      });
      break;
    case "joined":
    case "left": {
      const who = e.mine ? "You" : e.display_name;
      entry({ type: "note", text: `${who} ${e.event === "joined" ? "joined" : "left"} the chat` });
      break;
    }
    case "context":
      state.context = merge(state.context, e.data);
      if (e.data && e.data.location) {
        entry({ type: "note", text: `${customerName(state)} shared a location` });
      } else {
        entry({ type: "note", text: "The context was updated" });
      }
      break;
    case "leg": {
      const before = state.legs[e.leg];
      const leg = {
        leg: e.leg,
        kind: e.kind,
        state: e.state,
        number: e.number ?? before?.number ?? null,
        app: e.app || before?.app || false,
        // Who ended a call is said as it is released; the driver's confirmation only says
        // "released".
        reason:
          e.state === "released" && e.reason === "released" && before?.state === "releasing"
            ? before.reason
            : e.reason ?? null,
        durationS: e.duration_s ?? null,
        since: e.at,
        upSince: e.state === "up" ? e.at : before?.upSince ?? null,
      };
      if (leg.kind === "voice" && leg.state === "connecting" && !state.callNumbers[leg.leg]) {
        state.callNumbers[leg.leg] = Object.keys(state.callNumbers).length + 1;
      }
      state.legs[e.leg] = leg;
      const note = legNote(before, leg, state.callNumbers[leg.leg], customerName(state));
      if (note) entry({ type: "note", text: note.text, tone: note.tone });
      break;
    }
    case "recording": {
      const n = state.callNumbers[e.leg];
      if (n) entry({ type: "note", text: `Call ${n} was recorded`, tone: "call" });
      break;
    }
    case "timeout_warning":
      entry({
        type: "note",
        text: `The chat closes in ${e.remaining_s} s unless someone writes`,
        tone: "refused",
      });
      break;
    case "ended":
      state.phase = "ended";
      state.transcript = e.transcript;
      entry({ type: "note", text: "The chat has ended" });
      break;
  }
}

export function createStore() {
  const state = initial();
  const subscribers = new Set();
  const notify = () => subscribers.forEach((fn) => fn(state));

  return {
    state,
    subscribe(fn) {
      subscribers.add(fn);
      fn(state);
      return () => subscribers.delete(fn);
    },
    /** `{type: "events", events}` | `{type: "session", data}` | `{type: "refused", code}` |
     *  `{type: "alert", text}` | `{type: "busy", busy}`. */
    dispatch(action) {
      switch (action.type) {
        case "session":
          state.me = action.data.agent;
          if (action.data.customer) state.customer = action.data.customer;
          if (action.data.service) state.service = action.data.service;
          if (action.data.context) state.context = action.data.context;
          if (state.phase !== "ended") state.phase = "chatting";
          break;
        case "events":
          for (const e of action.events) {
            // Nothing is shown twice, whatever a retried poll brings back.
            if (e.seq !== undefined && e.seq <= state.lastSeq) continue;
            applyEvent(state, e);
            if (e.seq !== undefined) state.lastSeq = e.seq;
          }
          break;
        case "refused":
          state.phase = action.code;
          break;
        case "alert":
          state.alert = action.text;
          break;
        case "busy":
          state.busy = action.busy;
          break;
      }
      notify();
    },
  };
}
