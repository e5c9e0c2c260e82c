//! The rules of an interaction, as refusals with stable codes.

/// A command the Interaction refused. Each variant is one rule of the domain; [`RuleError::code`]
/// is the stable machine-readable code clients see (the API maps it to HTTP in one place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RuleError {
    /// The interaction is closing or closed; nothing more can happen in it.
    #[error("the interaction is closed")]
    InteractionClosed,
    /// Calls and video exist only inside an active chat (an agent has accepted it).
    #[error("the chat is not active yet")]
    NotActive,
    /// An agent may not disconnect the chat while a call or video leg is up: release it first.
    #[error("release the call before disconnecting the chat")]
    ReleaseCallBeforeChat,
    /// The agent can only end the whole session; dropping video alone is the customer's choice.
    #[error("only the customer may drop video alone")]
    OnlyCustomerMayDropVideo,
    /// Video is offered to the app only after the agent allowed it.
    #[error("video requires the agent's approval")]
    VideoRequiresAgentApproval,
    /// A call is offered to the app only after the agent accepted the customer's request.
    #[error("the call requires the agent's acceptance")]
    CallRequiresAgentApproval,
    /// The interaction's service does not allow video.
    #[error("video is not allowed for this service")]
    VideoNotAllowed,
    /// Allow/decline without a pending video request.
    #[error("there is no pending video request")]
    NoVideoRequest,
    /// One call at a time: a voice leg is already up or being set up.
    #[error("a call is already in progress")]
    CallInProgress,
    /// Accept/decline of a call without a pending call request.
    #[error("there is no pending call request")]
    NoCallRequest,
    /// Release of a call that does not exist.
    #[error("there is no call to release")]
    NoCall,
    /// Auto-dial or a call to the customer's phone without a phone number.
    #[error("the customer has no phone number")]
    NoPhoneNumber,
    /// A phone number that is not one: E.164 (`+` and 8 to 15 digits) or the service's
    /// national form.
    #[error("not a phone number")]
    InvalidNumber,
    /// A phone number the service's dial plan does not allow (premium ranges, other countries,
    /// international dialling prefixes).
    #[error("the service may not dial this number")]
    NumberNotAllowed,
    /// The chat was already accepted by an agent.
    #[error("the chat was already accepted")]
    AlreadyAccepted,
    /// The party may not do this (a customer acting as an agent, another agent, …).
    #[error("this party may not do that")]
    NotPermitted,
    /// A call joining a chat by caller id came from elsewhere than a trunk, so nobody vouches
    /// for its number: it needs the chat's join token.
    #[error("the caller id is not vouched for by a trunk")]
    CallerNotVouched,
    /// A message with no text.
    #[error("the message is empty")]
    EmptyMessage,
    /// A message over the configured size cap.
    #[error("the message is longer than {max} bytes")]
    MessageTooLong { max: usize },
    /// A receipt for a message that does not exist (or was sent by the same party).
    #[error("no such message")]
    UnknownMessage,
    /// A leg report for a leg that does not exist or has ended.
    #[error("no such leg")]
    UnknownLeg,
    /// A call carried a join token that is not the chat's.
    #[error("the join token is not this chat's")]
    BadJoinToken,
}

impl From<super::NumberError> for RuleError {
    fn from(e: super::NumberError) -> RuleError {
        match e {
            super::NumberError::Invalid => RuleError::InvalidNumber,
            super::NumberError::NotAllowed => RuleError::NumberNotAllowed,
        }
    }
}

impl RuleError {
    /// The stable code clients and logs see.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::InteractionClosed => "interaction_closed",
            RuleError::NotActive => "interaction_not_active",
            RuleError::ReleaseCallBeforeChat => "release_call_before_chat",
            RuleError::OnlyCustomerMayDropVideo => "only_customer_may_drop_video",
            RuleError::VideoRequiresAgentApproval => "video_requires_agent_approval",
            RuleError::CallRequiresAgentApproval => "call_requires_agent_approval",
            RuleError::VideoNotAllowed => "video_not_allowed",
            RuleError::NoVideoRequest => "no_video_request",
            RuleError::CallInProgress => "call_in_progress",
            RuleError::NoCallRequest => "no_call_request",
            RuleError::NoCall => "no_call",
            RuleError::NoPhoneNumber => "no_phone_number",
            RuleError::InvalidNumber => "invalid_number",
            RuleError::NumberNotAllowed => "number_not_allowed",
            RuleError::AlreadyAccepted => "already_accepted",
            RuleError::NotPermitted => "not_permitted",
            RuleError::CallerNotVouched => "caller_not_vouched",
            RuleError::EmptyMessage => "empty_message",
            RuleError::MessageTooLong { .. } => "message_too_long",
            RuleError::UnknownMessage => "unknown_message",
            RuleError::UnknownLeg => "unknown_leg",
            RuleError::BadJoinToken => "bad_join_token",
        }
    }
}
