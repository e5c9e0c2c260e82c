// The Mobile chat settings and History dialogs (native <dialog>).
import { $, h, time } from "./dom.js";
import { transcriptUrl } from "../api.js";

export function fillSettings(settings) {
  const s = settings ?? { mobile: null, mobile_mode: "off", mobile_schedule: null };
  $("mobile-number").value = s.mobile ?? "";
  for (const radio of document.querySelectorAll("input[name=mobile_mode]")) radio.checked = radio.value === s.mobile_mode;
  const range = s.mobile_schedule?.hours?.[0];
  if (range) {
    $("schedule-days").value = range.days.join(",");
    $("schedule-from").value = range.from;
    $("schedule-to").value = range.to;
  }
  $("schedule-tz").value = s.mobile_schedule?.time_zone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? "UTC";
  $("settings-error").textContent = "";
  $("settings-status").textContent = "";
}

export function readSettings() {
  const mode = document.querySelector("input[name=mobile_mode]:checked")?.value ?? "off";
  const days = $("schedule-days").value.split(/[\s,]+/).map((d) => d.trim().toLowerCase()).filter(Boolean);
  const from = $("schedule-from").value.trim();
  const to = $("schedule-to").value.trim();
  const tz = $("schedule-tz").value.trim();
  // The hours are kept whatever the mode, so that switching back to "On schedule" finds them.
  const filled = mode === "schedule" || (days.length && from && to && tz);
  return {
    mobile: $("mobile-number").value.trim() || null,
    mobile_mode: mode,
    mobile_schedule: filled ? { time_zone: tz, hours: [{ days, from, to }] } : null,
  };
}

export function renderHistory(state, actions) {
  const list = $("history-list");
  if (!state.history) { list.replaceChildren(h("li", { class: "muted" }, "Loading…")); return; }
  if (!state.history.length) { list.replaceChildren(h("li", { class: "muted" }, "No chats yet.")); return; }
  list.replaceChildren(...state.history.map((c) => h("li", {},
    `${new Date(c.created_at).toLocaleString()} — ${c.service} (${c.phase}) `,
    h("button", { type: "button", onclick: () => actions.openPast(c.chat_id) }, `Open chat of ${time(c.created_at)}`), " ",
    h("a", { href: transcriptUrl(state.auth.token, c.chat_id), target: "_blank", rel: "noopener" }, "Transcript"))));
}
