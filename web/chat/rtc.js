// A call in the browser (WebRTC), as the gateway's signalling has it: the page only asks
// (`REQUEST_CALL`), the gateway offers once the agent has accepted (`OFFER_CALL`), the page
// answers on the same connection every time (video added, video dropped). The gateway is
// ICE-lite and learns the page's address from its checks, so the answer carries every
// candidate and nothing is trickled.
//
// The module owns the RTCPeerConnection and the microphone and camera; what the panels show is
// in the store (`call`), and the media streams are handed to the call panel through `media`.

/** How long an answer waits for the browser to gather its candidates (ms). */
const GATHERING = 3000;

export function createCall({ signal, dispatch }) {
  let pc = null;
  let mic = null;
  let camera = null;
  /** Video was dropped by the customer in this call: later offers are answered without it. */
  let videoDropped = false;
  const media = {
    remote: new MediaStream(),
    local: new MediaStream(),
    listeners: new Set(),
  };
  const changed = () => {
    for (const fn of media.listeners) fn();
  };

  async function onSignal(data) {
    switch (data.type) {
      case "OFFER_CALL":
        return answer(data);
      case "END_CALL":
        return close();
      case "CALL_REJECTED":
        if (!data.video) close();
        return;
      default:
    }
  }

  async function answer(offer) {
    if (!pc) {
      const iceServers = (offer.iceServers ?? []).map((urls) => ({ urls }));
      pc = new RTCPeerConnection({ iceServers });
      const peer = pc;
      peer.addEventListener("track", (event) => {
        media.remote.addTrack(event.track);
        event.track.addEventListener("unmute", () => {
          if (event.track.kind === "video" && pc === peer) dispatch({ type: "call", patch: { videoUp: true } });
          changed();
        });
        event.track.addEventListener("ended", () => {
          media.remote.removeTrack(event.track);
          changed();
        });
        changed();
      });
      peer.addEventListener("connectionstatechange", () => {
        if (pc !== peer) return;
        if (peer.connectionState === "connected") dispatch({ type: "call", patch: { state: "up" } });
        if (peer.connectionState === "failed") {
          dispatch({ type: "note", text: "The call's connection failed." });
          hangUp();
        }
      });
      dispatch({ type: "call", patch: { state: "connecting" } });
    }
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    for (const transceiver of pc.getTransceivers()) {
      // A rejected m-line (port 0) leaves a stopped transceiver: nothing to send there.
      if (transceiver.currentDirection === "stopped" || transceiver.stopped) continue;
      const kind = transceiver.receiver.track.kind;
      let track = null;
      if (kind === "audio") track = await microphone();
      if (kind === "video" && offer.offerVideo && !videoDropped) track = await cameraTrack();
      if (transceiver.sender.track !== track) await transceiver.sender.replaceTrack(track);
      transceiver.direction = track ? "sendrecv" : "recvonly";
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await signal({ type: "ANSWER_CALL", sdp: pc.localDescription.sdp });
    const withVideo = Boolean(offer.offerVideo) && !videoDropped;
    dispatch({ type: "call", patch: { localVideo: withVideo && Boolean(camera), videoUp: withVideo && hasRemoteVideo() } });
  }

  async function microphone() {
    if (!mic) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      mic = stream.getAudioTracks()[0];
    }
    return mic;
  }

  async function cameraTrack() {
    if (!camera) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
        camera = stream.getVideoTracks()[0];
        media.local.addTrack(camera);
        changed();
      } catch {
        dispatch({ type: "note", text: "The camera is not available: the call goes on without your video." });
        return null;
      }
    }
    return camera;
  }

  function hasRemoteVideo() {
    return media.remote.getVideoTracks().some((t) => t.readyState === "live" && !t.muted);
  }

  /** The customer stops video and keeps talking: the camera goes off at once. */
  async function dropVideo() {
    videoDropped = true;
    if (camera) {
      media.local.removeTrack(camera);
      camera.stop();
      camera = null;
    }
    for (const track of media.remote.getVideoTracks()) media.remote.removeTrack(track);
    if (pc) {
      for (const sender of pc.getSenders()) {
        if (sender.track?.kind === "video") await sender.replaceTrack(null);
      }
    }
    dispatch({ type: "call", patch: { video: false, videoUp: false, localVideo: false } });
    dispatch({ type: "note", text: "You stopped the video. The call goes on." });
    changed();
    await signal({ type: "END_VIDEO" });
  }

  /** The customer hangs up (or takes back a request the agent has not answered). */
  async function hangUp() {
    close();
    await signal({ type: "END_CALL" });
  }

  /** Ends the call here (the gateway said so, or the customer hung up). */
  function close() {
    if (pc) pc.close();
    pc = null;
    for (const track of [mic, camera]) track?.stop();
    mic = null;
    camera = null;
    videoDropped = false;
    for (const track of media.remote.getTracks()) media.remote.removeTrack(track);
    for (const track of media.local.getTracks()) media.local.removeTrack(track);
    dispatch({ type: "call", patch: { state: "idle", video: false, videoUp: false, localVideo: false } });
    changed();
  }

  /** What the call received and sent so far, from the standard statistics. */
  async function stats() {
    const out = { connection: pc ? pc.connectionState : "none", inbound: { audio: 0, video: 0 }, outbound: { audio: 0, video: 0 }, frameWidth: 0, audioEnergy: 0 };
    if (!pc) return out;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        out.inbound[s.kind] += s.packetsReceived || 0;
        if (s.kind === "video") out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0);
        // What was played out, not only received: silence has none.
        else out.audioEnergy += s.totalAudioEnergy || 0;
      } else if (s.type === "outbound-rtp") {
        out.outbound[s.kind] += s.packetsSent || 0;
      }
    });
    return out;
  }

  return { onSignal, dropVideo, hangUp, close, stats, media, active: () => pc !== null };
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHERING);
  });
}
