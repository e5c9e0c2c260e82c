// What survives a reload: this browser's device id for the app (the customer API's clientId,
// the only one that may see its chats) and the chat in progress. Kept in localStorage, so a
// reload or another page of the same site resumes the same chat; in memory only where the
// browser refuses storage.

const memory = new Map();

function storage() {
  try {
    const probe = "tandem:probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    return {
      getItem: (k) => (memory.has(k) ? memory.get(k) : null),
      setItem: (k, v) => memory.set(k, String(v)),
      removeItem: (k) => memory.delete(k),
    };
  }
}

export function createSession(appId) {
  const store = storage();
  const key = (what) => `tandem:${appId}:${what}`;
  return {
    /** This browser's id towards the gateway, made once. */
    device() {
      let id = store.getItem(key("device"));
      if (!id) {
        id = `web-${crypto.randomUUID()}`;
        store.setItem(key("device"), id);
      }
      return id;
    },
    chat: () => store.getItem(key("chat")),
    saveChat: (chatId) => store.setItem(key("chat"), chatId),
    forgetChat: () => store.removeItem(key("chat")),
    /** The name the customer gave, to title the transcript. */
    name: () => store.getItem(key("name")),
    saveName: (name) => (name ? store.setItem(key("name"), name) : store.removeItem(key("name"))),
  };
}
