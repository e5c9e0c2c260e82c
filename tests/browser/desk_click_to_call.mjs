// Journey 4: the Contact Info Panel. The customer's phone number is a link that calls it on the
// device the agent chooses (here the browser: her microphone goes out, the phone's echo comes
// back); the panel shows the call's state with a running duration, Mute, Release call, and the
// call's end; then the agent calls again, typing the number, in the same chat; then the customer
// asks to be called (a call-me request naming the number) and the agent accepts it. Each call
// says in the conversation when the phone rings.
//   node desk_click_to_call.mjs BASE NUMBER
import { ask, journey, login, openDesk, shot, step, waitStats } from "./desk_lib.mjs";

const [base, number] = process.argv.slice(2);

async function talk(page, contact) {
  await contact.locator("#call-state").filter({ hasText: "Connected" }).waitFor();
  await contact.locator("#call-duration").filter({ hasText: /^0:0[1-9]|^0:[1-5]\d/ }).waitFor();
  // The phone echoes what the browser sends: audio packets both ways.
  return waitStats(page, (s) => s.inboundAudioPackets > 50 && s.outboundAudioPackets > 50, "audio both ways");
}

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  const contact = page.getByRole("region", { name: "Contact Info" });
  await contact.getByText("Carol").waitFor();

  await contact.getByLabel("Talk on").selectOption({ label: "Browser" });
  await contact.getByRole("link", { name: `Call ${number}` }).click();
  const first = await talk(page, contact);
  await contact.getByRole("button", { name: "Mute" }).click();
  const muted = await contact.getByRole("button", { name: "Unmute" }).getAttribute("aria-pressed");
  await contact.getByRole("button", { name: "Unmute" }).click();
  await shot(page, "04-contact-call-connected");
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();
  const ended = await contact.locator(".call-box").innerText();
  await shot(page, "04-contact-call-ended");

  // Again, in the same chat, typing the number.
  await contact.getByLabel("Other number").fill(number);
  await contact.getByRole("button", { name: "Call number" }).click();
  const second = await talk(page, contact);
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();

  // The customer asks to be called: the request names the number.
  await ask("customer asks to be called");
  await page.getByRole("alert").filter({ hasText: `The customer asks to be called at ${number}.` }).waitFor();
  const requested = await contact.locator(".call-box").innerText();
  await shot(page, "04-contact-call-me-request");
  await page.getByRole("button", { name: "Accept call" }).click();
  const third = await talk(page, contact);
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();
  const lines = await page.getByRole("list", { name: "Conversation" }).locator("li.system > span:first-child").allTextContents();
  step("three calls made");
  return { first, second, third, muted, ended, requested, lines };
});
