// Journey 6: voice in the browser. The customer's app asks for a call; the agent accepts it on
// her browser: the customer's audio plays and her microphone goes out over WebRTC (the
// browser's default devices; here Chromium's fake microphone).
//   node desk_voice.mjs BASE
import { ask, journey, login, openDesk, shot, step, waitStats } from "./desk_lib.mjs";

const base = process.argv[2];

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  await ask("customer asks for a call");
  await page.getByRole("alert").filter({ hasText: "The customer asks for a call." }).waitFor();
  await page.getByRole("button", { name: "Accept call" }).click();
  const stats = await waitStats(page, (s) => s.inboundAudioPackets > 50 && s.outboundAudioPackets > 50,
    "audio both ways");
  const playing = await page.evaluate(() => {
    const a = document.getElementById("remote-audio");
    return !!a.srcObject && !a.paused;
  });
  await shot(page, "06-voice-in-browser");
  await ask("customer hears the agent");
  const contact = page.getByRole("region", { name: "Contact Info" });
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();
  step("released");
  return { stats, playing };
});
