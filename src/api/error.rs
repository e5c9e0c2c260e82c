//! The API's one error enum, mapped in one place to an HTTP status and a stable code.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::bridge::RuleError;
use crate::chat::files::FileError;
use crate::chat::store::StoreError;
use crate::hub::HubError;
use crate::routing::router::RoutingError;
use crate::routing::settings::SettingsError;
use crate::sms::mobile::{LinkError, MobileError};

/// Everything a client can be told went wrong. Clients get `{"error": {"code", "message"}}`;
/// the logs get the detail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or malformed `Authorization: MOBILE-API-140-327-PLAIN appId="…", clientId="…"`.
    #[error("missing or malformed authorization")]
    Unauthorized,
    /// The `appId` names no configured service entry.
    #[error("unknown appId {0:?}")]
    UnknownApp(String),
    /// No such chat for this device (a chat is visible only to its own device).
    #[error("no such chat")]
    ChatNotFound,
    /// No such file in this chat.
    #[error("no such file")]
    FileNotFound,
    /// The body is not the JSON expected.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A query string that does not parse (`?after_seq=abc`).
    #[error("bad query string: {0}")]
    BadQuery(String),
    /// The body is not JSON at all (content type).
    #[error("expected application/json")]
    BadContentType,
    /// A client event with an unknown `event` name.
    #[error("unknown event {0:?}")]
    UnknownEvent(String),
    /// A known event with missing or wrong fields.
    #[error("bad event: {0}")]
    BadEvent(String),
    /// More events in one request than allowed.
    #[error("at most {0} events per request")]
    TooManyEvents(usize),
    /// The request body is over the configured limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// The multipart upload is malformed or has no file.
    #[error("bad upload: {0}")]
    BadUpload(String),
    /// A file over the service's limit, of a refused type, or empty.
    #[error(transparent)]
    File(#[from] FileError),
    /// Another long poll on this chat is still open.
    #[error("another long poll is open on this chat")]
    PollInProgress,
    /// A limit on open things (chats per device, long polls, sockets) was reached.
    #[error("too many open {0}")]
    TooMany(&'static str),
    /// A customer's sockets and polls over their chat's or device's budget.
    #[error(transparent)]
    Budget(#[from] super::budget::BudgetError),
    /// The service is closed now (business hours).
    #[error("{0}")]
    NotAvailable(String),
    /// The interaction refused the command.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The store is unreachable.
    #[error("store unavailable")]
    Store(#[from] StoreError),
    /// The interaction's store did not take its writes in time: the command was not carried
    /// out, or not confirmed (it is stored once the store returns).
    #[error("the store did not take the command in time")]
    StoreUnavailable,
    /// The node that owns the interaction does not answer, or it is moving to another node
    /// (several nodes as one): retry shortly.
    #[error("the chat's node does not answer; retry")]
    OwnerUnavailable,
    /// Agent login with a wrong name or password.
    #[error("wrong name or password")]
    BadCredentials,
    /// Too many wrong logins for this agent or from this address: retry after the seconds given.
    #[error("too many failed logins; retry in {0} s")]
    LoginLocked(u64),
    /// No token, or an expired or unknown one (an agent's login, a customer's socket ticket).
    #[error("missing, unknown or expired token")]
    TokenInvalid,
    /// An agent command that is not JSON of the expected shape.
    #[error("bad command: {0}")]
    BadCommand(String),
    /// An agent command with an unknown name.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// Routing refused an agent's accept or decline.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// An agent's settings that do not validate (a number, hours, a time zone).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A mobile operator's link or session cannot be used.
    #[error(transparent)]
    Mobile(#[from] MobileError),
    /// Inbound SMS are not configured (`sms.inbound_secret`, `sms.inbound_service`).
    #[error("inbound SMS are not enabled")]
    SmsInboundDisabled,
    /// The inbound SMS webhook was called without the shared secret.
    #[error("missing or wrong shared secret")]
    BadSecret,
    /// A recording's name that is not a plain `.wav` file name.
    #[error("bad recording name")]
    BadRecordingName,
    /// No such recording for this interaction.
    #[error("no such recording")]
    RecordingNotFound,
    /// An admin endpoint asked without `Authorization: Bearer <admin token>`.
    #[error("admin credentials are required")]
    AdminCredentialsRequired,
    /// An admin token that is not the configured one (or a metrics token outside `/metrics`).
    #[error("wrong admin token")]
    AdminTokenInvalid,
    /// Admin on a non-loopback listener with no `admin.token` configured.
    #[error("admin is disabled on this address until admin.token is set")]
    AdminDisabled,
    /// This source opened chats faster than `chat.creates_per_minute_per_source`: retry after
    /// the seconds given.
    #[error("too many chats from this address; retry in {0} s")]
    RateLimited(u64),
    /// A `clientId` that is another channel's identity (an SMS customer's `sms:<number>`).
    #[error("this clientId belongs to another channel")]
    ClientIdReserved,
    /// A cross-origin request from a site not in `chat.allowed_origins`.
    #[error("this origin may not use the customer API")]
    OriginNotAllowed,
    /// No route here.
    #[error("no such endpoint")]
    NoSuchEndpoint,
    /// The route exists with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bug.
    #[error("internal error")]
    Internal(String),
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        match e {
            HubError::Rule(r) => ApiError::Rule(r),
            HubError::NotFound => ApiError::ChatNotFound,
            HubError::Closed => ApiError::Rule(RuleError::InteractionClosed),
            HubError::TooMany { what } => ApiError::TooMany(match what {
                "device" => "chats for this device",
                _ => "chats",
            }),
            HubError::Store(s) => ApiError::Store(s),
            HubError::StoreUnavailable | HubError::NotStored => ApiError::StoreUnavailable,
            HubError::Moved | HubError::Unavailable => ApiError::OwnerUnavailable,
        }
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> ApiError {
        match e {
            LinkError::Mobile(m) => ApiError::Mobile(m),
            LinkError::Store(s) => ApiError::Store(s),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::BadContentType,
            _ => ApiError::BadJson(r.body_text()),
        }
    }
}

impl ApiError {
    /// The status and the stable code: the only mapping of errors to HTTP.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::Unauthorized => (S::UNAUTHORIZED, "unauthorized"),
            ApiError::UnknownApp(_) => (S::UNAUTHORIZED, "unknown_app"),
            ApiError::ChatNotFound => (S::NOT_FOUND, "chat_not_found"),
            ApiError::FileNotFound => (S::NOT_FOUND, "file_not_found"),
            ApiError::BadJson(_) => (S::BAD_REQUEST, "bad_json"),
            ApiError::BadQuery(_) => (S::BAD_REQUEST, "bad_query"),
            ApiError::BadContentType => (S::UNSUPPORTED_MEDIA_TYPE, "bad_content_type"),
            ApiError::UnknownEvent(_) => (S::BAD_REQUEST, "unknown_event"),
            ApiError::BadEvent(_) => (S::BAD_REQUEST, "bad_event"),
            ApiError::TooManyEvents(_) => (S::BAD_REQUEST, "too_many_events"),
            ApiError::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BadUpload(_) => (S::BAD_REQUEST, "bad_upload"),
            ApiError::File(FileError::TooLarge { .. }) => (S::PAYLOAD_TOO_LARGE, "file_too_large"),
            ApiError::File(FileError::TypeNotAllowed { .. }) => {
                (S::UNSUPPORTED_MEDIA_TYPE, "file_type_not_allowed")
            }
            ApiError::File(FileError::Empty) => (S::BAD_REQUEST, "empty_file"),
            ApiError::File(FileError::QuotaExceeded { .. }) => {
                (S::PAYLOAD_TOO_LARGE, "chat_file_quota_exceeded")
            }
            ApiError::File(FileError::Io(_)) => (S::INTERNAL_SERVER_ERROR, "file_store_failed"),
            ApiError::PollInProgress => (S::CONFLICT, "poll_in_progress"),
            ApiError::TooMany(_) => (S::TOO_MANY_REQUESTS, "too_many"),
            ApiError::Budget(e) => (S::TOO_MANY_REQUESTS, e.code()),
            ApiError::NotAvailable(_) => (S::SERVICE_UNAVAILABLE, "not_available"),
            ApiError::Rule(rule) => {
                let status = match rule {
                    RuleError::MessageTooLong { .. } => S::PAYLOAD_TOO_LARGE,
                    RuleError::EmptyMessage
                    | RuleError::UnknownMessage
                    | RuleError::InvalidNumber => S::BAD_REQUEST,
                    RuleError::NumberNotAllowed => S::FORBIDDEN,
                    RuleError::NotPermitted => S::FORBIDDEN,
                    _ => S::CONFLICT,
                };
                (status, rule.code())
            }
            ApiError::BadCredentials => (S::UNAUTHORIZED, "bad_credentials"),
            ApiError::TokenInvalid => (S::UNAUTHORIZED, "token_invalid"),
            ApiError::LoginLocked(_) => (S::TOO_MANY_REQUESTS, "login_locked"),
            ApiError::BadCommand(_) => (S::BAD_REQUEST, "bad_command"),
            ApiError::UnknownCommand(_) => (S::BAD_REQUEST, "unknown_command"),
            ApiError::Routing(RoutingError::Unavailable) => {
                (S::SERVICE_UNAVAILABLE, RoutingError::Unavailable.code())
            }
            ApiError::Routing(e) => (S::CONFLICT, e.code()),
            ApiError::Settings(e) => (S::BAD_REQUEST, e.code()),
            ApiError::Mobile(e) => {
                let status = match e {
                    MobileError::LinkNotFound => S::NOT_FOUND,
                    MobileError::AlreadyTaken => S::CONFLICT,
                    MobileError::LinkExpired => S::GONE,
                    MobileError::SessionInvalid => S::UNAUTHORIZED,
                    MobileError::ClaimedElsewhere | MobileError::NotClaimed => S::CONFLICT,
                };
                (status, e.code())
            }
            ApiError::Store(_) | ApiError::StoreUnavailable => {
                (S::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            ApiError::OwnerUnavailable => (S::SERVICE_UNAVAILABLE, "owner_unavailable"),
            ApiError::SmsInboundDisabled => (S::NOT_FOUND, "sms_inbound_disabled"),
            ApiError::BadSecret => (S::UNAUTHORIZED, "bad_secret"),
            ApiError::BadRecordingName => (S::BAD_REQUEST, "bad_recording_name"),
            ApiError::RecordingNotFound => (S::NOT_FOUND, "recording_not_found"),
            ApiError::AdminCredentialsRequired => (S::UNAUTHORIZED, "admin_credentials_required"),
            ApiError::AdminTokenInvalid => (S::UNAUTHORIZED, "admin_token_invalid"),
            ApiError::AdminDisabled => (S::FORBIDDEN, "admin_disabled"),
            ApiError::OriginNotAllowed => (S::FORBIDDEN, "origin_not_allowed"),
            ApiError::ClientIdReserved => (S::FORBIDDEN, "client_id_reserved"),
            ApiError::RateLimited(_) => (S::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::NoSuchEndpoint => (S::NOT_FOUND, "no_such_endpoint"),
            ApiError::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The JSON body (also sent as a WebSocket error event).
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_and_code();
        let message = match self {
            // Details of server faults stay in the logs.
            ApiError::Store(_) | ApiError::Internal(_) | ApiError::File(FileError::Io(_)) => {
                "the server could not do that now".to_string()
            }
            other => other.to_string(),
        };
        json!({"error": {"code": code, "message": message}})
    }
}

/// The code of an error response, for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, "{self:?}");
        } else {
            tracing::debug!(code, "{self}");
        }
        let mut response = (status, Json(self.body())).into_response();
        if let ApiError::LoginLocked(seconds) | ApiError::RateLimited(seconds) = self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response.extensions_mut().insert(ErrorCode(code));
        response
    }
}
