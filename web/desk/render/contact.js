// The Contact Info Panel: the customer's name, the phone number as a link that calls it on the
// device the agent chooses (or another number), the call's state with its running duration,
// Release call, and Mute for a call in the browser.
import { $, h, customerName } from "./dom.js";
import { activeCall } from "./chat_panel.js";
import { endReason, formatDuration } from "../store.js";

const STATE = { connecting: "Dialing…", up: "Connected", releasing: "Hanging up…", released: "Ended" };
let device = "browser";
let drawn = "";

/** Where the agent chose to talk ("Talk on"): calls she places and calls she accepts go there. */
export function talkOn() {
  return device;
}

export function renderContact(state, actions, media) {
  const body = $("contact-body");
  const chat = state.selected ? state.chats.get(state.selected) : null;
  if (!chat) { body.replaceChildren("No chat selected."); body.className = "muted"; drawn = ""; return; }
  body.className = "";
  const call = activeCall(chat);
  const last = [...chat.calls.values()].filter((c) => c.kind === "voice").pop();
  const key = JSON.stringify([chat.id, chat.customer, call?.state, call?.reason, call?.leg, last?.state, last?.reason, !!chat.ended, media.muted]);
  if (key === drawn) { tick(call); return; }
  drawn = key;
  const name = customerName(chat.customer);
  const phone = chat.customer?.phone;
  const canCall = !chat.ended && !call;
  const rows = [h("p", { class: "contact-row" }, h("strong", {}, "Name: "), name)];
  rows.push(h("p", { class: "contact-row" }, h("strong", {}, "Phone: "), phone
    ? h("a", {
        href: `tel:${phone}`, "aria-label": `Call ${phone}`, "aria-disabled": canCall ? null : "true",
        onclick: (ev) => { ev.preventDefault(); if (canCall) actions.callCustomer(chat.id, null, device); },
      }, phone)
    : h("span", { class: "muted" }, "none given")));
  const select = h("select", { id: "call-device", onchange: (ev) => { device = ev.target.value; } },
    ...[["browser", "Browser"], ["softphone", "Softphone"], ["mobile", "My mobile"]].map(([v, l]) => h("option", { value: v, selected: v === device }, l)));
  rows.push(h("p", { class: "contact-row" }, h("label", { for: "call-device" }, "Talk on "), select));
  const other = h("input", { id: "other-number", type: "tel", placeholder: "+15550123", size: 14 });
  rows.push(h("form", {
    class: "contact-row",
    onsubmit: (ev) => { ev.preventDefault(); if (other.value.trim()) actions.callCustomer(chat.id, other.value.trim(), device); },
  }, h("label", { for: "other-number" }, "Other number "), other, " ",
     h("button", { type: "submit", disabled: !canCall }, "Call number")));

  const box = h("div", { class: "call-box", role: "status", "aria-live": "polite" });
  if (call) {
    const shown = call.state === "connecting" && call.reason === "ringing" ? "Ringing…" : STATE[call.state] ?? call.state;
    const to = call.number && call.state !== "up" ? ` ${call.number}` : "";
    box.append(h("p", {}, h("span", { class: "call-state", id: "call-state" }, shown), to, " ",
      h("span", { id: "call-duration" })));
    box.append(h("button", { type: "button", class: "danger", onclick: () => actions.releaseCall(chat.id) }, "Release call"));
    if (media.active) {
      box.append(" ", h("button", { type: "button", "aria-pressed": media.muted ? "true" : "false", onclick: () => actions.toggleMute() }, media.muted ? "Unmute" : "Mute"));
    }
  } else if (last?.state === "awaiting_approval") {
    box.append(h("p", {}, h("span", { class: "call-state", id: "call-state" }, "Call requested"),
      last.number ? ` to ${last.number}` : ""));
  } else if (last) {
    box.append(h("p", {}, h("span", { class: "call-state", id: "call-state" }, "Call ended"),
      last.duration_s != null ? ` after ${formatDuration(last.duration_s)}` : "", endReason(last.reason) ? ` — ${endReason(last.reason)}` : ""));
  } else {
    box.append(h("p", { class: "muted" }, "No call."));
  }
  rows.push(box);
  body.replaceChildren(...rows);
  tick(call);
}

function tick(call) {
  const el = $("call-duration");
  if (!el) return;
  el.textContent = call?.state === "up" && call.since ? formatDuration(Math.floor((Date.now() - call.since) / 1000)) : "";
}
