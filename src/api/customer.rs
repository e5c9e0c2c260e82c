//! The customer API handlers (`/clientweb/api/v1/…`).

use std::sync::Arc;
use std::time::Duration;

use super::listener::Source;
use super::query::Query;
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use super::auth::Client;
use super::availability::{self, Availability, NOBODY};
use super::wire::{ClientEvent, parse_client_event};
use super::{ApiError, ApiJson, AppState, ChatRef};
use crate::bridge::{Accepted, Command, Customer, Event, InteractionId, Party, Time, random_hex};
use crate::chat::files;
use crate::chat::store::{FileRecord, Write};
use crate::hub::Handle;
use crate::presentation::customer::view as customer_view;

/// Most events one poll returns; the rest come with the next.
const MAX_EVENTS_PER_POLL: usize = 500;
const MAX_NAME: usize = 256;

/// `GET availability`: whether the app's service takes chats now: open by its hours, and
/// someone there to answer (see `availability.rs`), with the expected wait in seconds.
pub async fn availability(State(state): State<AppState>, client: Client) -> Json<Value> {
    if let Some(reason) = closed_reason(&state, &client) {
        return Json(json!({"chat": "notAvailable", "reason": reason}));
    }
    match staffed(&state, &client.service).await {
        Availability::Available { ewt_s } => Json(json!({"chat": "available", "ewt": ewt_s})),
        Availability::Unavailable => Json(json!({"chat": "notAvailable", "reason": NOBODY})),
    }
}

/// Whether someone of the service's department could take a chat now, as routing has it.
async fn staffed(state: &AppState, service: &str) -> Availability {
    let config = state.config();
    let Some(department) = config.service(service).map(|s| s.department.as_str()) else {
        return Availability::Unavailable;
    };
    let staff = state.routing().staff(department).await;
    availability::estimate(
        &staff,
        config.sms.url.is_some(),
        config.routing.default_handle_time_s,
    )
}

fn closed_reason(state: &AppState, client: &Client) -> Option<String> {
    let service = state.config().service(&client.service)?;
    let hours = service.hours.as_ref()?;
    (!hours.is_open(Time::now().millis())).then(|| hours.closed_reason.clone())
}

/// The body of `POST chats`. Fields Tandem does not know (an `email` some SDKs send) are
/// ignored; known fields of the wrong type are refused (`400 bad_json`).
#[derive(Deserialize)]
pub struct NewChat {
    phone_number: Option<String>,
    from: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// `POST chats`: opens an interaction for the app's service and this device.
pub async fn create_chat(
    State(state): State<AppState>,
    client: Client,
    Source(source): Source,
    ApiJson(body): ApiJson<NewChat>,
) -> Result<Json<Value>, ApiError> {
    if let Some(reason) = closed_reason(&state, &client) {
        return Err(ApiError::NotAvailable(reason));
    }
    if let Some(ip) = source {
        let mut creates = state.shared.creates.lock().expect("creates");
        if let Err(wait) = creates.take(&ip, std::time::Instant::now()) {
            return Err(ApiError::RateLimited(wait.as_secs_f64().ceil() as u64));
        }
    }
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_NAME);
    if too_long(&body.phone_number) || too_long(&body.from) {
        return Err(ApiError::BadJson(format!(
            "from and phone_number are at most {MAX_NAME} bytes"
        )));
    }
    let context = match body.parameters {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::BadJson("parameters must be an object".into())),
    };
    // The number may be dialled (auto-dial, a call from the agent): it must be one the
    // service's dial plan allows, kept in E.164.
    let phone = match body.phone_number.filter(|s| !s.is_empty()) {
        None => None,
        Some(number) => {
            let plan = state
                .config()
                .service(&client.service)
                .map(|s| s.dial_plan.clone())
                .unwrap_or_default();
            let number = plan
                .check(&number)
                .map_err(crate::bridge::RuleError::from)?;
            Some(number.into_string())
        }
    };
    let customer = Customer {
        device: client.device.clone(),
        name: body.from.filter(|s| !s.is_empty()),
        phone,
    };
    // What this chat should expect: the wait behind the chats already queued.
    let ewt = match staffed(&state, &client.service).await {
        Availability::Available { ewt_s } => ewt_s,
        Availability::Unavailable => 0,
    };
    let (id, _) = state
        .hub()
        .create(&client.service, customer, context)
        .await?;
    tracing::info!(interaction = %id, service = %client.service, "chat created");
    // Our addition: with this token in `X-Interaction-Token`, a call that names the chat joins
    // it from any number (a SIP client in the app, a withheld caller id).
    let join_token = state.hub().join_token(&id);
    Ok(Json(
        json!({"chat_id": id, "state": "queued", "ewt": ewt, "join_token": join_token}),
    ))
}

#[derive(Deserialize)]
pub struct ClientEvents {
    events: Vec<Value>,
}

/// `POST chats/{id}/events`: the client's events, in order. All are validated before any is
/// applied; each is persisted before the answer. Retrying with the same `msg_id`s is safe.
pub async fn post_events(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ClientEvents>,
) -> Result<Json<Value>, ApiError> {
    let id = InteractionId(id);
    let handle = match state.chat_for(&client.device, &id).await? {
        ChatRef::Live(handle) => handle,
        ChatRef::Stored => return Err(crate::bridge::RuleError::InteractionClosed.into()),
    };
    let accepted = apply_client_events(&state, &client, &handle, &body.events).await?;
    Ok(Json(accepted_json(&accepted)))
}

pub(crate) fn accepted_json(accepted: &[Accepted]) -> Value {
    let list: Vec<Value> = accepted
        .iter()
        .map(|a| json!({"seq": a.seq, "duplicate": a.duplicate}))
        .collect();
    json!({"accepted": list})
}

/// Validates every event, then applies them in order (shared by POST and the WebSocket).
pub(crate) async fn apply_client_events(
    state: &AppState,
    client: &Client,
    handle: &Handle,
    events: &[Value],
) -> Result<Vec<Accepted>, ApiError> {
    let max = state.config().http.max_events_per_request;
    if events.len() > max {
        return Err(ApiError::TooManyEvents(max));
    }
    let mut commands = Vec::with_capacity(events.len());
    // What the chat holds, with the files this request sends.
    let mut held: Option<(u64, u64)> = None;
    for event in events {
        match parse_client_event(event)? {
            ClientEvent::Command(c) => commands.push(c),
            ClientEvent::Commands(cs) => commands.extend(cs),
            ClientEvent::File { file_id } => {
                let file = state
                    .store()
                    .file(&file_id)
                    .await?
                    .filter(|f| f.device == client.device)
                    .ok_or(ApiError::FileNotFound)?;
                let held = match &mut held {
                    Some(held) => held,
                    None => held.insert(state.store().chat_files(&handle.id).await?),
                };
                let files = &state.config().files;
                files::within_quota(
                    *held,
                    file.size,
                    files.max_files_per_chat,
                    files.max_bytes_per_chat,
                )?;
                *held = (held.0 + 1, held.1 + file.size);
                state.api_metrics().files.inc();
                commands.push(Command::SendFile {
                    file_id: file.id,
                    file_name: file.name,
                    file_type: file.content_type,
                    size: file.size,
                });
            }
        }
    }
    let mut accepted = Vec::with_capacity(commands.len());
    for command in commands {
        accepted.push(handle.command(Party::Customer, command).await?);
    }
    Ok(accepted)
}

#[derive(Deserialize)]
pub struct PollQuery {
    /// Ours: resume after this seq instead of where the last poll stopped.
    after_seq: Option<u64>,
}

/// Releases the chat's poll slot when the poll ends, however it ends.
struct PollGuard {
    state: AppState,
    id: InteractionId,
    /// The chat runs on another node: running, although this hub does not hold it.
    remote: bool,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut polls = self.state.shared.polls.lock().expect("polls");
        if !self.remote && self.state.hub().get(&self.id).is_none() {
            // The chat is over: its slot goes with it.
            polls.remove(&self.id);
        } else if let Some(slot) = polls.get_mut(&self.id) {
            slot.busy = false;
        }
    }
}

/// `GET chats/{id}/events`: a long poll, one at a time per chat. Answers as soon as there is
/// something for the customer, or with no events after `http.long_poll_timeout_s`.
pub async fn poll_events(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    Query(query): Query<PollQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = InteractionId(id);
    let chat = state.chat_for(&client.device, &id).await?;
    let _slot = state.shared.budgets.take(&id, &client.device)?;
    let _permit = super::budget::permit(&state.shared.long_polls, "long polls")?;
    let (cursor, kept) = {
        let mut polls = state.shared.polls.lock().expect("polls");
        let slot = polls.entry(id.clone()).or_default();
        if slot.busy {
            return Err(ApiError::PollInProgress);
        }
        slot.busy = true;
        (slot.cursor, slot.live.take())
    };
    let _guard = PollGuard {
        state: state.clone(),
        id: id.clone(),
        remote: matches!(&chat, ChatRef::Live(handle) if !handle.is_local()),
    };
    // A client that asks for a position of its own gets exactly that, from the store.
    let kept = kept.filter(|_| query.after_seq.is_none_or(|a| a == cursor));
    let after = query.after_seq.unwrap_or(cursor);
    let (events, last, live) = match chat {
        ChatRef::Live(handle) => {
            let wait = Duration::from_secs(state.config().http.long_poll_timeout_s);
            wait_for_events(&handle, after, kept, wait).await?
        }
        ChatRef::Stored => {
            let stored = state.store().events(&id, after).await?;
            let last = stored.last().and_then(|e| e.seq).unwrap_or(after);
            let views: Vec<Value> = stored.iter().filter_map(customer_view).collect();
            if stored.is_empty() {
                state.shared.polls.lock().expect("polls").remove(&id);
                return Err(crate::bridge::RuleError::InteractionClosed.into());
            }
            (views, last, None)
        }
    };
    if let Some(slot) = state.shared.polls.lock().expect("polls").get_mut(&id) {
        slot.cursor = slot.cursor.max(last);
        slot.live = live;
    }
    Ok(Json(json!({"events": events})))
}

/// The customer's events after `after`, waiting up to `wait` for the first one. `kept` is the
/// live stream the previous poll left off, when it is still good: it carries the ephemeral
/// events emitted between the polls. Returns the stream to keep for the next poll.
async fn wait_for_events(
    handle: &Handle,
    after: u64,
    kept: Option<broadcast::Receiver<Arc<Event>>>,
    wait: Duration,
) -> Result<(Vec<Value>, u64, Option<broadcast::Receiver<Arc<Event>>>), ApiError> {
    let mut last = after;
    let mut out = Vec::new();
    let mut live = match kept {
        Some(live) => live,
        None => {
            let sub = handle.subscribe(after).await?;
            for event in sub.backlog.iter().take(MAX_EVENTS_PER_POLL) {
                last = event.seq.unwrap_or(last);
                out.extend(customer_view(event));
            }
            if sub.backlog.len() > MAX_EVENTS_PER_POLL {
                // More backlog than one answer: the next poll reads the rest from it.
                return Ok((out, last, None));
            }
            sub.live
        }
    };
    // Durable events the backlog already gave (or the client has) are skipped.
    let take = |event: &Event, out: &mut Vec<Value>, last: &mut u64| match event.seq {
        Some(seq) if seq <= *last => {}
        seq => {
            *last = seq.unwrap_or(*last);
            out.extend(customer_view(event));
        }
    };
    let mut keep = true;
    let deadline = tokio::time::Instant::now() + wait;
    while out.is_empty() {
        match tokio::time::timeout_at(deadline, live.recv()).await {
            Err(_) => break,
            Ok(Ok(event)) => take(&event, &mut out, &mut last),
            // Behind or over: the next poll resumes from `last` via the backlog.
            Ok(Err(RecvError::Lagged(_))) | Ok(Err(RecvError::Closed)) => {
                keep = false;
                break;
            }
        }
    }
    // Take what else is already there.
    while keep && out.len() < MAX_EVENTS_PER_POLL {
        match live.try_recv() {
            Ok(event) => take(&event, &mut out, &mut last),
            Err(broadcast::error::TryRecvError::Empty) => break,
            Err(_) => keep = false,
        }
    }
    Ok((out, last, keep.then_some(live)))
}

/// One page of `GET history`: `?limit=n` (default [`HISTORY_PAGE`], at most
/// [`MAX_HISTORY_PAGE`]) events before `?before_seq=s` (default: the newest).
#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<u32>,
    before_seq: Option<u64>,
}

/// Events in a history page when the client does not say.
pub const HISTORY_PAGE: u32 = 200;
/// The most events one history page holds.
pub const MAX_HISTORY_PAGE: u32 = 1000;

/// `GET chats/{id}/history`: the chat as the customer saw it, oldest first, a page at a time
/// from the store (which holds every event the customer was told of), newest page first:
/// `{"events": [...], "next_before_seq": s}` where `s`, when not null, asks for the page before.
/// Signalling is left out: a call's end or rejection reaches the app live as
/// `chat_session_signaling`; the record of the call is the transcript's.
pub async fn history(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = InteractionId(id);
    state.chat_for(&client.device, &id).await?;
    let limit = query
        .limit
        .unwrap_or(HISTORY_PAGE)
        .clamp(1, MAX_HISTORY_PAGE);
    let before = query.before_seq.unwrap_or(u64::MAX);
    let page = state.store().events_between(&id, 0, before, limit).await?;
    let first = page.first().and_then(|e| e.seq).unwrap_or(0);
    let more = page.len() == limit as usize && first > 1;
    let events: Vec<Value> = page
        .iter()
        .filter_map(customer_view)
        .filter(|v| v["event"] != "chat_session_signaling")
        .collect();
    Ok(Json(
        json!({"events": events, "next_before_seq": more.then_some(first)}),
    ))
}

/// `POST files` (multipart, one part with a file name): stores the file for this device.
/// Send it into a chat with a `chat_session_file` event.
pub async fn upload(
    State(state): State<AppState>,
    client: Client,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let multipart = multipart.map_err(|e| ApiError::BadUpload(e.body_text()))?;
    let config = state.config();
    let service = config
        .service(&client.service)
        .ok_or_else(|| ApiError::Internal("service vanished".into()))?;
    let max = service.max_file_bytes(&config.files);
    let allowed = service.allowed_file_types(&config.files).to_vec();
    let record = receive_unsent_file(
        &state,
        multipart,
        &client.device,
        &client.service,
        max,
        &allowed,
    )
    .await?;
    Ok(Json(file_json(&record)))
}

pub(crate) fn file_json(record: &FileRecord) -> Value {
    json!({
        "file_id": record.id,
        "file_name": record.name,
        "file_type": record.content_type,
        "size": record.size,
    })
}

/// Stores the first file part of an upload for `device`, within `max` bytes and `allowed` types.
/// Receives an upload of `device` that waits on disk until it is sent into a chat. Such uploads
/// are bounded by one chat's worth of files and bytes per device (customer or agent), so
/// nobody can fill the disk with files they never send.
pub(crate) async fn receive_unsent_file(
    state: &AppState,
    multipart: Multipart,
    device: &str,
    service: &str,
    max: u64,
    allowed: &[String],
) -> Result<FileRecord, ApiError> {
    let files = &state.config().files;
    let quota = (files.max_files_per_chat, files.max_bytes_per_chat);
    let unsent = state.store().unsent_files(device).await?;
    files::within_quota(unsent, 0, quota.0, quota.1)?;
    let room = quota.1.saturating_sub(unsent.1);
    receive_file(state, multipart, device, service, max.min(room), allowed)
        .await
        .map_err(|e| match e {
            ApiError::File(files::FileError::TooLarge { .. }) if room < max => {
                files::FileError::QuotaExceeded {
                    max_files: quota.0,
                    max_bytes: quota.1,
                }
                .into()
            }
            e => e,
        })
}

pub(crate) async fn receive_file(
    state: &AppState,
    mut multipart: Multipart,
    device: &str,
    service: &str,
    max: u64,
    allowed: &[String],
) -> Result<FileRecord, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadUpload(e.body_text())
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        let Some(name) = field.file_name().map(str::to_string) else {
            continue;
        };
        let name: String = name
            .chars()
            .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
            .take(MAX_NAME)
            .collect();
        // Read in chunks and stop at the limit, so an oversized file is never held whole.
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if (bytes.len() + chunk.len()) as u64 > max {
                return Err(files::FileError::TooLarge { max }.into());
            }
            bytes.extend_from_slice(&chunk);
        }
        let content_type = files::check(&bytes, max, allowed)?;
        let store = state.shared.files.clone();
        let size = bytes.len() as u64;
        let sha256 = tokio::task::spawn_blocking(move || store.put(&bytes))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        let record = FileRecord {
            id: random_hex(16),
            sha256,
            name: if name.is_empty() { "file".into() } else { name },
            content_type: content_type.to_string(),
            size,
            device: device.to_string(),
            service: service.to_string(),
            created_at: Time::now().millis(),
        };
        state
            .store()
            .write(vec![Write::NewFile(record.clone())])
            .await?;
        return Ok(record);
    }
    Err(ApiError::BadUpload("no file part".into()))
}

/// The bytes of a file sent into chat `id`, as a response.
pub(crate) async fn file_response(
    state: &AppState,
    id: &InteractionId,
    file_id: &str,
) -> Result<Response, ApiError> {
    if !state.store().is_linked(file_id, id).await? {
        return Err(ApiError::FileNotFound);
    }
    let file = state
        .store()
        .file(file_id)
        .await?
        .ok_or(ApiError::FileNotFound)?;
    let path = state.shared.files.path(&file.sha256);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::Internal(format!("{}: {e}", path.display())))?;
    let disposition = format!(
        "inline; filename=\"{}\"",
        file.name.replace(['"', '\r', '\n'], "_")
    );
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// `GET chats/{id}/files/{file_id}`: a file sent into this chat, to its device only.
pub async fn download(
    State(state): State<AppState>,
    client: Client,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = InteractionId(id);
    state.chat_for(&client.device, &id).await?;
    file_response(&state, &id, &file_id).await
}
