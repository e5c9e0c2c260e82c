// Run by benches/desk_speed.sh against a running gateway: node desk_speed.mjs BASE CHATS SECONDS
// The customers are plain HTTP clients of the customer API; the desk is headless Chromium.
import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";

const [base, chatsArg = "50", secondsArg = "10"] = process.argv.slice(2);
const CHATS = Number(chatsArg);
const SECONDS = Number(secondsArg);
const OPEN = 20;
const MESSAGES = 500;

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const summary = (xs) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms (n=${xs.length})`;

const auth = (device) => `MOBILE-API-140-327-PLAIN appId="claims-app", clientId="${device}"`;
async function openChat(device, name) {
  const r = await fetch(`${base}/clientweb/api/v1/chats`, {
    method: "POST",
    headers: { authorization: auth(device), "content-type": "application/json" },
    body: JSON.stringify({ from: name, phone_number: "+15550100" }),
  });
  return (await r.json()).chat_id;
}
async function post(device, chat, events) {
  const r = await fetch(`${base}/clientweb/api/v1/chats/${chat}/events`, {
    method: "POST",
    headers: { authorization: auth(device), "content-type": "application/json" },
    body: JSON.stringify({ events }),
  });
  if (!r.ok) throw new Error(`events: ${r.status} ${await r.text()}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  // When each offer left the gateway: the `timestamp` of its event, as the socket carries it.
  const sent = new Map();
  page.on("websocket", (ws) => ws.on("framereceived", ({ payload }) => {
    try {
      const e = JSON.parse(payload);
      if (e.event === "offer" && !sent.has(e.chat_id)) sent.set(e.chat_id, e.timestamp);
    } catch { /* not JSON */ }
  }));
  await page.goto(`${base}/desk/`);
  await page.getByLabel("Name").fill("alice");
  await page.getByLabel("Password").fill("desk");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await page.locator("#presence-badge[data-state=available]").waitFor();
  // When each offer is painted: the frame after its banner entered the page. The desk takes
  // each offer once it is seen, as an agent would, so the next ones keep coming.
  await page.evaluate(() => {
    window.__painted = new Map();
    new MutationObserver((records) => {
      for (const r of records) for (const node of r.addedNodes) {
        const id = node.dataset?.chat;
        if (!id || window.__painted.has(id)) continue;
        requestAnimationFrame(() => setTimeout(() => {
          window.__painted.set(id, performance.timeOrigin + performance.now());
          node.querySelector("button.primary")?.click();
        }, 0));
      }
    }).observe(document.getElementById("offers"), { childList: true });
  });

  // 1. Offers: CHATS chats spread evenly over SECONDS.
  const ids = [];
  const started = Date.now();
  for (let i = 0; i < CHATS; i++) {
    const due = started + (i * SECONDS * 1000) / CHATS;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
    ids.push(await openChat(`bench-${i}`, `Customer ${i}`));
  }
  await page.waitForFunction((n) => window.__painted.size >= n, CHATS, { timeout: 60000 });
  const painted = new Map(await page.evaluate(() => [...window.__painted]));
  const offerMs = ids.filter((id) => sent.has(id) && painted.has(id)).map((id) => painted.get(id) - sent.get(id));
  console.log(`offer leaving the gateway -> painted on the desk, ${CHATS} chats over ${SECONDS} s: ${summary(offerMs)}`);
  await page.waitForFunction((n) => document.querySelectorAll("[role=tab]").length >= n, CHATS, { timeout: 60000 });

  // 2. Responsiveness with OPEN chats of MESSAGES messages each (the first OPEN of them).
  for (let i = 0; i < OPEN; i++) {
    for (let k = 0; k < MESSAGES; k += 100) {
      const events = [];
      for (let m = k; m < Math.min(MESSAGES, k + 100); m++) {
        events.push({ event: "chat_session_message", msg_id: `m${m}`, msg: `Message ${m} of customer ${i}: my car, my policy, the tow truck…` });
      }
      await post(`bench-${i}`, ids[i], events);
    }
  }
  // Every open chat shows its messages once selected; wait for the last one's.
  const tab = (i) => page.getByRole("tab", { name: new RegExp(`^Customer ${i}, claims`) });
  await tab(OPEN - 1).click();
  await page.getByText(`Message ${MESSAGES - 1} of customer ${OPEN - 1}:`).waitFor({ timeout: 60000 });
  await page.evaluate(() => {
    window.__paint = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  });
  // From the click's own timestamp (the input) to the frame after the chat is drawn.
  await page.evaluate(() => {
    window.__switches = [];
    document.getElementById("chat-tabs").addEventListener("click", (e) => {
      const t = e.timeStamp;
      const want = e.target.closest("[role=tab]").dataset.chat;
      const check = () => {
        if (document.querySelector("[role=tab][aria-selected=true]")?.dataset.chat !== want) {
          requestAnimationFrame(check);
          return;
        }
        requestAnimationFrame(() => setTimeout(() => window.__switches.push(performance.now() - t), 0));
      };
      requestAnimationFrame(check);
    }, true);
  });
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < OPEN; i++) {
      const before = await page.evaluate(() => window.__switches.length);
      await tab(i).click();
      await page.waitForFunction((n) => window.__switches.length > n, before);
    }
  }
  const switches = await page.evaluate(() => window.__switches);
  const box = page.getByLabel("Message", { exact: true });
  await box.click();
  await page.evaluate(() => {
    window.__keys = [];
    document.getElementById("message-text").addEventListener("keydown", (e) => {
      const t = e.timeStamp;
      requestAnimationFrame(() => setTimeout(() => window.__keys.push(performance.now() - t), 0));
    });
  });
  await page.keyboard.type("The tow truck is on its way to you, it will be there within the hour.", { delay: 20 });
  await page.waitForTimeout(300);
  const keys = await page.evaluate(() => window.__keys);
  const count = await page.locator("#messages li.msg").count();
  console.log(`with ${OPEN} open chats of ${MESSAGES} messages (the latest ${count - 1} drawn, the rest on demand):`);
  console.log(`  switching chats, click -> painted: ${summary(switches)}`);
  console.log(`  typing in the composer, key -> painted: ${summary(keys)}`);

  for (const [i, id] of ids.entries()) await post(`bench-${i}`, id, [{ event: "chat_session_end" }]).catch(() => {});
} finally {
  await browser.close();
}
