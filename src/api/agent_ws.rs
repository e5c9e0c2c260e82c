//! `GET /agent/v1/ws?token=…`: the agent desktop's live channel.
//!
//! The server first sends `hello` (presence, load, the offers and chats the agent has now, each
//! with its customer, context, phase, live legs and first message; the agent's mobile chat
//! settings; the desk's map tiles), then every event for the agent: `offer` (with the first
//! message), `withdrawn`, `accepted`, `message`, `file`, `typing`, `receipt`, `context`,
//! `call_state`, `status`, `removed`, `ended` (with the transcript link), `state`, `settings`.
//! Every tab of an agent gets the same events.
//!
//! The client sends commands `{"command": "…", "ref": any, …}` and gets `{"event": "ack",
//! "ref"}` or `{"event": "error", "ref", "error": {"code", "message"}}`: `set_state`, `accept`,
//! `decline`, `send_message`, `send_file`, `typing`, `mark_read`, `disconnect_chat`,
//! `end_session`, `accept_call`/`decline_call` (the customer's call request), `release_call`,
//! `allow_video`/`decline_video`, `drop_video` (always refused: only the customer may) and
//! `webrtc_signaling` (the answer of the agent's own WebRTC leg to the gateway's offer, which
//! arrives as a `webrtc_signaling` event) and `call_customer {chat_id, number?, device?}`.
//!
//! Commands on one chat run one at a time in the order sent; commands on different chats run
//! side by side, so an agent with ten chats does not wait for one chat's message to be stored
//! before the next chat's is taken. `set_state` and `accept`, which change what the agent can
//! take, and a frame that cannot be read, run alone: after everything sent before them, before
//! everything sent after. Each command is answered as it completes (match answers on `ref`).
//! Events keep flowing meanwhile: a slow command (an accept) never holds back an offer, and a
//! command's answer always goes out before the events it caused (an `accept`'s `ack` before its
//! `accepted`). Frames ready at the same time (a burst of offers) go out in one write. The
//! session is generic over a `Sink` and a `Stream` of text frames so tests can drive it with
//! channels.

use std::collections::VecDeque;
use std::future::Future;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::agent::Agent;
use super::socket::{self, error_event};
use super::{ApiError, AppState};
use crate::bridge::{AgentDevice, AgentId, Command, InteractionId, Party, ReceiptKind};
use crate::chat::files;
use crate::routing::driver::{AcceptError, AgentEvent, Snapshot};
use crate::routing::router::Presence;

pub async fn upgrade(
    State(state): State<AppState>,
    agent: Agent,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let permit = super::budget::permit(&state.shared.agent_sockets, "agent websockets")?;
    // Logout (or the token's expiry) ends the socket: its commands stop there.
    let ended = state.token_ended(&agent.token);
    Ok(socket::upgrade(
        ws,
        state.config().http.max_body_bytes,
        Some(ended),
        permit,
        move |tx, rx| session(tx, rx, state, agent.id),
    ))
}

/// Commands an agent sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
enum AgentCommand {
    SetState {
        state: Presence,
    },
    Accept {
        chat_id: String,
    },
    Decline {
        chat_id: String,
    },
    SendMessage {
        chat_id: String,
        msg_id: Option<String>,
        msg: String,
    },
    SendFile {
        chat_id: String,
        file_id: String,
    },
    Typing {
        chat_id: String,
        typing: bool,
    },
    MarkRead {
        chat_id: String,
        msg_id: String,
    },
    DisconnectChat {
        chat_id: String,
    },
    EndSession {
        chat_id: String,
    },
    CallCustomer {
        chat_id: String,
        /// Another number than the chat's.
        number: Option<String>,
        #[serde(default)]
        device: AgentDevice,
    },
    AcceptCall {
        chat_id: String,
        /// `browser` (the default) or `softphone`.
        #[serde(default)]
        device: AgentDevice,
    },
    DeclineCall {
        chat_id: String,
    },
    ReleaseCall {
        chat_id: String,
    },
    AllowVideo {
        chat_id: String,
    },
    DeclineVideo {
        chat_id: String,
    },
    /// Always refused: only the customer may drop video alone.
    DropVideo {
        chat_id: String,
    },
    /// The agent's own WebRTC leg: its answer to the gateway's offer, or a candidate.
    WebrtcSignaling {
        chat_id: String,
        data: Value,
    },
}

const KNOWN: &[&str] = &[
    "set_state",
    "accept",
    "decline",
    "send_message",
    "send_file",
    "typing",
    "mark_read",
    "disconnect_chat",
    "end_session",
    "call_customer",
    "accept_call",
    "decline_call",
    "release_call",
    "allow_video",
    "decline_video",
    "drop_video",
    "webrtc_signaling",
];

/// Runs one agent tab until it closes.
pub(crate) async fn session<Tx, Rx>(mut tx: Tx, mut rx: Rx, state: AppState, agent: AgentId)
where
    Tx: Sink<String> + Unpin,
    Rx: Stream<Item = String> + Unpin,
{
    let routing = state.routing().clone();
    // Subscribe before connecting, so nothing between the snapshot and the stream is lost.
    let Some(mut events) = routing.subscribe(&agent) else {
        let _ = tx.close().await;
        return;
    };
    let snapshot = match routing.connect(&agent).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .send(error_event(&ApiError::from(e), None).to_string())
                .await;
            let _ = tx.close().await;
            return;
        }
    };
    let hello = json!({
        "event": "hello",
        "agent": agent,
        "display_name": routing.display_name(&agent),
        "state": snapshot.presence,
        "load": snapshot.load,
        "offers": chat_cards(&state, &snapshot, &snapshot.offers).await,
        "chats": chat_cards(&state, &snapshot, &snapshot.chats).await,
        "mobile_settings": routing.mobile_settings(&agent),
        "desk": {
            "map_tiles_url": state.config().desk.map_tiles_url,
            "map_attribution": state.config().desk.map_attribution,
        },
    });
    state.api_metrics().agent_sockets.inc();
    if tx.send(hello.to_string()).await.is_ok() {
        let answer = |frame: Read| {
            let (state, agent) = (state.clone(), agent.clone());
            async move { answer(&state, &agent, frame).await }
        };
        // Each frame is read once: its lane and its command come from the same JSON.
        let mut commands = rx.by_ref().map(read);
        pump(&mut tx, &mut commands, &mut events, lane_of, answer).await;
    }
    state.api_metrics().agent_sockets.dec();
    routing.disconnect(&agent);
    let _ = tx.close().await;
}

/// Commands read and not yet answered; past this the socket is not read until one is answered.
const MAX_QUEUED_COMMANDS: usize = 32;

/// What a command may run beside.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lane {
    /// A command on one chat: after the commands sent before it on the same chat, beside the
    /// others.
    Chat(String),
    /// A command on the agent as a whole, or a frame that cannot be read: after everything sent
    /// before it, and before everything sent after.
    Alone,
}

/// A command frame as read: its JSON, or why it is not JSON.
type Read = Result<Value, serde_json::Error>;

fn read(text: String) -> Read {
    serde_json::from_str(&text)
}

/// The lane of a command frame. `set_state` and `accept` run alone: they change what the
/// agent may take (its presence, its load), and the router decides them in the order sent.
fn lane_of(frame: &Read) -> Lane {
    let Ok(value) = frame else {
        return Lane::Alone;
    };
    let field = |name| value.get(name).and_then(Value::as_str);
    match (field("command"), field("chat_id")) {
        (Some(command), Some(chat)) if command != "accept" => Lane::Chat(chat.to_string()),
        _ => Lane::Alone,
    }
}

/// The first queued command that may start now, given the lanes of those running.
fn next_to_start<C>(queued: &VecDeque<(Lane, C)>, running: &[Lane]) -> Option<usize> {
    if running.contains(&Lane::Alone) {
        return None;
    }
    // Chats with a command queued that cannot start yet: those after it on the chat wait too.
    let mut held: Vec<&str> = Vec::new();
    for (i, (lane, _)) in queued.iter().enumerate() {
        match lane {
            Lane::Alone => return (i == 0 && running.is_empty()).then_some(i),
            Lane::Chat(chat) => {
                let busy = held.contains(&chat.as_str()) || running.contains(lane);
                if !busy {
                    return Some(i);
                }
                held.push(chat);
            }
        }
    }
    None
}

/// A command running in its lane; the lane comes back with the answer.
async fn in_lane<F: Future>(lane: Lane, command: F) -> (Lane, F::Output) {
    (lane, command.await)
}

/// Forwards the agent's events and answers its commands until either side ends.
///
/// The two are independent: a slow command (an accept waits for the router and the
/// interaction) does not hold back the offers and messages meanwhile. Commands run in their
/// [`Lane`]s, so commands on one chat keep the order sent, and so do their answers.
async fn pump<Tx, Rx, C, L, A, F>(
    tx: &mut Tx,
    rx: &mut Rx,
    events: &mut broadcast::Receiver<AgentEvent>,
    lane: L,
    answer: A,
) where
    Tx: Sink<String> + Unpin,
    Rx: Stream<Item = C> + Unpin,
    L: Fn(&C) -> Lane,
    A: Fn(C) -> F,
    F: Future<Output = Value>,
{
    let mut queued: VecDeque<(Lane, C)> = VecDeque::new();
    let mut lanes: Vec<Lane> = Vec::new();
    let mut running = FuturesUnordered::new();
    loop {
        while let Some(i) = next_to_start(&queued, &lanes) {
            let (lane, command) = queued.remove(i).expect("an index into the queue");
            lanes.push(lane.clone());
            running.push(in_lane(lane, answer(command)));
        }
        // Biased, the answers first: a command's own events (the `accepted` of an `accept`) are
        // sent by the interaction's watcher only after the command's outcome is decided, so
        // whenever such an event is ready the answer is too, and the `ack` goes out before it.
        let frame = tokio::select! {
            biased;
            Some((done, reply)) = running.next(), if !running.is_empty() => {
                finished(&mut lanes, &done);
                reply.to_string()
            }
            event = events.recv() => match event {
                Ok(text) => text.to_string(),
                Err(RecvError::Lagged(n)) => resync(n),
                Err(RecvError::Closed) => break,
            },
            command = rx.next(), if queued.len() + running.len() < MAX_QUEUED_COMMANDS => {
                let Some(command) = command else { break };
                queued.push_back((lane(&command), command));
                continue;
            }
        };
        if tx.feed(frame).await.is_err() {
            break;
        }
        // What else is ready now goes out in the same write, in the same order (answers
        // first): a burst of offers is one system call, not one per frame.
        for _ in 1..MAX_FRAMES_PER_WRITE {
            let frame = match running.next().now_or_never() {
                Some(Some((done, reply))) => {
                    finished(&mut lanes, &done);
                    reply.to_string()
                }
                _ => match events.try_recv() {
                    Ok(text) => text.to_string(),
                    Err(TryRecvError::Lagged(n)) => resync(n),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                },
            };
            if tx.feed(frame).await.is_err() {
                return;
            }
        }
        if tx.flush().await.is_err() {
            break;
        }
    }
}

/// Frames written to the socket at once at most, so that a long burst still goes out as it
/// comes.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// A command's lane is free again.
fn finished(lanes: &mut Vec<Lane>, done: &Lane) {
    if let Some(at) = lanes.iter().position(|l| l == done) {
        lanes.swap_remove(at);
    }
}

/// Tells a tab that fell behind by `missed` events to reload its state.
fn resync(missed: u64) -> String {
    json!({"event": "resync", "missed": missed}).to_string()
}

/// What the agent needs to show each chat: service, customer, context.
async fn chat_cards(state: &AppState, snapshot: &Snapshot, chats: &[InteractionId]) -> Vec<Value> {
    let mut cards = Vec::new();
    for id in chats {
        if let Ok(Some(handle)) = state.hub().find(id).await
            && let Ok(s) = handle.summary().await
        {
            cards.push(
                json!({"chat_id": id, "service": s.service, "customer": s.customer,
                              "context": s.context, "phase": s.phase, "legs": s.legs,
                              "first_message": snapshot.first_messages.get(id)}),
            );
        }
    }
    cards
}

/// Carries out one command frame and says how it went.
async fn answer(state: &AppState, agent: &AgentId, frame: Read) -> Value {
    let mut value = match frame {
        Ok(v) => v,
        Err(e) => return error_event(&ApiError::BadCommand(e.to_string()), None),
    };
    let r#ref = value.as_object_mut().and_then(|o| o.remove("ref"));
    let result = match parse(value) {
        Ok(command) => carry_out(state, agent, command).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(extra) => {
            let mut ack = json!({"event": "ack"});
            if let Some(r) = r#ref {
                ack["ref"] = r;
            }
            if let Some(seq) = extra {
                ack["seq"] = json!(seq);
            }
            ack
        }
        Err(e) => socket::refused(state, &e, r#ref.as_ref()),
    }
}

fn parse(value: Value) -> Result<AgentCommand, ApiError> {
    let name = value
        .get("command")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadCommand("`command` must be a string".into()))?
        .to_string();
    if !KNOWN.contains(&name.as_str()) {
        return Err(ApiError::UnknownCommand(name));
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadCommand(e.to_string()))
}

/// Returns the `seq` of the event the command produced, if any.
async fn carry_out(
    state: &AppState,
    agent: &AgentId,
    command: AgentCommand,
) -> Result<Option<u64>, ApiError> {
    let routing = state.routing();
    let by = Party::Agent(agent.clone());
    let (chat, command) = match command {
        AgentCommand::SetState { state: presence } => {
            routing.set_presence(agent, presence).await?;
            return Ok(None);
        }
        AgentCommand::Accept { chat_id } => {
            return match routing.accept(&InteractionId(chat_id), agent).await {
                Ok(()) => Ok(None),
                Err(AcceptError::Routing(e)) => Err(e.into()),
                Err(AcceptError::Hub(e)) => Err(e.into()),
            };
        }
        AgentCommand::Decline { chat_id } => {
            routing.decline(&InteractionId(chat_id), agent).await?;
            return Ok(None);
        }
        AgentCommand::SendMessage {
            chat_id,
            msg_id,
            msg,
        } => (chat_id, Command::SendMessage { msg_id, text: msg }),
        AgentCommand::SendFile { chat_id, file_id } => {
            let device = AppState::agent_device(agent);
            let file = state
                .store()
                .file(&file_id)
                .await?
                .filter(|f| f.device == device)
                .ok_or(ApiError::FileNotFound)?;
            // The chat's quota holds whoever sends into it.
            let limits = &state.config().files;
            let held = state
                .store()
                .chat_files(&InteractionId(chat_id.clone()))
                .await?;
            files::within_quota(
                held,
                file.size,
                limits.max_files_per_chat,
                limits.max_bytes_per_chat,
            )?;
            state.api_metrics().files.inc();
            let command = Command::SendFile {
                file_id: file.id,
                file_name: file.name,
                file_type: file.content_type,
                size: file.size,
            };
            (chat_id, command)
        }
        AgentCommand::Typing { chat_id, typing } => (chat_id, Command::Typing(typing)),
        AgentCommand::MarkRead { chat_id, msg_id } => (
            chat_id,
            Command::Receipt {
                ref_msg_id: msg_id,
                receipt: ReceiptKind::Read,
            },
        ),
        AgentCommand::DisconnectChat { chat_id } => (chat_id, Command::DisconnectChat),
        AgentCommand::EndSession { chat_id } => (chat_id, Command::EndSession),
        AgentCommand::CallCustomer {
            chat_id,
            number,
            device,
        } => (chat_id, Command::CallCustomer { number, device }),
        AgentCommand::AcceptCall { chat_id, device } => (chat_id, Command::AcceptCall { device }),
        AgentCommand::DeclineCall { chat_id } => (chat_id, Command::DeclineCall),
        AgentCommand::ReleaseCall { chat_id } => (chat_id, Command::ReleaseCall),
        AgentCommand::AllowVideo { chat_id } => (chat_id, Command::AllowVideo),
        AgentCommand::DeclineVideo { chat_id } => (chat_id, Command::DeclineVideo),
        AgentCommand::DropVideo { chat_id } => (chat_id, Command::DropVideo),
        AgentCommand::WebrtcSignaling { chat_id, data } => {
            if !data.is_object() {
                return Err(ApiError::BadCommand("`data` must be an object".into()));
            }
            (chat_id, Command::Signal(data))
        }
    };
    let accepted = state
        .hub()
        .command(&InteractionId(chat), by, command)
        .await?;
    Ok(accepted.seq)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{mpsc, oneshot};

    use super::*;

    /// A socket driven by channels: commands in, frames out; each command's answer waits for
    /// the test to release it.
    struct Desk {
        commands: mpsc::UnboundedSender<String>,
        frames: mpsc::UnboundedReceiver<String>,
        events: broadcast::Sender<AgentEvent>,
        release: mpsc::UnboundedReceiver<(String, oneshot::Sender<()>)>,
    }

    /// The tests' commands: `name@chat` is on a chat, a bare name runs alone.
    fn lane(text: &str) -> Lane {
        match text.split_once('@') {
            Some((_, chat)) => Lane::Chat(chat.to_string()),
            None => Lane::Alone,
        }
    }

    /// The next command to start, if one starts before the test's task runs ten times more.
    async fn started(d: &mut Desk) -> Option<(String, oneshot::Sender<()>)> {
        for _ in 0..10 {
            if let Ok(started) = d.release.try_recv() {
                return Some(started);
            }
            tokio::task::yield_now().await;
        }
        d.release.try_recv().ok()
    }

    async fn reply(d: &mut Desk) -> Value {
        serde_json::from_str(&d.frames.recv().await.unwrap()).unwrap()
    }

    fn desk() -> Desk {
        let (commands, rx) = mpsc::unbounded_channel::<String>();
        let (frames_tx, frames) = mpsc::unbounded_channel::<String>();
        let (events, mut subscribed) = broadcast::channel(16);
        let (held, release) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut rx = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|text| (text, rx))
            }));
            let mut tx = Box::pin(futures_util::sink::unfold(
                frames_tx,
                |out, frame: String| async move {
                    out.send(frame).map_err(|_| ())?;
                    Ok::<_, ()>(out)
                },
            ));
            let answer = move |text: String| {
                let held = held.clone();
                async move {
                    let (go, wait) = oneshot::channel();
                    let _ = held.send((text.clone(), go));
                    let _ = wait.await;
                    json!({"event": "ack", "ref": text})
                }
            };
            pump(
                &mut tx,
                &mut rx,
                &mut subscribed,
                |text: &String| lane(text),
                answer,
            )
            .await;
        });
        Desk {
            commands,
            frames,
            events,
            release,
        }
    }

    #[tokio::test]
    async fn events_flow_while_a_command_runs_and_replies_keep_their_order() {
        let mut d = desk();
        d.commands.send("first".into()).unwrap();
        d.commands.send("second".into()).unwrap();
        // The first command runs and waits; the second waits its turn.
        let (text, first) = d.release.recv().await.unwrap();
        assert_eq!(text, "first");
        // An offer meanwhile reaches the desk at once.
        d.events.send(Arc::from(r#"{"event":"offer"}"#)).unwrap();
        let offer = tokio::time::timeout(std::time::Duration::from_secs(10), d.frames.recv());
        let offer = offer
            .await
            .expect("the offer is not held back by the command");
        assert_eq!(offer.unwrap(), r#"{"event":"offer"}"#);
        // The second command has not started: one at a time, in order.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(d.release.try_recv().is_err());
        first.send(()).unwrap();
        let reply: Value = serde_json::from_str(&d.frames.recv().await.unwrap()).unwrap();
        assert_eq!(reply["ref"], "first");
        let (text, second) = d.release.recv().await.unwrap();
        assert_eq!(text, "second");
        second.send(()).unwrap();
        let reply: Value = serde_json::from_str(&d.frames.recv().await.unwrap()).unwrap();
        assert_eq!(reply["ref"], "second");
    }

    #[tokio::test]
    async fn a_command_is_answered_before_the_events_it_caused() {
        let mut d = desk();
        d.commands.send("accept".into()).unwrap();
        let (_, go) = d.release.recv().await.unwrap();
        // The accept is decided, then its `accepted` event is told, before the socket's task
        // runs again: the ack still goes first.
        go.send(()).unwrap();
        d.events.send(Arc::from(r#"{"event":"accepted"}"#)).unwrap();
        let first: Value = serde_json::from_str(&d.frames.recv().await.unwrap()).unwrap();
        assert_eq!(first["event"], "ack", "{first}");
        assert_eq!(d.frames.recv().await.unwrap(), r#"{"event":"accepted"}"#);
    }

    #[tokio::test]
    async fn more_commands_than_the_queue_holds_are_all_answered_in_order() {
        let mut d = desk();
        for n in 0..MAX_QUEUED_COMMANDS + 10 {
            d.commands.send(format!("c{n}")).unwrap();
        }
        let (_, first) = d.release.recv().await.unwrap();
        // Events still flow while the reader is held back.
        d.events.send(Arc::from("e")).unwrap();
        assert_eq!(d.frames.recv().await.unwrap(), "e");
        // Everything is answered in order in the end.
        first.send(()).unwrap();
        for n in 0..MAX_QUEUED_COMMANDS + 10 {
            if n > 0 {
                let (_, go) = d.release.recv().await.unwrap();
                go.send(()).unwrap();
            }
            let reply: Value = serde_json::from_str(&d.frames.recv().await.unwrap()).unwrap();
            assert_eq!(reply["ref"], format!("c{n}"));
        }
    }

    #[tokio::test]
    async fn commands_on_different_chats_run_side_by_side_and_are_answered_as_they_end() {
        let mut d = desk();
        d.commands.send("message@a".into()).unwrap();
        d.commands.send("message@b".into()).unwrap();
        let (first, a) = d.release.recv().await.unwrap();
        let (second, b) = started(&mut d).await.expect("b's command waits for a's");
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("message@a", "message@b")
        );
        // The later one ends first and is answered first.
        b.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "message@b");
        a.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "message@a");
    }

    #[tokio::test]
    async fn commands_on_one_chat_run_in_the_order_sent() {
        let mut d = desk();
        for text in ["first@a", "second@a", "other@b"] {
            d.commands.send(text.into()).unwrap();
        }
        let (text, first) = d.release.recv().await.unwrap();
        assert_eq!(text, "first@a");
        // Chat b's command passes the one waiting on chat a.
        let (text, other) = started(&mut d).await.expect("b's command waits for a's");
        assert_eq!(text, "other@b");
        assert!(started(&mut d).await.is_none(), "a's second started early");
        other.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "other@b");
        assert!(started(&mut d).await.is_none(), "a's second started early");
        first.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "first@a");
        let (text, second) = d.release.recv().await.unwrap();
        assert_eq!(text, "second@a");
        second.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "second@a");
    }

    #[tokio::test]
    async fn a_command_alone_waits_for_those_before_it_and_holds_those_after() {
        let mut d = desk();
        for text in ["message@a", "set_state", "message@b"] {
            d.commands.send(text.into()).unwrap();
        }
        let (text, before) = d.release.recv().await.unwrap();
        assert_eq!(text, "message@a");
        assert!(
            started(&mut d).await.is_none(),
            "set_state or b ran beside a"
        );
        before.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "message@a");
        let (text, alone) = d.release.recv().await.unwrap();
        assert_eq!(text, "set_state");
        assert!(started(&mut d).await.is_none(), "b ran beside set_state");
        alone.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "set_state");
        let (text, after) = d.release.recv().await.unwrap();
        assert_eq!(text, "message@b");
        after.send(()).unwrap();
        assert_eq!(reply(&mut d).await["ref"], "message@b");
    }

    #[test]
    fn commands_on_a_chat_share_its_lane_and_the_agents_own_run_alone() {
        let chat = |c: &str| Lane::Chat(c.to_string());
        let lane = |v: Value| lane_of(&Ok(v));
        assert_eq!(
            lane(json!({"command": "send_message", "chat_id": "c1", "text": "hi"})),
            chat("c1")
        );
        assert_eq!(
            lane(json!({"command": "typing", "chat_id": "c2"})),
            chat("c2")
        );
        assert_eq!(
            lane(json!({"command": "decline", "chat_id": "c3"})),
            chat("c3")
        );
        assert_eq!(
            lane(json!({"command": "accept", "chat_id": "c1"})),
            Lane::Alone
        );
        assert_eq!(
            lane(json!({"command": "set_state", "state": "away"})),
            Lane::Alone
        );
        // What cannot be read is answered with an error, in its turn.
        assert_eq!(lane_of(&read("not json".into())), Lane::Alone);
        assert_eq!(
            lane(json!({"command": "typing", "chat_id": 7})),
            Lane::Alone
        );
        assert_eq!(lane(json!({"chat_id": "c1"})), Lane::Alone);
    }

    /// A socket that keeps the frames it is given and counts the times it is flushed (each
    /// flush is one write to the network).
    #[derive(Clone, Default)]
    struct Counting(Arc<std::sync::Mutex<(Vec<String>, usize)>>);

    impl Sink<String> for Counting {
        type Error = ();
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, frame: String) -> Result<(), ()> {
            self.0.lock().unwrap().0.push(frame);
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            self.0.lock().unwrap().1 += 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), ()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_burst_of_events_goes_out_in_few_writes_and_in_order() {
        let (events, mut subscribed) = broadcast::channel(128);
        let burst: Vec<String> = (0..100)
            .map(|n| json!({"event": "offer", "n": n}).to_string())
            .collect();
        for frame in &burst {
            events.send(Arc::from(frame.as_str())).unwrap();
        }
        // The burst is all there is: the session ends once it is sent.
        drop(events);
        let socket = Counting::default();
        pump(
            &mut socket.clone(),
            &mut futures_util::stream::pending::<String>(),
            &mut subscribed,
            |_: &String| Lane::Alone,
            |_| async { json!({}) },
        )
        .await;
        let (frames, flushes) = socket.0.lock().unwrap().clone();
        assert_eq!(frames, burst);
        assert_eq!(flushes, burst.len().div_ceil(MAX_FRAMES_PER_WRITE));
    }
}
