//! The pages tests in one binary: one link instead of one per file, and the harness
//! compiled once. Each module is one behaviour; the helpers live in `tests/common/`.

#![allow(dead_code)]

#[path = "../common/agent_desk.rs"]
mod agent_desk;
#[path = "../common/api.rs"]
mod api;
#[path = "../common/certs.rs"]
mod certs;
#[path = "../common/chat_browser.rs"]
mod chat_browser;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/customer_files.rs"]
mod customer_files;
#[path = "../common/desk.rs"]
mod desk;
#[path = "../common/desk_app_peer.rs"]
mod desk_app_peer;
#[path = "../common/desk_browser.rs"]
mod desk_browser;
#[path = "../common/desk_phone.rs"]
mod desk_phone;
#[path = "../common/browser.rs"]
mod mobile_browser;
#[path = "../common/picture.rs"]
mod picture;
#[path = "../common/sms.rs"]
mod sms;
#[path = "../common/tcp_proxy.rs"]
mod tcp_proxy;
#[path = "../common/webchat.rs"]
mod webchat;
#[path = "../common/webrtc.rs"]
mod webrtc_client;

mod both_sides_in_chromium;
mod desk_calls_on_softphone_and_mobile;
mod desk_chat_panel;
mod desk_click_to_call;
mod desk_context_area;
mod desk_dtmf_in_chat_panel;
mod desk_end_in_order;
mod desk_history;
mod desk_login_and_presence;
mod desk_mobile_settings;
mod desk_offers;
mod desk_video_with_consent;
mod desk_voice_in_browser;
mod mobile_operator_page_carries_the_interaction;
mod mobile_page_in_chromium;
mod sip_websocket_jssip_agent;
mod webchat_browser_call;
mod webchat_embedded_on_another_site;
mod webchat_leave_and_transcript;
mod webchat_location_and_context;
mod webchat_messages_and_files;
mod webchat_phone_call;
mod webchat_resume;
mod webchat_start_a_chat;
mod webrtc_chromium_app;
mod webrtc_chromium_through_softphone;
