// Journey 8: ending in the right order. While a call is up End chat is disabled with its
// reason; the server's refusal, if it comes anyway, is shown; the agent releases the call and
// then ends the chat; the transcript stays readable with the call's recording playable.
//   node desk_end_in_order.mjs BASE NUMBER
import { ask, journey, login, openDesk, shot } from "./desk_lib.mjs";

const [base, number] = process.argv.slice(2);

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  const contact = page.getByRole("region", { name: "Contact Info" });
  await contact.getByRole("link", { name: `Call ${number}` }).click();
  await contact.locator("#call-state").filter({ hasText: "Connected" }).waitFor();

  const endChat = page.getByRole("button", { name: "End chat" });
  const disabledWhileUp = await endChat.isDisabled();
  const reason = await page.locator("#end-reason").innerText();
  // A desk that sends it anyway (another tab, a race) sees the server's refusal.
  await page.evaluate(() => {
    const button = document.getElementById("end-chat");
    button.disabled = false;
    button.click();
  });
  const refusal = await page.locator(".notice").filter({ hasText: "release_call_before_chat" }).innerText();
  await shot(page, "08-end-refused-while-call-up");

  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();
  await endChat.click();
  const log = page.getByRole("list", { name: "Conversation" });
  await log.getByText(/Chat ended \(agent disconnected\)/).waitFor();

  // The recording is playable from the page: it loads and has a duration.
  const audio = log.locator("audio");
  await audio.first().waitFor({ state: "attached" });
  const recording = await audio.first().evaluate((a) => new Promise((resolve) => {
    a.preload = "metadata";
    a.addEventListener("loadedmetadata", () => resolve({ duration: a.duration, error: null }), { once: true });
    a.addEventListener("error", () => resolve({ duration: 0, error: a.error?.message ?? "error" }), { once: true });
    a.load();
  }));
  const transcriptUrl = await page.getByRole("link", { name: "Transcript" }).getAttribute("href");
  const transcript = await page.evaluate(async (url) => (await fetch(url)).text(), transcriptUrl);
  await shot(page, "08-end-transcript-with-recording");
  return { disabledWhileUp, reason, refusal, recording, transcript };
});
