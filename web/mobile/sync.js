// Keeps the store in step with the chat: long polls the events after the last `seq` the store
// holds, so a retry or a reload resumes where the page stood and shows nothing twice. From
// `seq` 0 (a reload) the events rebuild the whole chat.

import { ApiError } from "./api.js";

const RETRY_MS = 2000;

/** Polls until the chat ends or the session is refused; `onRefused(code)` is told the latter. */
export async function sync(api, store, onRefused) {
  while (store.state.phase === "chatting") {
    try {
      const page = await api.events(store.state.lastSeq);
      store.dispatch({ type: "events", events: page.events });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        onRefused(err.code);
        return;
      }
      // The network or the gateway is away for a moment: ask again.
      await new Promise((ok) => setTimeout(ok, RETRY_MS));
    }
  }
}
