// An agent's browser softphone: JsSIP (from npm) in headless Chromium, registering over SIP
// over WebSocket (RFC 7118) and answering the calls it gets, with its fake microphone.
//
//   node jssip_agent.mjs WSS_URL SIP_URI PASSWORD SECONDS
//
// Prints one JSON line on stdout per thing that happened:
//   {"event": "registered"} | {"event": "registration_failed", "cause"}
//   {"event": "incoming", "from", "sdp"}            an INVITE, before it is answered
//   {"event": "confirmed"} | {"event": "failed", "cause"} | {"event": "ended", "cause"}
//   {"event": "stats", "received", "sent"}           audio RTP packets, by getStats(), each second
//   {"event": "error", "message"}                    a page error
// and quits after SECONDS. JsSIP ships as CommonJS only, so this driver bundles it (and its
// three dependencies) into one script for the page; there is no build step.
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [url, uri, password, seconds] = process.argv.slice(2);
if (!seconds) {
  console.error("usage: node jssip_agent.mjs WSS_URL SIP_URI PASSWORD SECONDS");
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const say = (what) => process.stdout.write(JSON.stringify(what) + "\n");

/** One script defining `window.JsSIP`: each CommonJS module of the package's graph, wrapped. */
function bundle(entry) {
  const ids = new Map();
  const sources = [];
  const file = (path) => {
    for (const candidate of [path, path + ".js", path + ".json", join(path, "index.js")]) {
      if (existsSync(candidate) && !candidate.endsWith("/")) {
        try {
          readFileSync(candidate);
          return candidate;
        } catch {
          // a directory: try the next
        }
      }
    }
    throw new Error(`cannot resolve ${path}`);
  };
  const resolveFrom = (from, spec) => {
    if (spec.startsWith(".")) return file(resolve(dirname(from), spec));
    const root = join(here, "node_modules", spec);
    const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    const main = typeof meta.browser === "string" ? meta.browser : meta.main || "index.js";
    return file(resolve(root, main));
  };
  const visit = (path) => {
    if (ids.has(path)) return ids.get(path);
    const id = ids.size;
    ids.set(path, id);
    let source = readFileSync(path, "utf8");
    if (path.endsWith(".json")) {
      source = `module.exports = ${source};`;
    } else {
      source = source.replace(/require\((['"])([^'"]+)\1\)/g, (_, _q, spec) => {
        return `require(${visit(resolveFrom(path, spec))})`;
      });
    }
    sources[id] = `function (module, exports, require) {\n${source}\n}`;
    return id;
  };
  const entryId = visit(entry);
  return `(() => {
    const factories = [${sources.join(",\n")}];
    const cache = [];
    const require = (id) => {
      if (!cache[id]) {
        cache[id] = { exports: {} };
        factories[id](cache[id], cache[id].exports, require);
      }
      return cache[id].exports;
    };
    window.JsSIP = require(${entryId});
  })();`;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks",
    // The test's gateway presents a certificate from the test's own CA.
    "--ignore-certificate-errors",
  ],
  timeout: 60000,
});
const context = await browser.newContext({ ignoreHTTPSErrors: true });
const page = await context.newPage();
page.on("pageerror", (e) => say({ event: "error", message: e.message }));
page.on("console", (m) => {
  if (m.type() === "error") say({ event: "error", message: m.text() });
});
await page.exposeFunction("report", (what) => say(what));
// A secure context (getUserMedia needs one) without a server: the page is served from here.
await page.route("http://localhost/**", (route) =>
  route.fulfill({
    contentType: "text/html",
    body: "<!doctype html><html lang=en><title>Agent softphone</title><h1>Agent softphone</h1></html>",
  }),
);
await page.goto("http://localhost/agent");
await page.addScriptTag({ content: bundle(join(here, "node_modules/jssip/lib/JsSIP.js")) });
await page.evaluate(
  ({ url, uri, password }) => {
    const socket = new JsSIP.WebSocketInterface(url);
    const ua = new JsSIP.UA({ sockets: [socket], uri, password, register: true });
    ua.on("registered", () => report({ event: "registered" }));
    ua.on("registrationFailed", (e) => report({ event: "registration_failed", cause: e.cause }));
    ua.on("newRTCSession", ({ session, originator, request }) => {
      if (originator !== "remote") return;
      report({ event: "incoming", from: request.from.uri.toString(), sdp: request.body || "" });
      session.on("confirmed", () => {
        report({ event: "confirmed" });
        const timer = setInterval(async () => {
          if (!session.connection) return;
          let received = 0;
          let sent = 0;
          (await session.connection.getStats()).forEach((s) => {
            if (s.kind !== "audio") return;
            if (s.type === "inbound-rtp") received += s.packetsReceived || 0;
            if (s.type === "outbound-rtp") sent += s.packetsSent || 0;
          });
          report({ event: "stats", received, sent });
        }, 1000);
        session.on("ended", () => clearInterval(timer));
      });
      session.on("failed", (e) => report({ event: "failed", cause: e.cause }));
      session.on("ended", (e) => report({ event: "ended", cause: e.cause }));
      session.answer({ mediaConstraints: { audio: true, video: false } });
    });
    ua.start();
  },
  { url, uri, password },
);
await new Promise((done) => setTimeout(done, Number(seconds) * 1000));
await browser.close();
