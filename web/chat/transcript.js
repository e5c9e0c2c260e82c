// The customer's transcript of a chat, as plain text, from the chat's history (the server's
// record of everything the customer could see). Pure: events in, text out.

export function transcriptText(events, { customerName = "You", title = "Chat transcript" } = {}) {
  const names = new Map([["customer", customerName]]);
  const lines = [title, ""];
  const time = (ms) => (ms ? new Date(ms).toLocaleString() : "");
  for (const e of events) {
    const at = time(e.timestamp);
    const who = names.get(e.party_id) ?? e.display_name ?? e.party_id ?? "";
    switch (e.event) {
      case "chat_session_party_joined":
        names.set(e.party_id, e.display_name || e.party_id);
        lines.push(`[${at}] ${e.display_name || "An agent"} joined the chat`);
        break;
      case "chat_session_party_left":
        lines.push(`[${at}] ${e.display_name || "The agent"} left the chat`);
        break;
      case "chat_session_message":
        lines.push(`[${at}] ${who}: ${e.msg}`);
        break;
      case "chat_session_file":
        lines.push(`[${at}] ${who} sent a file: ${e.file_name}`);
        break;
      case "chat_session_call_state":
        if (e.state === "up") lines.push(`[${at}] Phone call connected`);
        if (e.state === "released") lines.push(`[${at}] Phone call ended`);
        break;
      case "chat_session_ended":
        lines.push(`[${at}] The chat ended`);
        break;
      default:
    }
  }
  return lines.join("\n") + "\n";
}
