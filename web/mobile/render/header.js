// The header: who the chat is with, and where it stands (also `body[data-state]`).

const SUBTITLES = {
  opening: "Opening the chat…",
  already_taken: "Already taken",
  claimed_elsewhere: "Open on another device",
  moved: "Moved to another device",
  link_expired: "Not available",
  link_not_found: "Not available",
  no_link: "Not available",
  failed: "Not available",
};

export function mountHeader(store) {
  const title = document.getElementById("title");
  const subtitle = document.getElementById("subtitle");
  store.subscribe((state) => {
    document.body.dataset.state = state.phase;
    const who = state.customer.name || state.customer.phone;
    const open = state.phase === "chatting" || state.phase === "ended";
    title.textContent = open ? `Chat with ${who || "a customer"}` : "Tandem";
    if (state.phase === "chatting") subtitle.textContent = state.service;
    else if (state.phase === "ended") subtitle.textContent = `${state.service} · ended`;
    else subtitle.textContent = SUBTITLES[state.phase] || "Not available";
  });
}
