// Shared by the Agent Desktop's journeys: launches headless Chromium (fake camera and
// microphone, notifications allowed), talks to the Rust test over stdin/stdout, and finds
// controls by role and accessible name.
//
// Protocol: the script prints one JSON line per step, `{"step": NAME, ...data}`, and may wait
// for the test's answer, one JSON line on stdin `{"go": NAME, ...data}`. The last line is
// `{"ok": true, ...}` or `{"ok": false, "error": …}`.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHOTS = join(root, "target", "desk-screenshots");
mkdirSync(SHOTS, { recursive: true });

const lines = createInterface({ input: process.stdin });
const queue = [];
const waiters = [];
lines.on("line", (line) => {
  const value = JSON.parse(line);
  const i = waiters.findIndex((w) => w.name === value.go);
  if (i >= 0) waiters.splice(i, 1)[0].resolve(value);
  else queue.push(value);
});

/** Tells the test that `name` happened (with `data`). */
export function step(name, data = {}) {
  console.log(JSON.stringify({ step: name, ...data }));
}

/** Waits for the test's `{"go": name}`. */
export function go(name) {
  const i = queue.findIndex((v) => v.go === name);
  if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0]);
  return new Promise((resolve) => waiters.push({ name, resolve }));
}

/** Tells the test `name` and waits for its answer. */
export async function ask(name, data = {}) {
  step(name, data);
  return go(name);
}

export async function launch() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
      "--autoplay-policy=no-user-gesture-required",
    ],
    timeout: 30000,
  });
  return browser;
}

/** A new desk tab on `base` with notifications allowed; its console is kept. */
export async function openDesk(browser, base, { width = 1280, height = 860 } = {}) {
  const context = await browser.newContext({ viewport: { width, height } });
  await context.grantPermissions(["notifications", "microphone", "camera"], { origin: base });
  const page = await context.newPage();
  page.consoleLines = [];
  page.on("console", (m) => page.consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => page.consoleLines.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(20000);
  // Count the notifications the page shows.
  await page.addInitScript(() => {
    window.__notifications = [];
    const Real = window.Notification;
    class Counted extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notifications.push({ title, body: options?.body ?? "" });
      }
    }
    Object.defineProperty(Counted, "permission", { get: () => Real.permission });
    Counted.requestPermission = (...a) => Real.requestPermission(...a);
    window.Notification = Counted;
  });
  await page.goto(`${base}/desk/`);
  return page;
}

export async function login(page, name, password) {
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Runs `body(browser)`; prints the final line and exits with its status. */
export async function journey(body) {
  const browser = await launch();
  let result;
  try {
    result = { ok: true, ...(await body(browser)) };
  } catch (error) {
    const pages = browser.contexts().flatMap((c) => c.pages());
    const consoleLines = pages.flatMap((p) => p.consoleLines ?? []);
    for (const [i, p] of pages.entries()) await shot(p, `failure-${process.pid}-${i}`).catch(() => {});
    result = { ok: false, error: String(error?.stack ?? error), console: consoleLines };
  } finally {
    await browser.close().catch(() => {});
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}

/** Polls the desk's WebRTC statistics (`getStats()`) until `ok(stats)`; the last ones. */
export async function waitStats(page, ok, what, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let stats;
  while (Date.now() < deadline) {
    stats = await page.evaluate(() => window.tandemDesk.stats());
    if (ok(stats)) return stats;
    await page.waitForTimeout(250);
  }
  throw new Error(`never ${what}: ${JSON.stringify(stats)}`);
}
