// The agent's own WebRTC leg, one peer connection per chat. The gateway always offers
// (`webrtc_signaling` OFFER_CALL, again for each renegotiation: video added or dropped); the
// desk answers on the same connection with the browser's default microphone (and camera once
// video was allowed), plays the customer's audio and shows the video windows.

export class Media {
  constructor({ signal, onChange }) {
    this.signal = signal;        // (chatId, data) → Promise
    this.onChange = onChange;    // () → redraw
    this.peers = new Map();      // chatId → {pc, stream}
    this.muted = false;
  }

  get active() { return this.peers.size > 0; }

  async onSignal(chatId, data) {
    if (data?.type !== "OFFER_CALL") {
      if (data?.type === "END_CALL") this.close(chatId);
      return;
    }
    let peer = this.peers.get(chatId);
    if (!peer) {
      const pc = new RTCPeerConnection({ iceServers: data.iceServers ?? [] });
      peer = { pc, stream: null };
      pc.addEventListener("track", (e) => this.onTrack(e));
      this.peers.set(chatId, peer);
    }
    const wantsVideo = /\nm=video [1-9]/.test(data.sdp);
    if (!peer.stream || (wantsVideo && !peer.stream.getVideoTracks().length)) {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: wantsVideo });
      peer.stream?.getTracks().forEach((t) => t.stop());
      peer.stream = stream;
      stream.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
      document.getElementById("local-video").srcObject = wantsVideo ? stream : null;
    }
    const { pc } = peer;
    await pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.currentDirection === "stopped" || !transceiver.receiver.track) continue;
      const kind = transceiver.receiver.track.kind;
      const track = peer.stream.getTracks().find((t) => t.kind === kind);
      if (!track || transceiver.sender.track === track) continue;
      try {
        await transceiver.sender.replaceTrack(track);
        transceiver.direction = "sendrecv";
      } catch (e) {
        console.warn(`no ${kind} sent`, e);
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc, 2000);
    await this.signal(chatId, { type: "ANSWER_CALL", sdp: pc.localDescription.sdp });
    this.onChange();
  }

  onTrack(e) {
    const stream = e.streams[0] ?? new MediaStream([e.track]);
    if (e.track.kind === "audio") {
      const audio = document.getElementById("remote-audio");
      audio.srcObject = stream;
      audio.play().catch(() => {});
    } else {
      const video = document.getElementById("remote-video");
      video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
    }
  }

  /** The call of `chatId` is over (released on the gateway's side). */
  close(chatId) {
    const peer = this.peers.get(chatId);
    if (!peer) return;
    peer.pc.close();
    peer.stream?.getTracks().forEach((t) => t.stop());
    this.peers.delete(chatId);
    document.getElementById("local-video").srcObject = null;
    document.getElementById("remote-video").srcObject = null;
    this.onChange();
  }

  toggleMute() {
    this.muted = !this.muted;
    for (const { stream } of this.peers.values()) stream?.getAudioTracks().forEach((t) => { t.enabled = !this.muted; });
    this.onChange();
  }

  /** RTP statistics of a chat's peer, for people checking the line (and the tests). */
  async stats(chatId) {
    const peer = this.peers.get(chatId);
    const out = { inboundAudioPackets: 0, outboundAudioPackets: 0, inboundVideoPackets: 0, outboundVideoPackets: 0, inboundAudioEnergy: 0 };
    if (!peer) return out;
    (await peer.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp") out[r.kind === "video" ? "inboundVideoPackets" : "inboundAudioPackets"] += r.packetsReceived ?? 0;
      // What was played out, not only received: silence has none.
      if (r.type === "inbound-rtp" && r.kind === "audio") out.inboundAudioEnergy += r.totalAudioEnergy ?? 0;
      if (r.type === "outbound-rtp") out[r.kind === "video" ? "outboundVideoPackets" : "outboundAudioPackets"] += r.packetsSent ?? 0;
    });
    return out;
  }
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}
