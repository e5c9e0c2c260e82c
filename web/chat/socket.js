// The chat's WebSocket. It opens with a short-lived ticket (browsers cannot send
// `authorization` on a socket), asks for everything after the last `seq` the store applied, and
// after any loss (network, server restart, a socket that stops answering) reconnects with
// growing pauses and resumes from there: the server sends each durable event once after that
// `seq`, and the store drops anything it has applied already.
//
// Client events go over the socket with a `ref` and resolve with the server's `ack` (or reject
// with its `error`); while the socket is down `send` rejects at once with code "offline", so the
// caller can use HTTP instead.

import { ApiError } from "./api.js";

/** Most time between two attempts to reconnect (ms). */
const MAX_PAUSE = 8000;
/** A socket that has not answered a heartbeat this long is taken for dead (ms). */
const ANSWER_WITHIN = 10000;
/** How often an idle socket is checked (ms). */
const HEARTBEAT = 20000;

export function createSocket({ api, chatId, lastSeq, onEvent, onState }) {
  let ws = null;
  let stopped = false;
  let attempt = 0;
  let retryTimer = null;
  let heartbeatTimer = null;
  let nextRef = 1;
  const pending = new Map();

  async function connect() {
    retryTimer = null;
    if (stopped || ws) return;
    onState("connecting");
    let url;
    try {
      url = await api.socketUrl(chatId, lastSeq());
    } catch (error) {
      if (error.code === "chat_not_found") {
        stopped = true;
        onState("gone");
        return;
      }
      return retry();
    }
    if (stopped || ws) return;
    const socket = new WebSocket(url);
    ws = socket;
    socket.onopen = () => {
      attempt = 0;
      onState("online");
      beat();
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.event === "ack" || event.event === "error") settle(event);
      else onEvent(event);
    };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      clearTimeout(heartbeatTimer);
      for (const [, waiter] of pending) waiter.reject(new ApiError(0, "offline", "connection lost"));
      pending.clear();
      if (!stopped) {
        onState("offline");
        retry();
      }
    };
  }

  function retry() {
    if (stopped || retryTimer) return;
    const pause = Math.min(MAX_PAUSE, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
    attempt += 1;
    retryTimer = setTimeout(connect, pause);
  }

  function settle(reply) {
    const waiter = pending.get(reply.ref);
    if (!waiter) return;
    pending.delete(reply.ref);
    clearTimeout(waiter.timer);
    if (reply.event === "ack") waiter.resolve(reply);
    else waiter.reject(new ApiError(400, reply.error?.code ?? "error", reply.error?.message));
  }

  /** An empty batch is answered with an empty ack: proof the socket still works. */
  function beat() {
    clearTimeout(heartbeatTimer);
    heartbeatTimer = setTimeout(() => {
      const socket = ws;
      if (!socket) return;
      send([]).then(beat, () => {
        // No answer: the connection is gone without a word (a dead network). Start over.
        if (ws === socket) {
          socket.onclose();
          socket.close();
        }
      });
    }, HEARTBEAT);
  }

  function send(events) {
    const socket = ws;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ApiError(0, "offline", "not connected"));
    }
    const ref = `r${nextRef++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(ref);
        reject(new ApiError(0, "offline", "no answer"));
      }, ANSWER_WITHIN);
      pending.set(ref, { resolve, reject, timer });
      socket.send(JSON.stringify({ events, ref }));
    });
  }

  /** The browser says the network is back: try now rather than at the next pause. */
  function wake() {
    if (stopped || ws) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    attempt = 0;
    connect();
  }
  window.addEventListener("online", wake);

  connect();
  return {
    send,
    wake,
    stop() {
      stopped = true;
      window.removeEventListener("online", wake);
      clearTimeout(retryTimer);
      clearTimeout(heartbeatTimer);
      const socket = ws;
      ws = null;
      if (socket) socket.close();
    },
  };
}
