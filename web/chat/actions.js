// What the customer does, turned into client events for the gateway. Each action shows its
// effect in the store at once where it can (a message "sending"), sends, and records how it
// went. Events go over the socket when it is up and over HTTP otherwise; a message that could
// not leave at all waits and is sent again when the connection is back (the server knows it by
// its `msg_id`, so a retry never makes a second one).

import { ApiError } from "./api.js";

/** Receipts sent in one request (the server takes `http.max_events_per_request`, 100 by
 * default; a small batch keeps well within any sane setting). */
const RECEIPTS_PER_REQUEST = 4;
/** Typing goes out at most this often while the customer types (ms). */
const TYPING_EVERY = 3000;
/** And stops this long after the last key (ms). */
const TYPING_IDLE = 4000;

export function createActions({ api, store, call, socket, session }) {
  const { dispatch } = store;
  const chatId = () => store.get().chatId;
  /** Messages and files that could not leave for want of a connection, in order. */
  const outbox = [];
  let typingSince = 0;
  let typingTimer = null;
  /** Receipts sent and not seen back yet (by message id and kind). */
  const receipted = new Set();

  async function deliver(events) {
    const id = chatId();
    if (!id) throw new ApiError(0, "no_chat", "no chat");
    try {
      return await socket().send(events);
    } catch (error) {
      if (error.code !== "offline") throw error;
      return api.postEvents(id, events);
    }
  }

  const offline = (error) => error.status === 0;

  function problem(error, what) {
    const messages = {
      message_too_long: "That message is too long to send.",
      empty_message: "That message is empty.",
      file_too_large: "That file is too large to send.",
      file_type_not_allowed: "That kind of file cannot be sent here.",
      empty_file: "That file is empty.",
      interaction_not_active: "Please wait until an agent has joined the chat.",
      call_in_progress: "A call is already in progress.",
      no_phone_number: "Please give the number to call.",
      invalid_number: "That is not a phone number we can call.",
      video_not_allowed: "Video calls are not available here.",
      interaction_closed: "The chat has ended.",
      too_many: "Too many chats are open from this browser.",
    };
    const text = messages[error.code] ?? `${what} did not work (${error.message || error.code}).`;
    dispatch({ type: "notice", text });
  }

  async function sendMessage(text) {
    if (!text.trim()) return;
    stopTyping();
    const msgId = `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    dispatch({ type: "send", msgId, text, at: Date.now() });
    await push({ kind: "message", key: `m:${msgId}`, events: [{ event: "chat_session_message", msg_id: msgId, msg: text }] });
  }

  /** Sends one outgoing item; keeps it for later when there is no connection at all. */
  async function push(item) {
    try {
      await deliver(item.events);
      dispatch({ type: "status", key: item.key, status: "sent" });
    } catch (error) {
      dispatch({ type: "status", key: item.key, status: "failed" });
      if (offline(error)) outbox.push(item);
      else problem(error, "Sending");
    }
  }

  /** The connection is back: what could not leave goes now, in order. */
  async function flush() {
    while (outbox.length) {
      const item = outbox.shift();
      dispatch({ type: "status", key: item.key, status: "sending" });
      try {
        await deliver(item.events);
        dispatch({ type: "status", key: item.key, status: "sent" });
      } catch (error) {
        dispatch({ type: "status", key: item.key, status: "failed" });
        if (offline(error)) {
          outbox.unshift(item);
          return;
        }
        problem(error, "Sending");
      }
    }
  }

  async function sendFile(file) {
    const fileKey = `local-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const preview = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    dispatch({ type: "sendFile", fileKey, file: { name: file.name, type: file.type, size: file.size, preview }, at: Date.now() });
    let uploaded;
    try {
      uploaded = await api.upload(file);
    } catch (error) {
      dispatch({ type: "status", key: `f:${fileKey}`, status: "failed" });
      problem(error, "Sending the file");
      return;
    }
    const stored = { id: uploaded.file_id, name: uploaded.file_name, type: uploaded.file_type, size: uploaded.size };
    dispatch({ type: "fileUploaded", fileKey, file: stored });
    await push({ kind: "file", key: `f:${stored.id}`, events: [{ event: "chat_session_file", file_id: stored.id }] });
  }

  function typing() {
    const now = Date.now();
    if (now - typingSince > TYPING_EVERY) {
      typingSince = now;
      deliver([{ event: "chat_session_typing" }]).catch(() => {});
    }
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_IDLE);
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    typingTimer = null;
    if (!typingSince) return;
    typingSince = 0;
    deliver([{ event: "chat_session_not_typing" }]).catch(() => {});
  }

  function shareLocation() {
    if (!navigator.geolocation) {
      dispatch({ type: "notice", text: "This browser cannot share a location." });
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      navigator.geolocation.getCurrentPosition(
        async (position) => {
          const { latitude, longitude, accuracy } = position.coords;
          try {
            await deliver([{ event: "chat_session_location", latitude, longitude, accuracy }]);
            dispatch({ type: "note", text: "You shared your location." });
          } catch (error) {
            problem(error, "Sharing the location");
          }
          resolve();
        },
        (error) => {
          const text =
            error.code === error.PERMISSION_DENIED
              ? "The location was not shared: the browser was not allowed to give it."
              : "The location could not be found.";
          dispatch({ type: "notice", text });
          resolve();
        },
        { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
      );
    });
  }

  /** Context from the embedding page (a policy number, the page the customer is on). */
  async function sendContext(data) {
    try {
      await deliver([{ event: "chat_session_context", data }]);
    } catch (error) {
      if (!offline(error)) problem(error, "Sending the details");
    }
  }

  async function signal(data) {
    await deliver([{ event: "chat_session_signaling", data }]);
  }

  async function requestCall(video) {
    dispatch({ type: "call", patch: { state: "requested", video, videoUp: false, localVideo: false } });
    try {
      await signal({ type: "REQUEST_CALL", offerVideo: video });
    } catch (error) {
      dispatch({ type: "call", patch: { state: "idle", video: false } });
      problem(error, "Asking for a call");
    }
  }

  async function requestPhoneCall(number) {
    dispatch({ type: "phone", phone: { state: "requested", number, reason: null, duration: null } });
    try {
      await signal({ type: "REQUEST_PHONE_CALL", number });
    } catch (error) {
      dispatch({ type: "phone", phone: null });
      problem(error, "Asking to be called");
    }
  }

  async function hangUp() {
    const was = store.get().call.state;
    try {
      await call.hangUp();
    } catch (error) {
      if (error.code !== "no_call") problem(error, "Hanging up");
    }
    if (was === "requested") dispatch({ type: "note", text: "You cancelled the call request." });
    else if (was !== "idle") dispatch({ type: "note", text: "You hung up." });
  }

  async function dropVideo() {
    try {
      await call.dropVideo();
    } catch (error) {
      problem(error, "Stopping the video");
    }
  }

  async function endChat() {
    try {
      await deliver([{ event: "chat_session_end" }]);
    } catch (error) {
      if (error.code === "interaction_closed") return;
      problem(error, "Ending the chat");
    }
  }

  /** Tells the agent which of her messages arrived and which were read (when `seen`). */
  function receipts(seen) {
    const state = store.get();
    if (state.view !== "chat") return;
    const events = [];
    outer: for (const item of state.items) {
      if (item.from !== "agent" || item.kind !== "text" || item.receipt === "read") continue;
      for (const kind of seen ? ["delivered", "read"] : ["delivered"]) {
        // One request stays within the server's limit of events; the rest go next time.
        if (events.length >= RECEIPTS_PER_REQUEST) break outer;
        const mark = `${kind}:${item.msgId}`;
        if (receipted.has(mark) || (kind === "delivered" && item.receipt)) continue;
        receipted.add(mark);
        events.push({ event: `chat_session_message_${kind}`, ref_msg_id: item.msgId });
      }
    }
    if (!events.length) return;
    deliver(events)
      .then(() => events.length >= RECEIPTS_PER_REQUEST && receipts(seen))
      .catch(() => {});
  }

  return {
    sendMessage,
    sendFile,
    typing,
    shareLocation,
    sendContext,
    signal,
    requestCall,
    requestPhoneCall,
    hangUp,
    dropVideo,
    endChat,
    receipts,
    flush,
    session,
  };
}
