// Runs webrtc_app.html in headless Chromium as a customer's app against a running gateway:
//   node webrtc_app.mjs GATEWAY_URL TIMEOUT_MS [APP_ID] [DEVICE] [MIN_PACKETS] [VIDEO] [CODEC]
// The page creates a chat, waits for an agent, requests a call (with video unless VIDEO is 0)
// and answers the gateway's offer with Chromium's fake camera and microphone. This waits until
// at least MIN_PACKETS (default 50) audio and video RTP packets have arrived (for a voice call:
// audio packets, and audio Chromium decoded to something audible), or TIMEOUT_MS, then leaves
// (CODEC, e.g. opus, makes the page answer with that audio codec alone)
// the chat and prints one JSON line: {ok, stats, app, console}. `ok` is false on timeout; the
// exit code is 0 whenever the JSON was printed, so the caller judges the numbers.
import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [
  gateway, timeoutArg, appId = "claims-app", device = `chromium-${process.pid}`, minArg = "50",
  videoArg = "1", codec = "",
] = process.argv.slice(2);
const video = videoArg !== "0";
// Chromium's totalAudioEnergy once its fake microphone's beeps come back (about 0.5 after two
// seconds); silence stays below 1e-8.
const AUDIBLE = 0.01;
const timeoutMs = Number(timeoutArg);
const minPackets = Number(minArg);
if (!gateway || !(timeoutMs > 0) || !(minPackets >= 0)) {
  console.error("usage: node webrtc_app.mjs GATEWAY_URL TIMEOUT_MS [APP_ID] [DEVICE] [MIN_PACKETS] [VIDEO] [CODEC]");
  process.exit(2);
}
// Whatever happens inside, this process does not outlive its time by much.
setTimeout(() => {
  console.error("webrtc_app.mjs: hard timeout");
  process.exit(3);
}, timeoutMs + 30000).unref();

const html = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "webrtc_app.html"), "utf8");
// The page is served from the gateway's origin (intercepted, never asked of the gateway), so
// its API calls are same-origin, and 127.0.0.1 is a secure context for getUserMedia.
const pageUrl = new URL("/__tandem_test/webrtc_app.html", gateway);
const query = { app: appId, device, video: video ? "1" : "0" };
if (codec) query.codec = codec;
pageUrl.search = new URLSearchParams(query).toString();

const profile = mkdtempSync(join(tmpdir(), "tandem-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    // Without these Chromium offers no 127.0.0.1 candidate, only an mDNS name.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  ],
  timeout: 30000,
});
const consoleLines = [];
let result;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => consoleLines.push(m.text()));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.route(
    (url) => url.pathname === pageUrl.pathname,
    (route) => route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: html }),
  );
  await page.goto(pageUrl.href);
  const deadline = Date.now() + timeoutMs;
  let stats;
  let ok = false;
  while (Date.now() < deadline) {
    stats = await page.evaluate(() => window.stats());
    const enough = stats.inboundAudioPackets >= minPackets
      && (video ? stats.inboundVideoPackets >= minPackets : stats.inboundAudioEnergy > AUDIBLE);
    if (enough) {
      ok = true;
      break;
    }
    if (["ended", "completed", "failed", "rejected"].includes(stats.phase)) break;
    await page.waitForTimeout(250);
  }
  const app = await page.evaluate(() => window.app);
  await page.evaluate(() => window.leave()).catch((e) => consoleLines.push(`leave: ${e}`));
  result = { ok, stats, app, console: consoleLines };
} catch (error) {
  result = { ok: false, error: String(error), console: consoleLines };
} finally {
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
