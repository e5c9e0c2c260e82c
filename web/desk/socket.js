// The agent socket (`/agent/v1/ws`): commands answered by `ack`/`error` matched on `ref`, events
// handed on, and reconnection by itself when the socket drops. Every (re)connection starts with
// a `hello`, which the store treats as the whole truth, so nothing is missed or shown twice.

const BACKOFF_MS = [250, 500, 1000, 2000, 3000];

export class DeskSocket {
  constructor(token, { onEvent, onState, onRejected }) {
    this.token = token;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onRejected = onRejected;
    this.pending = new Map();
    this.nextRef = 1;
    this.attempt = 0;
    this.stopped = false;
    this.ws = null;
  }

  connect() {
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/agent/v1/ws?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    let greeted = false;
    ws.onmessage = (m) => {
      let v;
      try { v = JSON.parse(m.data); } catch { return; }
      if (v.event === "hello") { greeted = true; this.attempt = 0; this.onState("open"); }
      if ((v.event === "ack" || v.event === "error") && v.ref !== undefined && this.pending.has(v.ref)) {
        const { resolve, reject } = this.pending.get(v.ref);
        this.pending.delete(v.ref);
        if (v.event === "ack") resolve(v); else reject(v.error);
        return;
      }
      if (v.event === "resync") { ws.close(); return; }
      this.onEvent(v);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      for (const { reject } of this.pending.values()) reject({ code: "disconnected", message: "The connection dropped." });
      this.pending.clear();
      if (this.stopped) return;
      this.onState("closed");
      // A socket refused before its hello may be a token that expired.
      if (!greeted && this.attempt >= 1) this.onRejected?.();
      const wait = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
      this.attempt += 1;
      setTimeout(() => this.connect(), wait);
    };
  }

  /** Sends a command; resolves with its ack, rejects with `{code, message}`. */
  command(body) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject({ code: "disconnected", message: "Not connected; reconnecting…" });
        return;
      }
      const ref = this.nextRef++;
      this.pending.set(ref, { resolve, reject });
      this.ws.send(JSON.stringify({ ...body, ref }));
    });
  }

  /** Drops the connection as a network failure would (the desk reconnects by itself). */
  drop() { this.ws?.close(); }

  close() {
    this.stopped = true;
    this.ws?.close();
  }
}
