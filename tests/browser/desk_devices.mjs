// Journey 4 on the agent's phones: the agent chooses where she talks in the Contact Info
// panel's "Talk on" (her softphone, or her own mobile), clicks the customer's number, and the
// gateway rings both her phone and the customer's; the panel shows the call connected with its
// running duration, Release call hangs up both, and the panel shows the call ended. With
// `accept`, the customer then asks to be called and Accept call takes the call on the same
// phone.
//   node desk_devices.mjs BASE NUMBER DEVICE_LABEL SHOT_PREFIX [accept]
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { SHOTS, ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const [base, number, label, prefix, accept] = process.argv.slice(2);
mkdirSync(join(SHOTS, "devices"), { recursive: true });

/** Waits until the panel shows the call up and counting; what the call box says then. */
async function connected(contact) {
  await contact.locator("#call-state").filter({ hasText: "Connected" }).waitFor({ timeout: 45000 });
  await contact.locator("#call-duration").filter({ hasText: /^0:0[1-9]|^0:[1-5]\d/ }).waitFor();
  return contact.locator(".call-box").innerText();
}

/** Releases the call; what the call box says once it ended. */
async function release(contact) {
  await contact.getByRole("button", { name: "Release call" }).click();
  await contact.locator("#call-state").filter({ hasText: "Call ended" }).waitFor({ timeout: 45000 });
  return contact.locator(".call-box").innerText();
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

  await contact.getByLabel("Talk on").selectOption({ label });
  await contact.getByRole("link", { name: `Call ${number}` }).click();
  const talking = await connected(contact);
  // The browser is not on the call: there is nothing of its own to mute.
  const mute = await contact.getByRole("button", { name: "Mute" }).count();
  await shot(page, `devices/${prefix}-call-connected`);
  // The phones behind the trunk fail a call hung up before they have played their part.
  await ask("talking");
  const ended = await release(contact);
  await shot(page, `devices/${prefix}-call-ended`);

  let accepted = null;
  let acceptedEnded = null;
  if (accept === "accept") {
    await ask("customer asks to be called");
    await page.getByRole("alert").filter({ hasText: `The customer asks to be called at ${number}.` }).waitFor();
    await page.getByRole("button", { name: "Accept call" }).click();
    accepted = await connected(contact);
    await shot(page, `devices/${prefix}-accepted-call-connected`);
    await ask("talking again");
    acceptedEnded = await release(contact);
  }
  const lines = await page.getByRole("list", { name: "Conversation" }).locator("li.system > span:first-child").allTextContents();
  step("calls made");
  return { talking, mute, ended, accepted, acceptedEnded, lines };
});
