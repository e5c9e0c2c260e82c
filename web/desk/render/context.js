// The Context Information Area: whatever context the app sent, as a readable list, and a map
// when it carries coordinates (refreshed live as the app sends more).
import { $, h } from "./dom.js";
import { showPosition } from "../map.js";

const LABELS = { channel: "Channel", caller: "Caller", number: "Number dialled", policy: "Policy" };

function label(key) {
  return LABELS[key] ?? key.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

function value(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return Object.entries(v).map(([k, x]) => `${label(k)}: ${typeof x === "object" ? JSON.stringify(x) : x}`).join(", ");
  return String(v);
}

/** Coordinates from the context: `location {latitude, longitude}`, or top-level ones. */
export function coordinates(context) {
  const candidates = [context?.location, context?.gps, context];
  for (const c of candidates) {
    const lat = Number(c?.latitude ?? c?.lat);
    const lon = Number(c?.longitude ?? c?.lon ?? c?.lng);
    if (c && Number.isFinite(lat) && Number.isFinite(lon) && Math.abs(lat) <= 90 && Math.abs(lon) <= 180
        && (c.latitude ?? c.lat) !== undefined) {
      return { latitude: lat, longitude: lon };
    }
  }
  return null;
}

let drawn = "";

export function renderContext(state) {
  const chat = state.selected ? state.chats.get(state.selected) : null;
  const context = chat?.context ?? {};
  const key = JSON.stringify([chat?.id, context]);
  if (key === drawn) return;
  drawn = key;
  const entries = context && typeof context === "object" ? Object.entries(context) : [];
  $("context-list").replaceChildren(...entries.flatMap(([k, v]) => [h("dt", {}, label(k)), h("dd", {}, value(v))]));
  if (!entries.length) $("context-list").replaceChildren(h("dd", { class: "muted" }, chat ? "No context." : "No chat selected."));
  const where = coordinates(context);
  $("location").hidden = !where;
  if (!where) return;
  const { latitude, longitude } = where;
  const link = `https://www.openstreetmap.org/?mlat=${latitude}&mlon=${longitude}#map=16/${latitude}/${longitude}`;
  $("location-text").replaceChildren(
    "Position: ", h("span", { id: "coordinates" }, `${latitude.toFixed(5)}, ${longitude.toFixed(5)}`), " — ",
    h("a", { href: link, target: "_blank", rel: "noopener" }, "Open the location in a map"));
  try {
    showPosition($("map"), where, { tilesUrl: state.desk.map_tiles_url, attribution: state.desk.map_attribution });
  } catch (e) {
    console.warn("map", e);
  }
}
