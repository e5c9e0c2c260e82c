// The call panel: ask for a voice or video call in the browser or for a call to a phone; see
// the request wait for the agent, then the call (both video windows once the agent allowed
// video), stop the video alone, hang up; and see the phone call's progress while chatting.

import { h, setText } from "../dom.js";

export function renderCall(container, { store, actions, call, phoneNumber }) {
  const state = h("p", { class: "tandem-call-state", role: "status" });
  const voice = h("button", { type: "button", class: "tandem-secondary", onclick: () => actions.requestCall(false) }, "Voice call");
  const video = h("button", { type: "button", class: "tandem-secondary", onclick: () => actions.requestCall(true) }, "Video call");
  const phone = h("button", { type: "button", class: "tandem-secondary" }, "Call me on my phone");
  const stopVideo = h("button", { type: "button", class: "tandem-secondary", onclick: () => actions.dropVideo() }, "Stop video");
  const hangUp = h("button", { type: "button", class: "tandem-secondary tandem-danger", onclick: () => actions.hangUp() }, "Hang up");
  const cancel = h("button", { type: "button", class: "tandem-secondary", onclick: () => actions.hangUp() }, "Cancel call request");

  const number = h("input", { type: "tel", name: "callback", autocomplete: "tel", maxlength: "32", required: true });
  const phoneForm = h(
    "form",
    { class: "tandem-phone-form", hidden: true, "aria-label": "Call me on my phone" },
    h("label", {}, "Number to call", number),
    h("button", { type: "submit", class: "tandem-primary" }, "Call me"),
    h("button", { type: "button", class: "tandem-secondary", onclick: () => (phoneForm.hidden = true) }, "Cancel"),
  );
  phone.addEventListener("click", () => {
    number.value = number.value || phoneNumber() || "";
    phoneForm.hidden = false;
    number.focus();
  });
  phoneForm.addEventListener("submit", (event) => {
    event.preventDefault();
    phoneForm.hidden = true;
    actions.requestPhoneCall(number.value.trim());
  });

  const remoteVideo = h("video", { autoplay: true, playsinline: true, "aria-label": "The agent's video" });
  const localVideo = h("video", { autoplay: true, playsinline: true, "aria-label": "Your video" });
  remoteVideo.muted = true; // the sound plays from `audio`
  localVideo.muted = true;
  const audio = h("audio", { autoplay: true });
  const videos = h("div", { class: "tandem-videos", hidden: true }, remoteVideo, localVideo);
  const actionsRow = h("div", { class: "tandem-call-actions" }, voice, video, phone, cancel, stopVideo, hangUp);
  const panel = h("section", { class: "tandem-call", "aria-label": "Calls", hidden: true }, state, actionsRow, phoneForm, videos, audio);
  container.append(panel);

  // A media element given a stream without tracks waits for it forever, and holds the
  // page's load event meanwhile: streams are attached only while they carry something.
  const show = (el, stream) => {
    const want = stream.getTracks().length ? stream : null;
    if (el.srcObject !== want) el.srcObject = want;
  };
  const attach = () => {
    show(audio, call.media.remote);
    show(remoteVideo, call.media.remote);
    show(localVideo, call.media.local);
  };
  call.media.listeners.add(attach);
  attach();

  store.subscribe((s) => {
    const active = s.view === "chat" && Boolean(s.agent);
    panel.hidden = !active;
    const c = s.call;
    const p = s.phone && s.phone.state !== "released" ? s.phone : null;
    const idle = c.state === "idle" && !p;
    voice.hidden = video.hidden = phone.hidden = !idle;
    if (!idle) phoneForm.hidden = true;
    cancel.hidden = c.state !== "requested";
    hangUp.hidden = !(c.state === "connecting" || c.state === "up");
    stopVideo.hidden = !(c.localVideo || c.videoUp);
    videos.hidden = !(c.videoUp || c.localVideo);
    remoteVideo.hidden = !c.videoUp;
    localVideo.hidden = !c.localVideo;
    setText(state, describe(c, p, s.agent));
  });
}

function describe(call, phone, agent) {
  const who = agent?.name ?? "the agent";
  if (phone) {
    const to = phone.number ? ` at ${phone.number}` : "";
    switch (phone.state) {
      case "requested":
        return `Waiting for ${who} to call you${to}…`;
      case "connecting":
        return `Calling you${to}…`;
      case "ringing":
        return `Your phone is ringing${to}.`;
      case "up":
        return `On the phone with ${who}.`;
      default:
        return "";
    }
  }
  switch (call.state) {
    case "requested":
      return `Waiting for ${who} to accept the ${call.video ? "video call" : "call"}…`;
    case "connecting":
      return "Connecting the call…";
    case "up":
      return call.videoUp || call.localVideo ? `On a video call with ${who}.` : `On a call with ${who}.`;
    default:
      return "Talk to us: in the browser, or we call your phone.";
  }
}
