// Offers: one alert per offered chat with its service, the customer and the first message,
// and Accept / Decline. Notices (an offer taken by another agent, a refusal) follow.
import { $, h, customerName } from "./dom.js";

export function renderOffers(state, actions) {
  const box = $("offers");
  const shown = new Map([...box.children].map((el) => [el.dataset.chat, el]));
  for (const [id, el] of shown) if (!state.offers.has(id)) el.remove();
  for (const [id, offer] of state.offers) {
    const name = customerName(offer.customer);
    let el = shown.get(id);
    const first = offer.first_message ? h("q", {}, offer.first_message) : h("span", { class: "muted" }, "No message yet");
    const body = [
      h("h3", {}, `New chat: ${offer.service}`),
      h("span", {}, `from ${name}`),
      first,
      h("span", { class: "actions" },
        h("button", { type: "button", class: "primary", "aria-label": `Accept chat from ${name}`, onclick: () => actions.accept(id) }, "Accept"),
        h("button", { type: "button", "aria-label": `Decline chat from ${name}`, onclick: () => actions.decline(id) }, "Decline")),
    ];
    if (!el) {
      el = h("div", { class: "offer", role: "alert", dataset: { chat: id } }, ...body);
      box.append(el);
    } else if (el.dataset.first !== (offer.first_message ?? "")) {
      el.replaceChildren(...body);
    }
    el.dataset.first = offer.first_message ?? "";
  }
  const notices = $("notices");
  notices.replaceChildren(...state.notices.map((n) =>
    h("p", { class: `notice ${n.kind}` }, n.text, " ",
      h("button", { type: "button", "aria-label": "Dismiss", onclick: () => actions.dismiss(n.id) }, "×"))));
}
