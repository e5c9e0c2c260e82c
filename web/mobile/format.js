// Words and links the page shows: pure functions of the state's values.

/** `policy_number`, `policyNumber` → "Policy number". */
export function label(key) {
  const words = String(key)
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[_\-.]+/g, " ")
    .trim()
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function number(v) {
  const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

/** `{latitude, longitude}` or `{lat, lon|lng}` within range → `{lat, lon}`, else null. */
export function coordinates(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return null;
  const lat = number(value.latitude ?? value.lat);
  const lon = number(value.longitude ?? value.lon ?? value.lng);
  if (lat === null || lon === null || Math.abs(lat) > 90 || Math.abs(lon) > 180) return null;
  return { lat, lon };
}

/** RFC 5870 `geo:` URI (with the `q` pin most map applications read), for the phone's maps. */
export function geoUri({ lat, lon }) {
  return `geo:${lat},${lon}?q=${lat},${lon}`;
}

/** The same place on a web map, for phones without a `geo:` handler. */
export function webMapUrl({ lat, lon }) {
  return `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=17/${lat}/${lon}`;
}

function text(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return value.map(text).join(", ");
  if (typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${label(k)}: ${text(v)}`).join("; ");
  }
  return String(value);
}

/** The context as rows `{label, text}` or `{label, place}`: coordinates become places, nested
 *  objects one line each. */
export function contextRows(context) {
  if (!context || typeof context !== "object" || Array.isArray(context)) {
    return context === null || context === undefined ? [] : [{ label: "Context", text: text(context) }];
  }
  const rows = [];
  const top = coordinates(context);
  const skip = new Set();
  if (top) {
    rows.push({ label: "Location", place: top });
    ["latitude", "longitude", "lat", "lon", "lng"].forEach((k) => skip.add(k));
  }
  for (const [key, value] of Object.entries(context)) {
    if (skip.has(key)) continue;
    const place = coordinates(value);
    const rest = place ? text(withoutCoordinates(value)) : "";
    rows.push(place ? { label: label(key), place, text: rest } : { label: label(key), text: text(value) });
  }
  return rows;
}

function withoutCoordinates(value) {
  const rest = { ...value };
  ["latitude", "longitude", "lat", "lon", "lng"].forEach((k) => delete rest[k]);
  return Object.keys(rest).length ? rest : null;
}

/** 1234567 → "1.2 MB". */
export function size(bytes) {
  if (!(bytes >= 0)) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Seconds → "0:07", "12:30", "1:02:03". */
export function duration(s) {
  const t = Math.max(0, Math.floor(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Milliseconds since the epoch → local "14:05". */
export function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** Why a call ended, as the operator reads it. */
export function endReason(reason, who) {
  switch (reason) {
    case null:
    case undefined:
    case "released":
      return "";
    case "ended by the agent":
      return "you hung up";
    case "ended by the customer":
      return `${who} hung up`;
    case "session ending":
      return "the chat ended";
    default:
      return reason;
  }
}

/** The log line a leg's change deserves, if any: `{text, tone}`. `n` is the call's number on
 *  the page, `who` the customer's name. */
export function legNote(before, leg, n, who) {
  const was = before?.state;
  if (leg.kind === "video") {
    if (leg.state === "awaiting_approval") return { text: `${who} asked for video`, tone: "refused" };
    if (leg.state === "released" && leg.reason === "video_needs_desk") {
      return {
        text: `Video declined: video needs an agent at a desk. ${who} was told so.`,
        tone: "refused",
      };
    }
    return null;
  }
  switch (leg.state) {
    case "awaiting_approval":
      return {
        text: leg.number
          ? `${who} asked to be called at ${leg.number}`
          : `${who} asked for a call from the app`,
        tone: "call",
      };
    case "connecting":
      if (was === "connecting") return null;
      return {
        text: leg.number
          ? `Call ${n}: calling ${leg.number}; your phone rings to join it`
          : `Call ${n}: connecting the app to your phone`,
        tone: "call",
      };
    case "up":
      return was === "up" ? null : { text: `Call ${n} connected`, tone: "call" };
    case "released": {
      if (was === "awaiting_approval" || !was) {
        const why = { declined: "You declined the call request",
          expired: "The call request expired",
          withdrawn: `${who} withdrew the call request` }[leg.reason];
        if (why) return { text: why, tone: "refused" };
      }
      if (!n) return null;
      const parts = [endReason(leg.reason, who)];
      if (leg.durationS !== null) parts.push(`after ${duration(leg.durationS)}`);
      const detail = parts.filter(Boolean).join(", ");
      return { text: `Call ${n} ended${detail ? ` (${detail})` : ""}`, tone: "call" };
    }
    default:
      return null;
  }
}
