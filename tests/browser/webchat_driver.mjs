// Headless Chromium on command, for the customer web chat's tests: the Rust test writes one JSON
// command per line on stdin and reads one JSON answer per line on stdout, so the test itself
// interleaves what the customer does in the browser with what the agent does over the agent
// API.
//   node webchat_driver.mjs
// Commands (each {id, cmd, ...}; answered {id, ok, value} or {id, ok: false, error}):
//   open {url, device: "desktop"|"phone", geolocation?, permissions?}   → {page}
//   goto {page, url} | reload {page} | close {page}
//   click {page, role, name}              a control by its role and accessible name
//   select {page, label, option}          an option of a drop-down, by its label
//   fill {page, label, text}              a field by its label
//   press {page, label, key}
//   files {page, label, files: [{name, mimeType, hex}]}
//   wait {page, role?, name?, text?, state?, timeout?}   until shown (or hidden, detached)
//   count {page, role?, name?, text?}     how many are in the page now
//   text {page, role?, name?, text?}      the inner text of the first
//   eval {page, js}                       the value of an expression (awaited)
//   screenshot {page, path}
//   offline {page, offline}
//   download {page, role, name}           clicks and returns the downloaded file's text
//   console {page}                        what the page logged so far
// Any command that finds something also takes `within: {role, name}`: it looks only inside that
// landmark or control (the agent's "Release call" in her Contact Info panel, say).
//   quit
// Controls are found as a person finds them (role and accessible name, label, visible text);
// Playwright's locators see into the widget's open shadow root.
import { chromium, devices } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";

const STEP = 20000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    // Without these Chromium offers no 127.0.0.1 candidate, only an mDNS name.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
  ],
  timeout: 30000,
});

const pages = [];
const logs = [];

function locate(page, { role, name, text, label, exact, within }) {
  const scope = within ? locate(page, within).first() : page;
  if (role) return scope.getByRole(role, name === undefined ? {} : { name, exact: exact ?? true });
  if (label) return scope.getByLabel(label, { exact: exact ?? true });
  if (text !== undefined) return scope.getByText(text, { exact: exact ?? false });
  throw new Error("a role, a label or a text is needed");
}

const commands = {
  async open({ url, device = "desktop", geolocation, permissions }) {
    const options =
      device === "phone"
        ? { ...devices["Pixel 7"] }
        : { viewport: { width: 1280, height: 860 } };
    options.permissions = permissions ?? ["camera", "microphone", "geolocation"];
    if (geolocation) options.geolocation = geolocation;
    options.acceptDownloads = true;
    const context = await browser.newContext(options);
    const page = await context.newPage();
    const n = pages.length;
    logs[n] = [];
    page.on("console", (m) => logs[n].push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs[n].push(`pageerror: ${e.message}`));
    page.setDefaultTimeout(STEP);
    pages.push(page);
    await page.goto(url);
    return n;
  },
  async goto({ page, url }) {
    await pages[page].goto(url);
  },
  async reload({ page }) {
    await pages[page].reload();
  },
  async close({ page }) {
    await pages[page].context().close();
  },
  async click({ page, timeout, ...what }) {
    await locate(pages[page], what).first().click({ timeout: timeout ?? STEP });
  },
  async fill({ page, label, text, within }) {
    await locate(pages[page], { label, within }).first().fill(text);
  },
  async select({ page, label, option, within }) {
    await locate(pages[page], { label, within }).first().selectOption({ label: option });
  },
  async press({ page, label, key, within }) {
    await locate(pages[page], { label, within }).first().press(key);
  },
  async files({ page, label, files, within }) {
    const payload = files.map((f) => ({ name: f.name, mimeType: f.mimeType, buffer: Buffer.from(f.hex, "hex") }));
    await locate(pages[page], { label, within }).first().setInputFiles(payload);
  },
  async wait({ page, state = "visible", timeout, ...what }) {
    await locate(pages[page], what).first().waitFor({ state, timeout: timeout ?? STEP });
  },
  async count({ page, ...what }) {
    return locate(pages[page], what).count();
  },
  async text({ page, ...what }) {
    return locate(pages[page], what).first().innerText();
  },
  async eval({ page, js }) {
    return pages[page].evaluate(js);
  },
  async screenshot({ page, path }) {
    mkdirSync(dirname(path), { recursive: true });
    await pages[page].screenshot({ path });
  },
  async offline({ page, offline }) {
    await pages[page].context().setOffline(offline);
  },
  async download({ page, ...what }) {
    const [download] = await Promise.all([
      pages[page].waitForEvent("download"),
      locate(pages[page], what).first().click(),
    ]);
    const path = await download.path();
    return { name: download.suggestedFilename(), text: readFileSync(path, "utf8") };
  },
  async console({ page }) {
    return logs[page] ?? [];
  },
};

const input = createInterface({ input: process.stdin });
for await (const line of input) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    console.log(JSON.stringify({ id: null, ok: false, error: `bad command: ${error}` }));
    continue;
  }
  const { id, cmd, ...args } = request;
  if (cmd === "quit") break;
  try {
    const handler = commands[cmd];
    if (!handler) throw new Error(`unknown command ${cmd}`);
    const value = await handler(args);
    console.log(JSON.stringify({ id, ok: true, value: value ?? null }));
  } catch (error) {
    console.log(JSON.stringify({ id, ok: false, error: String(error?.message ?? error) }));
  }
}
await browser.close();
