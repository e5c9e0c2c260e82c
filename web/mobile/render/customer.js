// The customer's number and the call: one tap calls through the gateway (the operator's own
// mobile rings too), the call's state shows while it lasts, and Hang up ends it.

import { duration, endReason } from "../format.js";
import { currentCall, customerName, lastCall, pendingRequest } from "../store.js";

function callText(state, call, now) {
  if (call) {
    switch (call.state) {
      case "connecting":
        return call.reason === "ringing"
          ? "Ringing… answer your phone when it rings."
          : "Calling… answer your phone when it rings.";
      case "up":
        return `On the call with ${customerName(state)} · ${duration((now - call.upSince) / 1000)}`;
      case "releasing":
        return "Hanging up…";
    }
  }
  const last = lastCall(state);
  if (!last) return "";
  const why = endReason(last.reason, customerName(state));
  const after = last.durationS !== null ? ` after ${duration(last.durationS)}` : "";
  return `Last call ended${why ? `: ${why}` : ""}${after}.`;
}

export function mountCustomer(store, actions) {
  const section = document.getElementById("customer");
  const number = document.getElementById("number");
  const call = document.getElementById("call");
  const hangup = document.getElementById("hangup");
  const status = document.getElementById("call-state");
  let ticking = null;

  call.addEventListener("click", () => actions.call());
  hangup.addEventListener("click", () => actions.hangUp());

  function render(state) {
    section.hidden = state.phase !== "chatting";
    const phone = state.customer.phone;
    number.textContent = phone || "no number given";
    const live = currentCall(state);
    section.dataset.call = live ? live.state : "none";
    call.hidden = !phone || Boolean(live);
    call.disabled = state.busy || Boolean(pendingRequest(state));
    hangup.hidden = !live || live.state === "releasing";
    hangup.disabled = state.busy;
    status.textContent = callText(state, live, Date.now());
    // The duration goes on while the call is up.
    const up = state.phase === "chatting" && live?.state === "up";
    if (up && !ticking) {
      ticking = setInterval(() => render(store.state), 1000);
    } else if (!up && ticking) {
      clearInterval(ticking);
      ticking = null;
    }
  }
  store.subscribe(render);
}
