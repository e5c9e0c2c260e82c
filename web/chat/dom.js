// A small helper to build elements: h("button", {type: "button", onclick}, "Send").
// Attributes that start with "on" become listeners; `hidden`, `disabled` and the like are
// properties; everything else is an attribute. Children may be strings, nodes or arrays.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name in PROPERTIES) {
      el[PROPERTIES[name]] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

const PROPERTIES = {
  class: "className",
  hidden: "hidden",
  disabled: "disabled",
  value: "value",
  text: "textContent",
  required: "required",
};

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Sets `el.textContent` only when it changes (screen readers announce changes in live regions). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** "about 2 min", "under a minute". */
export function formatWait(seconds) {
  if (!seconds || seconds < 60) return "under a minute";
  const minutes = Math.round(seconds / 60);
  return `about ${minutes} min`;
}

/** "12 KB", "1.5 MB". */
export function formatSize(bytes) {
  if (bytes == null) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
