// The digits the customer keys on a call appear in the Chat Panel as system lines, masked for a
// service whose digits are sensitive (card numbers, PINs). The agent calls the customer's
// phone from the Contact Info panel on her browser and sees it ring; the phone keys 1, 5 and 9.
//   node desk_dtmf.mjs BASE NUMBER SHOT
import { ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const [base, number, name] = process.argv.slice(2);

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  const contact = page.getByRole("region", { name: "Contact Info" });
  await contact.getByRole("link", { name: `Call ${number}` }).click();
  // The phone rings before it is answered: the panel says so, with the number called.
  await contact.getByRole("status").filter({ hasText: `Ringing… ${number}` }).waitFor();
  const ringing = await contact.getByRole("status").innerText();
  await contact.locator("#call-state").filter({ hasText: "Connected" }).waitFor();

  const conversation = page.getByRole("list", { name: "Conversation" });
  const keyed = conversation.locator("li.system").filter({ hasText: "The customer keyed" });
  await keyed.nth(2).waitFor({ timeout: 30000 });
  const lines = await keyed.locator("span:first-child").allTextContents();
  await shot(page, name);
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor();
  step("released");
  return { lines, ringing };
});
