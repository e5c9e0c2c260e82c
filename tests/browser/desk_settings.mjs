// Journey 9: the agent's mobile chat settings. She sets her mobile number and mobile chat On /
// Off / On schedule with her hours and time zone; a number or hours that do not parse get a
// clear message; a saved change shows at once and comes back on a reload.
//   node desk_settings.mjs BASE
import { ask, journey, login, openDesk, shot, step } from "./desk_lib.mjs";

const base = process.argv[2];

async function save(page) {
  await page.getByRole("button", { name: "Save settings" }).click();
}

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByRole("button", { name: "Mobile chat settings" }).click();
  const dialog = page.getByRole("dialog", { name: "Mobile chat settings" });
  await dialog.waitFor();

  await dialog.getByLabel("My mobile number").fill("call me maybe");
  await dialog.getByLabel("On", { exact: true }).check();
  await save(page);
  const badNumber = await dialog.getByRole("alert").filter({ hasText: "not a phone number" }).innerText();

  await dialog.getByLabel("My mobile number").fill("+1 555 0199");
  await dialog.getByLabel("On schedule").check();
  await dialog.getByLabel("From").fill("25:00");
  await save(page);
  const badHours = await dialog.getByRole("alert").filter({ hasText: "hours do not parse" }).innerText();
  await shot(page, "09-settings-invalid-hours");

  await dialog.getByLabel("Days").fill("mon,tue,wed,thu,fri,sat,sun");
  await dialog.getByLabel("From").fill("00:00");
  await dialog.getByLabel("To").fill("24:00");
  await dialog.getByLabel("Time zone").fill("Europe/Paris");
  await save(page);
  await dialog.getByRole("status").filter({ hasText: "Saved." }).waitFor();
  await shot(page, "09-settings-saved");
  await page.getByRole("button", { name: "Close" }).first().click();
  // Away from the desk, she is texted; back at it, the chat she was texted about is offered.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are logged out.").waitFor();
  await ask("logged out on schedule");
  await login(page, "alice", "desk");
  await page.getByRole("alert").filter({ hasText: "from Carol" }).waitFor();
  await shot(page, "09-settings-texted-chat-offered-at-login");
  await ask("offered at login");

  // Back on a reload, as stored.
  await page.reload();
  await page.getByText("Connected").waitFor();
  await page.getByRole("button", { name: "Mobile chat settings" }).click();
  await dialog.waitFor();
  const number = await dialog.getByLabel("My mobile number").inputValue();
  const onSchedule = await dialog.getByLabel("On schedule").isChecked();
  const tz = await dialog.getByLabel("Time zone").inputValue();

  // Off: effective at once too.
  await dialog.getByLabel("Off").check();
  await save(page);
  await dialog.getByRole("status").filter({ hasText: "Saved." }).waitFor();
  await page.getByRole("button", { name: "Close" }).first().click();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByText("You are logged out.").waitFor();
  step("off and logged out");
  return { badNumber, badHours, number, onSchedule, tz };
});
