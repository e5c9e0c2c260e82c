// Journey 5: the Context Information Area. The app's context as a readable list, and a map with
// a marker at the customer's GPS position; tiles cannot load here, so the marker, the
// coordinates and a link to the place must show anyway. Context the app sends later refreshes
// the area live.
//   node desk_context.mjs BASE
import { ask, journey, login, openDesk, shot } from "./desk_lib.mjs";

const base = process.argv[2];

await journey(async (browser) => {
  const page = await openDesk(browser, base);
  await login(page, "alice", "desk");
  await page.getByText("Connected").waitFor();
  await page.getByLabel("Presence").selectOption({ label: "Ready" });
  await ask("open a chat");
  await page.getByRole("button", { name: "Accept chat from Carol" }).click();
  const area = page.getByRole("region", { name: "Context Information" });
  await area.getByText("P-77").waitFor();
  const listed = await area.locator("dl").innerText();

  await ask("customer sends the accident's position");
  await area.locator("#coordinates").filter({ hasText: "48.85660, 2.35220" }).waitFor();
  await area.locator(".leaflet-marker-icon").waitFor();
  const link = await area.getByRole("link", { name: "Open the location in a map" }).getAttribute("href");
  const tile = await area.locator("img.leaflet-tile").first().getAttribute("src").catch(() => null);
  await shot(page, "05-context-map");

  await ask("app updates the context");
  await area.getByText("AB-123-CD").waitFor();
  await area.locator("#coordinates").filter({ hasText: "48.86000, 2.35000" }).waitFor();
  await shot(page, "05-context-updated");
  return { listed, link, tile };
});
