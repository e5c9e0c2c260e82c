// The mobile operator's page at `/m/{token}`: the composition root. It builds the API client,
// the store and the panels, then claims the chat (or resumes it with the key this browser
// kept) and keeps the store in step with the server. State flows one way: server events →
// store → panels; the operator's actions → the API → events.

import { createApi } from "./api.js";
import { createActions } from "./actions.js";
import { createStore } from "./store.js";
import { sync } from "./sync.js";
import { mountComposer } from "./render/composer.js";
import { mountContext } from "./render/context.js";
import { mountCustomer } from "./render/customer.js";
import { mountHeader } from "./render/header.js";
import { mountLog } from "./render/log.js";
import { mountNotice } from "./render/notice.js";
import { mountRequest } from "./render/request.js";

const match = location.pathname.match(/^\/m\/([^/]+)\/?$/);
const token = match ? decodeURIComponent(match[1]) : null;
const store = createStore();
const api = createApi(token || "");

/** The server will not show the chat here: say why (a retired key means it moved). */
function refused(code) {
  if (code === "session_invalid") {
    api.forget();
    code = "moved";
  }
  store.dispatch({ type: "refused", code });
}

/** Claims or moves the chat here, then follows it. */
async function open(take) {
  store.dispatch({ type: "busy", busy: true });
  try {
    const data = await take();
    store.dispatch({ type: "session", data });
    sync(api, store, refused);
  } catch (err) {
    refused(err.code || "failed");
  } finally {
    store.dispatch({ type: "busy", busy: false });
  }
}

const actions = createActions(api, store, { onRefused: refused });
mountHeader(store);
mountNotice(store, { onMove: () => open(() => api.move()) });
mountCustomer(store, actions);
mountRequest(store, actions);
mountContext(store);
mountLog(store, api);
mountComposer(store, actions);

if (!token) {
  store.dispatch({ type: "refused", code: "no_link" });
} else if (api.hasSession) {
  // This browser claimed the link before: resume, rebuilding the chat from its events.
  store.dispatch({ type: "session", data: {} });
  sync(api, store, refused);
} else {
  open(() => api.claim());
}
