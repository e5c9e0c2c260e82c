// Writing to the customer, ending the chat (after a confirmation; the gateway refuses it while
// a call is up, and the reason shows above the composer), and the last refusal.

export function mountComposer(store, actions) {
  const footer = document.getElementById("bottom");
  const alert = document.getElementById("alert");
  const form = document.getElementById("composer");
  const text = document.getElementById("text");
  const send = document.getElementById("send");
  const end = document.getElementById("end");
  const dialog = document.getElementById("confirm-end");

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = text.value.trim();
    if (!msg) return;
    if (await actions.say(msg)) text.value = "";
    text.focus();
  });
  end.addEventListener("click", () => dialog.showModal());
  dialog.addEventListener("click", (ev) => {
    const value = ev.target.closest("button")?.value;
    if (!value) return;
    dialog.close(value);
    if (value === "end") actions.end();
  });

  store.subscribe((state) => {
    footer.hidden = state.phase !== "chatting";
    if (alert.textContent !== state.alert) alert.textContent = state.alert;
    send.disabled = end.disabled = state.busy;
  });
}
