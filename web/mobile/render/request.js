// The customer's call request: Accept dials (a phone call to the customer's number, or the
// app's call bridged to the operator's mobile), Decline tells the customer no.

import { customerName, pendingRequest } from "../store.js";

export function mountRequest(store, actions) {
  const section = document.getElementById("request");
  const text = document.getElementById("request-text");
  const accept = document.getElementById("accept");
  const decline = document.getElementById("decline");

  accept.addEventListener("click", () => actions.accept());
  decline.addEventListener("click", () => actions.decline());

  store.subscribe((state) => {
    const request = state.phase === "chatting" ? pendingRequest(state) : null;
    section.hidden = !request;
    if (!request) return;
    const who = customerName(state);
    const wanted = request.number
      ? `${who} asks to be called at ${request.number}.`
      : `${who} asks for a voice call from the app.`;
    // Rewritten only when it changes, so that the alert is announced once.
    if (text.textContent !== wanted) text.textContent = wanted;
    accept.textContent = request.number ? "Accept and call" : "Accept on my phone";
    accept.disabled = decline.disabled = state.busy;
  });
}
