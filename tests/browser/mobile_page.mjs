// Opens a mobile operator's link in headless Chromium and chats on the page:
//   node mobile_page.mjs LINK EXPECTED_CUSTOMER_MESSAGE REPLY
// It waits for the claimed chat, for the customer's message to show, sends REPLY, waits for it
// to appear as the operator's own, and prints one JSON line. Any failure exits non-zero.
import { chromium } from "playwright-core";

const [link, expected, reply] = process.argv.slice(2);
if (!link || !expected || !reply) {
  console.error("usage: node mobile_page.mjs LINK EXPECTED_CUSTOMER_MESSAGE REPLY");
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
  timeout: 30000,
});
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 780 }, isMobile: true });
  const console_lines = [];
  page.on("console", (m) => console_lines.push(m.text()));
  page.setDefaultTimeout(15000);
  await page.goto(link);
  await page.waitForSelector("body[data-state=chatting]");
  const title = await page.textContent("#title");
  await page.waitForSelector(`#log li:not(.mine):not(.system):has-text(${JSON.stringify(expected)})`);
  await page.fill("#text", reply);
  await page.click("#send");
  await page.waitForSelector(`#log li.mine:has-text(${JSON.stringify(reply)})`);
  // A reload keeps the chat (the session is in the tab) instead of claiming again.
  await page.reload();
  await page.waitForSelector("body[data-state=chatting]");
  await page.waitForSelector(`#log li.mine:has-text(${JSON.stringify(reply)})`);
  // A second tab without the session taps the link again: it is already taken.
  const other = await browser.newPage();
  await other.goto(link);
  await other.waitForSelector("body[data-state=already_taken]");
  const notice = await other.textContent("#notice");
  console.log(JSON.stringify({ ok: true, title, notice, console: console_lines }));
} finally {
  await browser.close();
}
