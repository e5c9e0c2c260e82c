// A mobile operator's phones, remote-controlled: headless Chromium emulating a phone (Playwright's
// "Pixel 7": its viewport, touch, user agent and pixel ratio), one browser context per device,
// so each has its own storage as a separate phone would.
//
//   node mobile_operator.mjs SCREENSHOT_DIR
//
// Reads one JSON step per line on stdin and answers each with one JSON line on stdout:
// `{"id", "ok": true, ...}` or `{"id", "ok": false, "error"}`. Steps find things as a person
// does: controls by role and accessible name, text where it shows. Every step that waits, waits
// for what a person would see, up to `timeout` ms (60 s unless given).
//
//   {"do": "open", "device", "url"}                  opens the page (a new device if unknown)
//   {"do": "reload", "device"}
//   {"do": "see", "device", "role", "name"?, "text"?, "within"?: {"role", "name"}, "gone"?}
//                                                     waits until it shows (or is gone); its text
//   {"do": "state", "device", "state"}                waits for `body[data-state]`
//   {"do": "click", "device", "role", "name", "within"?}
//   {"do": "fill", "device", "label", "text"}
//   {"do": "picture", "device"}                       waits for a picture in the chat to render
//   {"do": "look", "device"}                          what the page shows now (see `look`)
//   {"do": "scroll", "device", "to": "top"|"bottom"}   scrolls the page's main column
//   {"do": "screenshot", "device", "name"}            SCREENSHOT_DIR/NAME.png
//   {"do": "quit"}
import { createInterface } from "node:readline";
import { chromium, devices } from "playwright-core";

const shots = process.argv[2];
if (!shots) {
  console.error("usage: node mobile_operator.mjs SCREENSHOT_DIR");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  // playwright gives the browser a fresh temporary profile and removes it on close.
  timeout: 60000,
});

const phones = new Map();

async function phone(name) {
  if (!phones.has(name)) {
    const context = await browser.newContext({ ...devices["Pixel 7"] });
    const page = await context.newPage();
    const console_lines = [];
    page.on("console", (m) => console_lines.push(m.text()));
    page.on("pageerror", (e) => console_lines.push("pageerror: " + e.message));
    phones.set(name, { context, page, console_lines });
  }
  return phones.get(name);
}

function locate(page, step) {
  let scope = page;
  if (step.within) scope = page.getByRole(step.within.role, { name: step.within.name, exact: true });
  let found = scope.getByRole(step.role, step.name ? { name: step.name, exact: true } : {});
  if (step.text) found = found.filter({ hasText: step.text });
  return found.first();
}

/** What a person sees: the header, notices, the call, the request, the context and the log. */
async function look(page) {
  return page.evaluate(() => {
    const shown = (el) => el && !el.closest("[hidden]") && el.offsetParent !== null;
    const text = (id) => {
      const el = document.getElementById(id);
      return shown(el) ? el.innerText.trim() : null;
    };
    return {
      state: document.body.dataset.state,
      title: text("title"),
      subtitle: text("subtitle"),
      notice: text("notice-text"),
      number: text("number"),
      call_state: text("call-state"),
      request: text("request-text"),
      alert: text("alert"),
      context: [...document.querySelectorAll("#context-list dt")].map((dt) => ({
        label: dt.innerText.trim(),
        text: dt.nextElementSibling.innerText.trim(),
        links: [...dt.nextElementSibling.querySelectorAll("a")].map((a) => ({
          name: a.innerText.trim(), href: a.getAttribute("href"),
        })),
      })),
      log: [...document.querySelectorAll("#log li")].map((li) => li.innerText.trim()),
      pictures: [...document.querySelectorAll("#log img")].map((img) => ({
        alt: img.alt, natural_width: img.naturalWidth, complete: img.complete,
      })),
      buttons: [...document.querySelectorAll("button")].filter(shown).map((b) => b.innerText.trim()),
    };
  });
}

async function run(step) {
  const timeout = step.timeout || 60000;
  if (step.do === "quit") return {};
  const { page, console_lines } = await phone(step.device || "phone");
  page.setDefaultTimeout(timeout);
  switch (step.do) {
    case "open":
      await page.goto(step.url);
      await page.waitForFunction(() => document.body.dataset.state !== "opening");
      return look(page);
    case "reload":
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.state !== "opening");
      return look(page);
    case "state":
      await page.waitForSelector(`body[data-state=${JSON.stringify(step.state)}]`);
      return look(page);
    case "see": {
      const found = locate(page, step);
      await found.waitFor({ state: step.gone ? "hidden" : "visible" });
      return { text: step.gone ? null : (await found.innerText()).trim() };
    }
    case "click":
      await locate(page, step).click();
      return {};
    case "fill":
      await page.getByLabel(step.label, { exact: true }).fill(step.text);
      return {};
    case "picture": {
      const handle = await page.waitForFunction(() => {
        const img = document.querySelector("#log img");
        return img && img.complete && img.naturalWidth > 0
          ? { alt: img.alt, natural_width: img.naturalWidth, natural_height: img.naturalHeight }
          : null;
      });
      return handle.jsonValue();
    }
    case "look":
      return { ...(await look(page)), console: console_lines };
    case "scroll":
      await page.evaluate((to) => {
        const main = document.getElementById("main");
        main.scrollTop = to === "top" ? 0 : main.scrollHeight;
      }, step.to);
      return {};
    case "screenshot":
      await page.screenshot({ path: `${shots}/${step.name}.png`, fullPage: false });
      return {};
    default:
      throw new Error("unknown step " + step.do);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const step = JSON.parse(line);
  try {
    const result = await run(step);
    console.log(JSON.stringify({ id: step.id, ok: true, ...result }));
  } catch (err) {
    const page = phones.get(step.device || "phone")?.page;
    const seen = page ? await look(page).catch(() => null) : null;
    console.log(JSON.stringify({ id: step.id, ok: false, error: String(err), seen }));
  }
  if (step.do === "quit") break;
}
await browser.close();
// stdin may still be open (the test holds it): leave without waiting for it.
process.exit(0);
