//! SMS: how texts are cut into segments ([`gsm`]) and the provider that sends them
//! ([`provider`]).

pub mod gsm;
pub mod provider;
