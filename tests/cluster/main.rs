//! Several nodes as one: PostgreSQL, `nats-server`, Kamailio and Tandem nodes on loopback. Each module
//! is one behaviour; the helpers live in `nodes.rs` and `tests/common/`.

#![allow(dead_code)]

#[path = "../common/agent_desk.rs"]
mod agent_desk;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/kamailio.rs"]
mod kamailio;
#[path = "../common/postgres.rs"]
mod postgres;
#[path = "../common/sms.rs"]
mod sms;
#[path = "../common/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "../common/webrtc.rs"]
mod webrtc_client;

mod nodes;

mod agent_token_on_every_node;
mod call_on_a_dead_owner;
mod chat_through_any_node;
mod cut_off_node_fences_itself;
mod owner_killed_is_taken_over;
mod routing_across_nodes;
mod routing_leader_killed;
mod sigterm_hands_the_chat_over;
mod sms_offer_once;
mod stale_owner_is_fenced;
mod three_nodes_end_to_end;
