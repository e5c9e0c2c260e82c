//! SMS: how texts are cut into segments ([`gsm`]).

pub mod gsm;
