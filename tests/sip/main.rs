//! The sip tests in one binary: one link instead of one per file, and the harness
//! compiled once. Each module is one behaviour; the helpers live in `tests/common/`.

#![allow(dead_code)]

#[path = "../common/agent_desk.rs"]
mod agent_desk;
#[path = "../common/certs.rs"]
mod certs;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/desk.rs"]
mod desk;
#[path = "../common/desk_phone.rs"]
mod desk_phone;
#[path = "../common/kamailio.rs"]
mod kamailio;
#[path = "../common/media_common.rs"]
mod media_common;
#[path = "../common/postgres.rs"]
mod postgres;
#[path = "../common/softphones.rs"]
mod softphones;
#[path = "../common/trunk_call.rs"]
mod trunk_call;
#[path = "../common/webrtc.rs"]
mod webrtc_client;

mod baresip_answers_bridged_call;
mod call_faults;
mod click_to_call_sipp_softphone;
mod click_to_call_sipp_trunk;
mod cluster_call_reaches_interaction_owner;
mod cluster_kamailio_dispatches_over_live_nodes;
mod cluster_registrations_are_shared;
mod echo_media_returns_every_packet;
mod kamailio_in_front;
mod media_engine_accounts_for_every_packet;
mod media_engine_bridge_rewrites_streams;
mod media_engine_counts_packets_in_flight_at_close;
mod media_engine_echo_reports_its_own_stream;
mod media_engine_hands_rtp_to_our_own_sockets_in_memory;
mod media_engine_latches_nat_source;
mod media_engine_records_bridged_call;
mod media_engine_rejects_hijack;
mod media_engine_reports_dtmf;
mod media_engine_reuses_a_closed_legs_sockets;
mod media_engine_sends_rtcp_reports;
mod media_engine_serves_other_legs_during_a_flood;
mod media_engine_transcodes_pcmu_to_pcma;
mod media_inactivity_ends_the_call;
mod phone_calls_service_number;
mod sip_digest_algorithms_per_account;
mod sip_echo_is_a_switch;
mod sip_invite_flood_leaves_calls_from_others_working;
mod sip_join_by_caller_id_needs_a_trunk;
mod sip_register_guessing_is_locked_out;
mod sip_tcp_limits_per_source;
mod sip_tls_certificate_reload;
mod sip_tls_softphone_agent;
mod sip_tls_srtp_sdes;
mod sip_tls_trunk;
mod sip_torture_messages;
mod sip_trunk_digest_auth;
mod sipp_bridged_call;
mod sipp_call_limit_503;
mod sipp_cancel_while_ringing;
mod sipp_echo_call_tcp;
mod sipp_echo_call_udp;
mod sipp_hold_reinvite;
mod sipp_options;
mod sipp_pcap_echo;
mod sipp_register_digest;
mod sipp_session_refresh_by_update;
mod tcp_connection_limits;
mod webrtc_app_allow_video_before_accept;
mod webrtc_app_call_request_rejected;
mod webrtc_app_call_sipp_softphone;
mod webrtc_app_consent_timeout;
mod webrtc_app_customer_drops_video;
mod webrtc_app_end_session_with_video;
mod webrtc_app_video_after_allow;
mod webrtc_app_video_declined;
mod webrtc_app_voice_both_ways;
mod webrtc_client_selftest;
