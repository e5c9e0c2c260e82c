//! The chat tests in one binary: one link instead of one per file, and the harness
//! compiled once. Each module is one behaviour; the helpers live in `tests/common/`.

#![allow(dead_code)]

#[path = "../common/agent_desk.rs"]
mod agent_desk;
#[path = "../common/api.rs"]
mod api;
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/interaction.rs"]
mod interaction;
#[path = "../common/operator.rs"]
mod operator;
#[path = "../common/picture.rs"]
mod picture;
#[path = "../common/postgres.rs"]
mod postgres;
#[path = "../common/restart.rs"]
mod restart;
#[path = "../common/routing.rs"]
mod routing;
#[path = "../common/sms.rs"]
mod sms;
#[path = "../common/stalling.rs"]
mod stalling;
#[path = "../common/store.rs"]
mod store;

mod admin_needs_credentials;
mod agent_disconnect_chat_refused_while_call_up;
mod agent_file_quota;
mod agent_logins_are_slowed_down;
mod agent_ring_all_end_to_end;
mod agent_tabs_share_offers_and_accepts;
mod api_admin;
mod api_agent_desk_views;
mod api_agent_settings;
mod api_customer_availability;
mod api_customer_chat;
mod api_customer_cors;
mod api_customer_errors;
mod api_customer_file_quota;
mod api_customer_files;
mod api_customer_history_paged;
mod api_customer_lenient_json;
mod api_customer_limits_in_parallel;
mod api_customer_phone_number_validated;
mod api_customer_socket_ticket;
mod api_socket_budgets_keep_agents_in;
mod api_websocket_resume;
mod calls_go_on_while_one_store_stalls;
mod chat_creation_is_rate_limited_per_source;
mod chat_files_expire_after_retention;
mod cli_check_config;
mod dial_plan_refuses_toll_fraud_and_injection;
mod http_flood_leaves_sip_and_health_working;
mod interaction_agent_gone;
mod interaction_allow_video_before_accept;
mod interaction_call_requests;
mod interaction_inactivity;
mod interaction_messages;
mod interaction_phone_call_request_to_a_number;
mod interaction_phone_calls_in;
mod interaction_rules;
mod interaction_teardown;
mod logs_escape_what_clients_send;
mod malformed_requests_get_clear_answers;
mod metrics_show_no_leaked_calls;
mod mobile_link_survives_restart;
mod mobile_operator_calls_and_requests;
mod mobile_operator_files_and_devices;
mod mobile_operators_round_robin_by_sms;
mod mobile_operators_take_chats_by_sms;
mod mobile_schedule_across_time_zones;
mod offers_are_shown_while_they_are_stored;
mod opening_a_chat_fails_fast_while_the_store_stalls;
mod restart_kill9;
mod routing_agent_drops;
mod routing_capacity;
mod routing_follows_every_new_interaction;
mod routing_presence_staffs_the_department;
mod routing_queue_and_ewt;
mod routing_ring_all_burst;
mod routing_ring_all_race;
mod routing_round_robin;
mod run_announces_itself;
mod sigterm_ends_open_chats_in_order;
mod sigterm_stops_gracefully;
mod sms_customer_channel;
mod sms_provider_retries_with_backoff;
mod store_postgres;
mod store_sqlite;
mod webchat_store;
