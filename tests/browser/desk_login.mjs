// Journey 1: log in and be ready. A wrong password gets a clear message; the agent logs in,
// sees her presence and changes it; a reload keeps her signed in with her chat; a dropped
// socket reconnects by itself and shows the chat again; she logs out.
//   node desk_login.mjs BASE
import { ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const base = process.argv[2];

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "not her password");
  await page.getByRole("alert").filter({ hasText: "Wrong name or password." }).waitFor();
  await shot(page, "01-login-wrong-password");

  await login(page, "alice", "desk");
  const badge = page.locator("#presence-badge");
  await page.getByText("Connected").waitFor();
  const initial = await badge.textContent();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await page.locator("#presence-badge[data-state=available]").waitFor();
  step("ready", { initial });

  // A chat arrives and is taken, with a message from the customer.
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  await page.getByRole("tab", { name: /Carol, claims/ }).waitFor();
  await ask("customer writes");
  await page.getByText("Hello, is anyone there?").waitFor();

  // A reload keeps her signed in, with her chat and its conversation.
  await page.reload();
  await page.getByText("Connected").waitFor();
  await page.getByRole("tab", { name: /Carol, claims/ }).waitFor();
  await page.getByText("Hello, is anyone there?").waitFor();
  const afterReload = await badge.textContent();

  // The socket drops: the desk says so, reconnects by itself and shows the chat again.
  await page.evaluate(() => window.tandemDesk.dropConnection());
  await page.locator("#connection:not([data-state=open])").waitFor();
  await page.locator("#connection[data-state=open]").waitFor();
  await page.getByRole("tab", { name: /Carol, claims/ }).waitFor();
  await ask("customer writes again");
  await page.getByText("Still there after the blip?").waitFor();
  await shot(page, "01-login-ready-after-reconnect");
  // A narrow window: the panels stack, every control still there.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("tab", { name: /Carol, claims/ }).waitFor();
  const narrowSend = await page.getByRole("button", { name: "Send" }).isVisible();
  await shot(page, "01-login-narrow-window");
  await page.setViewportSize({ width: 1280, height: 860 });

  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are logged out.").waitFor();
  const loginVisible = await page.getByRole("button", { name: "Log in" }).isVisible();
  await shot(page, "01-login-logged-out");
  return { initial, afterReload, loginVisible, narrowSend };
});
