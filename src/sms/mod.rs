//! SMS: how texts are cut into segments ([`gsm`]), the provider that sends them
//! ([`provider`]), mobile operators who take chats from a link in an SMS ([`mobile`]), and SMS
//! as a customer channel ([`channel`]).
//!
//! The mobile chat page and its JSON API on the link's token live with the other HTTP routes
//! in `api/mobile.rs`.

pub(crate) mod channel;
pub mod gsm;
pub(crate) mod mobile;
pub mod provider;
