// Journey 2: offers. A new chat appears as an alert with its service, the customer's name and
// the first message, with a browser notification; a ring-all offer a colleague takes goes with
// "taken by another agent"; several chats at once, each in its tab with an unread count; a
// declined offer goes.
//   node desk_offers.mjs BASE
import { ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const base = process.argv[2];

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await page.locator("#presence-badge[data-state=available]").waitFor();

  await ask("first chat");
  const offer = page.getByRole("alert").filter({ hasText: "New chat: claims" });
  await offer.filter({ hasText: "from Carol" }).filter({ hasText: "My car was hit on the A6" }).waitFor();
  await page.waitForFunction(() => window.__notifications.length > 0);
  const notification = await page.evaluate(() => window.__notifications[0]);
  await shot(page, "02-offers-new-offer");

  await ask("colleague takes it");
  await page.getByText("The chat from Carol was taken by another agent.").waitFor();
  const offersLeft = await page.getByRole("button", { name: /Accept chat from/ }).count();

  await ask("two more chats");
  await page.getByRole("button", { name: "Accept chat from Dan" }).click();
  await page.getByRole("button", { name: "Accept chat from Eve" }).click();
  await page.getByRole("tab", { name: /^Dan, claims/ }).waitFor();
  await page.getByRole("tab", { name: /^Eve, claims/ }).click();
  await ask("Dan writes twice");
  await page.getByRole("tab", { name: "Dan, claims, 2 unread" }).waitFor();
  await shot(page, "02-offers-two-chats-unread");
  await page.getByRole("tab", { name: /^Dan, claims/ }).click();
  await page.getByText("Second message from Dan").waitFor();
  await page.getByRole("tab", { name: "Dan, claims" }).waitFor();

  await ask("a fourth chat");
  await page.getByRole("button", { name: "Decline chat from Fay" }).click();
  await page.getByRole("button", { name: "Accept chat from Fay" }).waitFor({ state: "detached" });
  step("declined");
  return { notification, offersLeft, tabs: await page.getByRole("tab").count() };
});
