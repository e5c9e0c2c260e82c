// The context the app sent (policy, the accident's position…) as a list; coordinates open the
// phone's map application (`geo:`) or a web map.

import { contextRows, geoUri, webMapUrl } from "../format.js";

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  if (href.startsWith("http")) {
    a.target = "_blank";
    a.rel = "noopener noreferrer";
  }
  return a;
}

export function mountContext(store) {
  const details = document.getElementById("context");
  const list = document.getElementById("context-list");
  let shown = null;
  let opened = false;

  store.subscribe((state) => {
    const rows = state.phase === "chatting" || state.phase === "ended" ? contextRows(state.context) : [];
    details.hidden = rows.length === 0;
    // Open at first, as the context pops with the chat; the operator may fold it away.
    if (rows.length && !opened) {
      details.open = true;
      opened = true;
    }
    const key = JSON.stringify(rows);
    if (key === shown) return;
    shown = key;
    list.replaceChildren();
    for (const row of rows) {
      const dt = document.createElement("dt");
      dt.textContent = row.label;
      const dd = document.createElement("dd");
      if (row.place) {
        const { lat, lon } = row.place;
        const at = `${lat}, ${lon}`;
        dd.append(
          link(geoUri(row.place), `Open ${at} in maps`),
          link(webMapUrl(row.place), "Web map"),
        );
        if (row.text) dd.append(document.createTextNode(row.text));
      } else {
        dd.textContent = row.text;
      }
      list.append(dt, dd);
    }
  });
}
