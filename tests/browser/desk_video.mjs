// Journey 7: video with consent. The customer's app (its own Chromium context, fake camera and
// microphone) asks for video: a browser notification and an in-page Allow / Decline prompt.
// On Allow the Chat Panel opens two video windows, the agent's camera and the customer's, with
// decoded frames. There is no control for the agent to stop video alone; when the customer
// drops it the windows close and voice goes on; the agent's way out is ending the session.
//   node desk_video.mjs BASE
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { journey, login, openDesk, shot, step, waitStats } from "./desk_lib.mjs";

const base = process.argv[2];
const appHtml = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "desk_customer_app.html"), "utf8");

async function until(page, what, f, arg) {
  const deadline = Date.now() + 30000;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(f, arg);
    if (last.ok) return last;
    await page.waitForTimeout(250);
  }
  throw new Error(`never ${what}: ${JSON.stringify(last)}`);
}

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });

  // The customer's app, served from the gateway's origin (intercepted, never asked of it).
  const appContext = await browser.newContext();
  await appContext.grantPermissions(["microphone", "camera"], { origin: base });
  const app = await appContext.newPage();
  await app.route(`${base}/__desk_test/app.html`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html; charset=utf-8", body: appHtml }));
  await app.goto(`${base}/__desk_test/app.html`);

  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  await app.waitForFunction(() => window.app.connected);
  await app.evaluate(() => window.requestCall(true));
  const prompt = page.getByRole("alert").filter({ hasText: "The customer asks for video." });
  await prompt.waitFor();
  await page.waitForFunction(() => window.__notifications.some((n) => n.title === "Video requested"));
  await shot(page, "07-video-prompt");
  await page.getByRole("button", { name: "Accept call" }).click();
  await page.getByRole("button", { name: "Allow video" }).click();

  const sizes = await until(page, "two video windows with frames", () => {
    const l = document.getElementById("local-video");
    const r = document.getElementById("remote-video");
    const frames = r.getVideoPlaybackQuality().totalVideoFrames;
    return { ok: l.videoWidth > 0 && r.videoWidth > 0 && frames > 0, local: l.videoWidth, remote: r.videoWidth, frames };
  });
  const stopControls = await page.getByRole("button", { name: /(stop|end|drop).*video/i }).count();
  await shot(page, "07-video-two-windows");

  await app.evaluate(() => window.dropVideo());
  await page.getByLabel("Customer's video").waitFor({ state: "hidden" });
  const before = (await page.evaluate(() => window.tandemDesk.stats())).inboundAudioPackets;
  const after = await waitStats(page, (s) => s.inboundAudioPackets > before + 50, "voice after video");
  await shot(page, "07-video-dropped-voice-goes-on");

  await page.getByRole("button", { name: "End session" }).click();
  await page.getByText(/Chat ended \(agent ended session\)/).waitFor();
  await app.waitForFunction(() => window.app.ended);
  step("session ended");
  const appErrors = await app.evaluate(() => window.app.errors);
  return { sizes, stopControls, voiceAfterVideo: after.inboundAudioPackets - before, appErrors };
});
