// The chats as tabs (WAI-ARIA tabs, vertical): the customer, the service, an unread count.
import { $, h, customerName } from "./dom.js";

export function renderChatList(state, actions) {
  const list = $("chat-tabs");
  $("no-chats").hidden = state.chats.size > 0;
  const tabs = [];
  for (const [id, chat] of state.chats) {
    const selected = state.selected === id;
    const name = customerName(chat.customer);
    const unread = chat.unread ? h("span", { class: "unread", "aria-hidden": "true" }, String(chat.unread)) : null;
    const label = `${name}, ${chat.service}${chat.unread ? `, ${chat.unread} unread` : ""}${chat.ended ? ", ended" : ""}`;
    tabs.push(h("button", {
      type: "button", role: "tab", id: `tab-${id}`, "aria-selected": selected ? "true" : "false",
      "aria-controls": "chat-panel", "aria-label": label, tabindex: selected ? "0" : "-1",
      dataset: { chat: id },
      onclick: () => actions.select(id),
      onkeydown: (ev) => {
        const keys = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };
        if (!(ev.key in keys)) return;
        ev.preventDefault();
        const ids = [...state.chats.keys()];
        const next = ids[(ids.indexOf(id) + keys[ev.key] + ids.length) % ids.length];
        actions.select(next);
        document.getElementById(`tab-${next}`)?.focus();
      },
    }, h("span", {}, name, " ", h("small", { class: "muted" }, chat.service)), chat.ended ? h("span", { class: "ended" }, "ended") : null, unread));
  }
  list.replaceChildren(...tabs);
}
