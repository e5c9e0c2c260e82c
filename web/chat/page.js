// The chat as a page of its own (/chat/?app=claims-app): for a link texted to a phone, or a
// site that would rather link than embed. `context` may carry a JSON object for the agent.

import { mount } from "./app.js";

const params = new URLSearchParams(location.search);
const appId = params.get("app") || document.querySelector('meta[name="tandem-app-id"]')?.content;
const container = document.getElementById("tandem-chat");
if (!appId) {
  container.textContent = "This chat link is incomplete: it names no app (?app=…).";
} else {
  let context = {};
  try {
    context = JSON.parse(params.get("context") || "{}");
  } catch {
    context = {};
  }
  window.TandemChat = mount(container, { base: location.origin, appId, context });
}
