// The conversation: messages, pictures (shown inline), files (as links), and notes of calls and
// requests. Entries only ever append, so each is drawn once. Once the chat is over the same
// list is the transcript, pictures and call lines included.

import { clock, size } from "../format.js";

/** Hands `blob` to the browser as a download named `name`. */
function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  // The browser has taken it by then.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function mountLog(store, api) {
  const section = document.getElementById("conversation");
  const heading = document.getElementById("conversation-heading");
  const log = document.getElementById("log");
  const saveLine = document.getElementById("transcript-link");
  const save = document.getElementById("transcript-download");
  let drawn = 0;

  save.addEventListener("click", async () => {
    const blob = await api.transcript().catch(() => null);
    if (blob) download(blob, "transcript.html");
    else save.textContent = "The transcript cannot be fetched now";
  });

  function picture(entry, from) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = `Picture from ${from}: ${entry.name}`;
    figure.append(img);
    const caption = document.createElement("figcaption");
    caption.textContent = `${entry.name} · ${size(entry.size)}`;
    figure.append(caption);
    // Fetched with the session key, so the key never appears in a URL.
    api.file(entry.url).then(
      (blob) => { img.src = URL.createObjectURL(blob); },
      () => { caption.textContent = `${entry.name}: the picture cannot be shown`; },
    );
    return figure;
  }

  function fileLink(entry) {
    const a = document.createElement("a");
    a.href = entry.url;
    a.textContent = `${entry.name} (${size(entry.size)})`;
    a.addEventListener("click", async (ev) => {
      ev.preventDefault();
      const blob = await api.file(entry.url).catch(() => null);
      if (blob) download(blob, entry.name);
      else a.textContent = `${entry.name}: the file cannot be fetched now`;
    });
    return a;
  }

  function draw(entry, state) {
    const li = document.createElement("li");
    const from = entry.mine ? "you" : state.customer.name || "the customer";
    if (entry.type === "message") {
      li.className = entry.mine ? "mine" : "theirs";
      li.textContent = entry.text;
    } else if (entry.type === "file") {
      li.className = entry.mine ? "mine file" : "theirs file";
      li.append(entry.fileType?.startsWith("image/") ? picture(entry, from) : fileLink(entry));
    } else {
      li.className = `note ${entry.tone || ""}`.trim();
      li.textContent = entry.text;
    }
    if (entry.type !== "note") {
      const time = document.createElement("time");
      time.dateTime = new Date(entry.at).toISOString();
      time.textContent = clock(entry.at);
      li.append(time);
    }
    return li;
  }

  store.subscribe((state) => {
    const open = state.phase === "chatting" || state.phase === "ended";
    section.hidden = !open;
    const ended = state.phase === "ended";
    heading.textContent = ended ? "Transcript" : "Conversation";
    heading.classList.toggle("visually-hidden", !ended);
    saveLine.hidden = !ended;
    if (state.entries.length === drawn) return;
    const fresh = state.entries.slice(drawn).map((entry) => draw(entry, state));
    drawn = state.entries.length;
    log.append(...fresh);
    fresh[fresh.length - 1].scrollIntoView({ block: "end" });
  });
}
