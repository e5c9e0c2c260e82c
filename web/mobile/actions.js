// What the operator asks for: each action goes to the server, and its refusal comes back as a
// sentence in the store's alert. What the action changed arrives with the events, never here.

import { ApiError } from "./api.js";
import { pendingRequest } from "./store.js";

/** A refusal as the operator should read it. */
function explain(err, state) {
  if (!(err instanceof ApiError)) return "The gateway cannot be reached. Try again.";
  switch (err.code) {
    case "release_call_before_chat":
      return pendingRequest(state)
        ? "Accept or decline the call request before ending the chat."
        : "Hang up the call before ending the chat.";
    case "call_in_progress":
      return "A call is already in progress.";
    case "no_phone_number":
      return "The customer left no phone number to call.";
    case "no_call_request":
      return "The request is no longer waiting.";
    case "no_call":
      return "There is no call to hang up.";
    case "interaction_closed":
      return "The chat is over.";
    case "empty_message":
      return "Write something first.";
    case "message_too_long":
      return "The message is too long.";
    default:
      return err.message.charAt(0).toUpperCase() + err.message.slice(1) + ".";
  }
}

export function createActions(api, store, { onRefused }) {
  async function run(request) {
    store.dispatch({ type: "busy", busy: true });
    store.dispatch({ type: "alert", text: "" });
    try {
      await request();
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === "session_invalid") onRefused(err.code);
      else store.dispatch({ type: "alert", text: explain(err, store.state) });
      return false;
    } finally {
      store.dispatch({ type: "busy", busy: false });
    }
  }

  return {
    say: (text) => run(() => api.say(text)),
    call: () => run(() => api.call()),
    hangUp: () => run(() => api.release()),
    accept: () => run(() => api.acceptCall()),
    decline: () => run(() => api.declineCall()),
    end: () => run(() => api.end()),
  };
}
