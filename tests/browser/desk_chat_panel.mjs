// Journey 3: the Chat Panel. The conversation oldest first, the customer's and the agent's
// messages told apart with times, a long message whole, the customer's typing, a picture
// inline (click to enlarge) and a PDF as a download link; the agent writes (read receipt
// shown) and attaches a file.
//   node desk_chat_panel.mjs BASE PNG_PATH
import { ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const [base, pngPath] = process.argv.slice(2);

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  const log = page.getByRole("list", { name: "Conversation" });
  await log.getByText("First: my car was hit.").waitFor();

  const { long } = await ask("customer writes a long message and a picture and a pdf");
  await log.getByText(long).waitFor();
  const picture = log.getByRole("img", { name: /Picture damage\.png/ });
  await picture.waitFor();
  await page.waitForFunction(() => [...document.querySelectorAll("#messages img")].some((i) => i.complete && i.naturalWidth > 0));
  const naturalWidth = await picture.evaluate((img) => img.naturalWidth);
  const pdfLink = await log.getByRole("link", { name: "Download report.pdf" }).getAttribute("href");

  await ask("customer types");
  await page.getByText("Carol is typing…").waitFor();

  await page.getByLabel("Message", { exact: true }).fill("Thank you Carol, I see the photo.");
  await page.getByRole("button", { name: "Send" }).click();
  const mine = log.locator("li.mine").filter({ hasText: "Thank you Carol, I see the photo." });
  await mine.waitFor();
  await ask("customer reads it");
  await mine.getByText("Read").waitFor();

  await page.getByLabel("Attach file").setInputFiles(pngPath);
  await log.locator("li.mine").getByRole("img").waitFor();
  step("agent attached");

  // Oldest first, the customer's and the agent's apart.
  const order = await log.locator("li.msg:not(.system) .text").allTextContents();
  const theirs = await log.locator("li.theirs").count();
  const mineCount = await log.locator("li.mine").count();
  await page.getByRole("button", { name: /Enlarge picture damage\.png/ }).first().click();
  await page.getByRole("dialog", { name: "Picture" }).waitFor();
  await shot(page, "03-chat-panel-picture-enlarged");
  await page.getByRole("button", { name: "Close" }).last().click();
  await shot(page, "03-chat-panel");
  return { naturalWidth, pdfLink, order, theirs, mine: mineCount };
});
