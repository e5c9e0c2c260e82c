// The top bar: who is logged in, her presence (Ready / Not ready), the connection.
import { $ } from "./dom.js";

const LABELS = { available: "Ready", away: "Not ready", busy: "Busy", offline: "Offline" };
const CONNECTION = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Connection lost — reconnecting…" };

export function renderHeader(state) {
  $("agent-name").textContent = state.auth?.display_name ?? "";
  const badge = $("presence-badge");
  badge.dataset.state = state.presence;
  badge.textContent = LABELS[state.presence] ?? state.presence;
  const select = $("presence");
  if (document.activeElement !== select && (state.presence === "available" || state.presence === "away")) {
    select.value = state.presence;
  }
  const c = $("connection");
  c.dataset.state = state.connection;
  c.textContent = CONNECTION[state.connection] ?? "";
}
