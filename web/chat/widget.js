// The chat on any website, with one tag:
//   <script src="https://gateway/chat/widget.js" data-app-id="claims-app" async></script>
// Optional: data-context='{"policy": "P-1"}' (JSON for the agent), data-label="Need help?".
// The page may also call window.TandemChat.setContext({...}), .open() and .close(); calls made
// before the script loaded are kept if the page set `window.TandemChat = window.TandemChat || []`
// and pushed [name, ...args] onto it.
//
// Everything lives in a shadow root with its own styles, so the page's CSS cannot reach the
// chat and the chat's cannot reach the page. The chat itself (ES modules from the gateway) is
// loaded on first open, or at once when a chat is in progress, so a page that never opens it
// pays for one button. The gateway must list the page's origin in `chat.allowed_origins`.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !script.src) return;
  var base = new URL(".", script.src);
  var gateway = base.origin;
  var appId = script.getAttribute("data-app-id");
  if (!appId) {
    console.error("Tandem chat: the script tag needs data-app-id");
    return;
  }
  var context = {};
  try {
    context = JSON.parse(script.getAttribute("data-context") || "{}") || {};
  } catch (e) {
    console.error("Tandem chat: data-context is not JSON", e);
  }
  var label = script.getAttribute("data-label") || "Chat with us";
  var queued = Array.isArray(window.TandemChat) ? window.TandemChat : [];

  var host = document.createElement("tandem-chat-widget");
  var shadow = host.attachShadow({ mode: "open" });
  var style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = new URL("chat.css", base).href;
  var launcher = document.createElement("button");
  launcher.type = "button";
  launcher.className = "tandem-launcher";
  launcher.textContent = label;
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", "tandem-panel");
  var panel = document.createElement("div");
  panel.id = "tandem-panel";
  panel.className = "tandem-panel";
  panel.setAttribute("role", "dialog");
  panel.setAttribute("aria-label", label);
  panel.hidden = true;
  shadow.append(style, panel, launcher);

  var chat = null;
  var loading = null;
  var open = false;

  function load() {
    if (!loading) {
      loading = import(new URL("app.js", base).href).then(function (module) {
        chat = module.mount(panel, {
          base: gateway,
          appId: appId,
          context: context,
          onMinimize: function () { show(false); },
          isShown: function () { return open; },
        });
        return chat;
      });
      loading.catch(function (e) {
        console.error("Tandem chat could not load", e);
        panel.textContent = "The chat cannot be loaded here.";
      });
    }
    return loading;
  }

  function show(on) {
    open = on;
    panel.hidden = !on;
    launcher.setAttribute("aria-expanded", String(on));
    launcher.textContent = on ? "Close chat" : label;
    if (on) {
      load().then(function (c) {
        c.shown();
      });
    }
  }

  launcher.addEventListener("click", function () {
    show(!open);
  });

  var api = {
    open: function () { show(true); },
    close: function () { show(false); },
    setContext: function (data) {
      load().then(function (c) {
        c.setContext(data);
      });
    },
    callStats: function () {
      return chat ? chat.callStats() : Promise.resolve(null);
    },
  };
  window.TandemChat = api;
  queued.forEach(function (call) {
    if (Array.isArray(call) && typeof api[call[0]] === "function") api[call[0]].apply(null, call.slice(1));
  });

  function attach() {
    document.body.appendChild(host);
    // A chat in progress (a reload, another page of the site) comes back open.
    try {
      if (window.localStorage.getItem("tandem:" + appId + ":chat")) show(true);
    } catch (e) {
      /* no storage: nothing to resume */
    }
  }
  if (document.body) attach();
  else document.addEventListener("DOMContentLoaded", attach);
})();
