// The customer API over HTTP (Bright Pattern Mobile/Web Messaging API v1 and Tandem's additions),
// for one app and one device. Every failure is an ApiError with the server's stable code.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

/** An API client for `appId` on `device`, talking to the gateway at `base` (its origin). */
export function createApi({ base, appId, device }) {
  const root = new URL("/clientweb/api/v1/", base);
  const authorization = `MOBILE-API-140-327-PLAIN appId="${appId}", clientId="${device}"`;
  const fileUrls = new Map();

  async function call(method, path, body) {
    const headers = { authorization };
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["content-type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, root), { method, headers, body: payload });
    } catch (error) {
      throw new ApiError(0, "network", "The chat service cannot be reached.");
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const error = json?.error ?? {};
      throw new ApiError(response.status, error.code ?? "http_" + response.status, error.message);
    }
    return json;
  }

  return {
    /** `{chat: "available", ewt}` or `{chat: "notAvailable", reason}`. */
    availability: () => call("GET", "availability"),
    /** Opens a chat: `{chat_id, state, ewt}`. */
    createChat: ({ name, phone, context }) =>
      call("POST", "chats", {
        from: name || undefined,
        phone_number: phone || undefined,
        parameters: context && Object.keys(context).length ? context : undefined,
      }),
    /** Sends client events over HTTP: `{accepted: [{seq, duplicate}]}`. */
    postEvents: (chatId, events) => call("POST", `chats/${chatId}/events`, { events }),
    /** Every customer-visible event of the chat so far, read page by page (newest first). */
    async history(chatId) {
      const pages = [];
      let before = null;
      do {
        const query = before === null ? "" : `?before_seq=${before}`;
        const page = await call("GET", `chats/${chatId}/history${query}`);
        pages.unshift(page.events);
        before = page.next_before_seq;
      } while (before !== null && before !== undefined);
      return pages.flat();
    },
    /** A short-lived URL for the chat's WebSocket (browsers cannot send `authorization`). */
    async socketUrl(chatId, afterSeq) {
      const ticket = await call("POST", `chats/${chatId}/ws_token`);
      const url = new URL(ticket.url, base);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      url.searchParams.set("after_seq", String(afterSeq));
      return url.href;
    },
    /** Uploads a file for this device: `{file_id, file_name, file_type, size}`. */
    upload(file) {
      const form = new FormData();
      form.append("file", file, file.name || "file");
      return call("POST", "files", form);
    },
    /** A URL the page can show for a file of the chat (fetched once with the header). */
    async fileUrl(chatId, fileId) {
      const key = `${chatId}/${fileId}`;
      if (!fileUrls.has(key)) {
        const loading = (async () => {
          const response = await fetch(new URL(`chats/${chatId}/files/${fileId}`, root), {
            headers: { authorization },
          });
          if (!response.ok) throw new ApiError(response.status, "file_not_found");
          return URL.createObjectURL(await response.blob());
        })();
        fileUrls.set(key, loading);
        loading.catch(() => fileUrls.delete(key));
      }
      return fileUrls.get(key);
    },
  };
}
