// The agent API over HTTP: login, logout, uploads, history, settings. Every call takes the
// token explicitly; failures become an Error with the server's stable `code`.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, { token, json, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(`/agent/v1${path}`, {
      method,
      headers,
      body: json !== undefined ? JSON.stringify(json) : body,
    });
  } catch (e) {
    throw new ApiError(0, "network", "The server cannot be reached.");
  }
  const text = await response.text();
  let value = null;
  try { value = text ? JSON.parse(text) : null; } catch { value = null; }
  if (!response.ok) {
    const error = value?.error ?? {};
    throw new ApiError(response.status, error.code ?? `http_${response.status}`, error.message);
  }
  return value;
}

export const login = (name, password) => call("POST", "/login", { json: { name, password } });
export const logout = (token) => call("POST", "/logout", { token });
export const settings = (token) => call("GET", "/settings", { token });
export const saveSettings = (token, mobile_settings) =>
  call("PUT", "/settings", { token, json: { mobile_settings } });
export const chats = (token) => call("GET", "/chats?limit=50", { token });
export const history = (token, chatId) =>
  call("GET", `/chats/${encodeURIComponent(chatId)}/history`, { token });

export function upload(token, file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return call("POST", "/files", { token, body: form });
}

/** A URL an <img>, <a> or <audio> can load with the agent's token (they send no header). */
export function fileUrl(token, chatId, fileId) {
  return `/agent/v1/chats/${encodeURIComponent(chatId)}/files/${encodeURIComponent(fileId)}?token=${encodeURIComponent(token)}`;
}
export function recordingUrl(token, chatId, file) {
  return `/agent/v1/chats/${encodeURIComponent(chatId)}/recordings/${encodeURIComponent(file)}?token=${encodeURIComponent(token)}`;
}
export function transcriptUrl(token, chatId) {
  return `/agent/v1/chats/${encodeURIComponent(chatId)}/transcript?format=html&token=${encodeURIComponent(token)}`;
}
