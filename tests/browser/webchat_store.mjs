// The web chat's store on its own (no browser): events in, one state out.
//   node webchat_store.mjs
// Prints "ok" and exits 0 when every check holds; otherwise the failed check, and exits 1.
import assert from "node:assert/strict";
import { initialState, reduce } from "../../web/chat/store.js";

const server = (state, event) => reduce(state, { type: "server", event });
const texts = (state) => state.items.filter((i) => i.kind !== "note").map((i) => i.text ?? i.file?.name);
const notes = (state) => state.items.filter((i) => i.kind === "note").map((i) => i.text);

const checks = {
  "a call that comes up is noted once, however often it is reported up"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "call", patch: { state: "requested", video: false } });
    s = reduce(s, { type: "call", patch: { state: "up" } });
    s = reduce(s, { type: "call", patch: { state: "up", videoUp: false } });
    assert.deepEqual(notes(s), ["The call started."]);
  },
  "an event seen again after a resume is applied once"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    const hello = { event: "chat_session_message", seq: 5, msg_id: "s5", msg: "Hello", party_id: "alice" };
    s = server(s, hello);
    const again = server(s, hello);
    assert.equal(again, s, "the same state object: nothing changed");
    s = server(s, { event: "chat_session_message", seq: 4, msg_id: "s4", msg: "older", party_id: "alice" });
    assert.deepEqual(texts(s), ["Hello"]);
    assert.equal(s.lastSeq, 5);
  },
  "the customer's own message is shown once, sending then sent then read"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "send", msgId: "w1", text: "Hi" });
    assert.equal(s.items[0].status, "sending");
    s = server(s, { event: "chat_session_message", seq: 3, msg_id: "w1", msg: "Hi", party_id: "customer" });
    assert.deepEqual(texts(s), ["Hi"]);
    assert.equal(s.items[0].status, "sent");
    s = server(s, { event: "chat_session_message_read", seq: 4, ref_msg_id: "w1", party_id: "alice" });
    assert.equal(s.items[0].status, "read");
    // A late "delivered", or the ack of a retry, does not take it back.
    s = server(s, { event: "chat_session_message_delivered", seq: 5, ref_msg_id: "w1", party_id: "alice" });
    s = reduce(s, { type: "status", key: "m:w1", status: "sent" });
    s = reduce(s, { type: "status", key: "m:w1", status: "failed" });
    assert.equal(s.items[0].status, "read");
  },
  "a message that could not leave waits as failed and goes back to sending"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "send", msgId: "w2", text: "Are you there?" });
    s = reduce(s, { type: "status", key: "m:w2", status: "failed" });
    assert.equal(s.items[0].status, "failed");
    s = reduce(s, { type: "status", key: "m:w2", status: "sending" });
    assert.equal(s.items[0].status, "sending");
  },
  "an uploaded file is one item from the local preview to the server's echo"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "sendFile", fileKey: "local-1", file: { name: "dent.png", type: "image/png", preview: "blob:x" } });
    s = reduce(s, { type: "fileUploaded", fileKey: "local-1", file: { id: "f9", name: "dent.png" } });
    s = server(s, { event: "chat_session_file", seq: 7, file_id: "f9", file_name: "dent.png", file_type: "image/png", party_id: "customer" });
    assert.deepEqual(texts(s), ["dent.png"]);
    assert.equal(s.items[0].status, "sent");
    assert.equal(s.items[0].file.preview, "blob:x", "the preview stays");
    assert.equal(s.items[0].previousKey, "f:local-1");
  },
  "a declined video call says so once"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "call", patch: { state: "requested", video: true } });
    s = server(s, { event: "chat_session_signaling", seq: 8, data: { type: "CALL_REJECTED", reason_code: "declined", video: false } });
    s = server(s, { event: "chat_session_signaling", seq: 9, data: { type: "CALL_REJECTED", reason_code: "declined", video: true } });
    assert.deepEqual(notes(s), ["The agent declined the call."]);
    assert.equal(s.call.state, "idle");
  },
  "a phone call's progress and end"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = reduce(s, { type: "phone", phone: { state: "requested", number: "+15550123" } });
    s = server(s, { event: "chat_session_call_state", seq: 10, state: "connecting", reason: "ringing" });
    assert.equal(s.phone.state, "ringing");
    assert.equal(s.phone.number, "+15550123");
    s = server(s, { event: "chat_session_call_state", seq: 11, state: "up" });
    s = server(s, { event: "chat_session_call_state", seq: 12, state: "released", reason: "ended by the agent", duration_s: 75 });
    assert.equal(s.phone.state, "released");
    assert.deepEqual(notes(s), ["The phone call ended after 1 min 15 s."]);
  },
  "the chat's end is the ended view, once"() {
    let s = reduce(initialState, { type: "started", chatId: "c1" });
    s = server(s, { event: "chat_session_ended", seq: 20 });
    assert.equal(s.view, "ended");
    const again = server(s, { event: "chat_session_status", seq: 21, state: "completed" });
    assert.equal(again.view, "ended");
    assert.equal(again.items.length, s.items.length);
  },
};

let failed = 0;
for (const [name, check] of Object.entries(checks)) {
  try {
    check();
  } catch (error) {
    failed += 1;
    console.log(`FAILED: ${name}\n${error.stack}`);
  }
}
if (failed) process.exit(1);
console.log("ok");
