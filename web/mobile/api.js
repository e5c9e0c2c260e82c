// The operator's chat API on the link's token (`/m/{token}/…`), and the session key that
// authorises it.
//
// The key is kept in this browser's storage under the token, so the link opened again here
// (a reload, the SMS tapped again) resumes the chat instead of claiming it. Another device has
// no key: its claim is answered `claimed_elsewhere`, and `move` brings the chat over.

/** A refusal from the server: its HTTP status and stable code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "http_" + status;
  }
}

const PREFIX = "tandem-mobile:";
/** Keys of links older than this are forgotten (the links themselves are, after two days). */
const KEEP_MS = 2 * 24 * 3600 * 1000;

function forgetStale() {
  try {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const name = localStorage.key(i);
      if (!name || !name.startsWith(PREFIX)) continue;
      const kept = JSON.parse(localStorage.getItem(name) || "{}");
      if (!(kept.at > Date.now() - KEEP_MS)) localStorage.removeItem(name);
    }
  } catch {
    // Storage disabled or full: the page still works, without resuming.
  }
}

/** The client for one link. */
export function createApi(token) {
  const base = "/m/" + encodeURIComponent(token);
  const stored = PREFIX + token;
  forgetStale();
  let session = null;
  try {
    session = JSON.parse(localStorage.getItem(stored) || "null")?.session || null;
  } catch {
    session = null;
  }

  function keep(key) {
    session = key;
    try {
      if (key) localStorage.setItem(stored, JSON.stringify({ session: key, at: Date.now() }));
      else localStorage.removeItem(stored);
    } catch {
      // See forgetStale.
    }
  }

  async function request(method, path, body) {
    const headers = {};
    if (session) headers.authorization = "Bearer " + session;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(path.startsWith("/m/") ? path : base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const type = response.headers.get("content-type") || "";
    if (!response.ok) {
      const data = type.includes("json") ? await response.json().catch(() => null) : null;
      throw new ApiError(response.status, data?.error?.code, data?.error?.message);
    }
    if (type.includes("json")) return response.json();
    return response.blob();
  }

  async function takeSession(path) {
    const data = await request("POST", path);
    keep(data.session);
    return data;
  }

  let sent = 0;
  return {
    get hasSession() {
      return session !== null;
    },
    /** Forgets a key the server no longer takes. */
    forget: () => keep(null),
    claim: () => takeSession("/claim"),
    move: () => takeSession("/move"),
    /** The page's events after `after` (a long poll). */
    events: (after) => request("GET", "/events?after=" + after),
    // The message id makes a retried send idempotent.
    say: (msg) => request("POST", "/messages", { msg, msg_id: `m-${Date.now()}-${++sent}` }),
    call: () => request("POST", "/call"),
    release: () => request("POST", "/release"),
    acceptCall: () => request("POST", "/accept_call"),
    declineCall: () => request("POST", "/decline_call"),
    end: () => request("POST", "/end"),
    /** A file of the chat (`url` as the events give it), as a Blob. */
    file: (url) => request("GET", url),
    transcript: () => request("GET", "/transcript?format=html"),
  };
}
