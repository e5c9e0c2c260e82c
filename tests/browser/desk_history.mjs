// Journey 10: transcript and history. The agent handles a chat that the customer ends; later
// she opens her history, opens that chat in the Chat Panel and its transcript.
//   node desk_history.mjs BASE
import { ask, journey, login, openDesk, shot } from "./desk_lib.mjs";

const base = process.argv[2];

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  await page.getByText("The windscreen is cracked.").waitFor();
  await page.getByLabel("Message", { exact: true }).fill("Noted, a glazier will call you.");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("li.mine").filter({ hasText: "Noted, a glazier will call you." }).waitFor();
  await ask("customer leaves");
  await page.getByText(/Chat ended/).waitFor();

  // A new session: the past chat is only in the history now.
  await page.getByRole("button", { name: "Log out" }).click();
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByRole("button", { name: "History" }).click();
  const dialog = page.getByRole("dialog", { name: "Chats I handled" });
  const open = dialog.getByRole("button", { name: /Open chat of/ }).first();
  await open.waitFor();
  const listed = await dialog.getByRole("listitem").count();
  await shot(page, "10-history-list");
  const transcriptUrl = await dialog.getByRole("link", { name: "Transcript" }).first().getAttribute("href");
  await open.click();
  const log = page.getByRole("list", { name: "Conversation" });
  await log.getByText("The windscreen is cracked.").waitFor();
  await log.getByText("Noted, a glazier will call you.").waitFor();
  const endChatDisabled = await page.getByRole("button", { name: "End chat" }).isDisabled();
  await shot(page, "10-history-past-chat");
  const transcript = await page.evaluate(async (url) => (await fetch(url)).text(), transcriptUrl);
  return { listed, endChatDisabled, transcript };
});
