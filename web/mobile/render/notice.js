// Why the chat is not shown here, and, when it is this operator's on another device, a way to
// move it here after a confirmation.

const TEXTS = {
  already_taken: "This chat was already taken by someone else.",
  claimed_elsewhere: "This chat is already taken by you on another device.",
  moved: "This chat moved to another device.",
  link_expired: "This link has expired: the offer is over.",
  link_not_found: "This link is not valid.",
  no_link: "Open the chat from the link in your SMS.",
  failed: "The chat could not be opened. Reload the page to try again.",
};

export function mountNotice(store, { onMove }) {
  const section = document.getElementById("notice");
  const text = document.getElementById("notice-text");
  const move = document.getElementById("move");
  const dialog = document.getElementById("confirm-move");

  move.addEventListener("click", () => dialog.showModal());
  dialog.addEventListener("click", (ev) => {
    const value = ev.target.closest("button")?.value;
    if (!value) return;
    dialog.close(value);
    if (value === "move") onMove();
  });

  store.subscribe((state) => {
    const shown = state.phase !== "chatting" && state.phase !== "ended" && state.phase !== "opening";
    section.hidden = !shown;
    if (!shown) return;
    text.textContent = TEXTS[state.phase] || TEXTS.failed;
    move.hidden = !(state.phase === "claimed_elsewhere" || state.phase === "moved");
    move.textContent = state.phase === "moved" ? "Move the chat back here" : "Move the chat here";
    move.disabled = state.busy;
  });
}
