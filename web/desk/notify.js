// Browser notifications for offers and video requests. The permission is asked once, after the
// agent logs in (a user gesture); without it the in-page banners are all there is.

const ASKED = "tandem.desk.notifications-asked";

export function askOnce() {
  if (!("Notification" in window) || Notification.permission !== "default") return;
  if (localStorage.getItem(ASKED)) return;
  localStorage.setItem(ASKED, "1");
  Notification.requestPermission().catch(() => {});
}

export function notify(title, body, tag) {
  if (!("Notification" in window) || Notification.permission !== "granted") return null;
  try {
    const n = new Notification(title, { body, tag });
    n.onclick = () => { window.focus(); n.close(); };
    return n;
  } catch {
    return null;
  }
}
