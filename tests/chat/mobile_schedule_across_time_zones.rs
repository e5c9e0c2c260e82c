//! Mobile operators by schedule: weekly hours in an IANA time zone, daylight saving time and
//! shifts past midnight included; on duty they get SMS offers only while nobody of the
//! department is at a desktop.

use crate::routing;

use routing::*;
use tandem::config::{HoursRange, RoutingMode, WeeklySchedule};
use tandem::routing::router::{MobileDuty, WithdrawReason};

/// Milliseconds of a UTC date-time.
fn utc(s: &str) -> u64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

fn schedule(tz: &str, days: &[&str], from: &str, to: &str) -> WeeklySchedule {
    WeeklySchedule {
        time_zone: tz.into(),
        hours: vec![HoursRange {
            days: days.iter().map(|d| d.to_string()).collect(),
            from: from.into(),
            to: to.into(),
        }],
    }
}

#[test]
fn hours_are_local_to_the_zone_through_daylight_saving_time() {
    let paris = schedule(
        "Europe/Paris",
        &["mon", "tue", "wed", "thu", "fri"],
        "09:00",
        "17:00",
    );
    // Winter (UTC+1): 09:00 in Paris is 08:00 UTC.
    assert!(!paris.is_open(utc("2024-01-15T07:59:59Z")));
    assert!(paris.is_open(utc("2024-01-15T08:00:00Z")));
    assert!(!paris.is_open(utc("2024-01-15T16:00:00Z")));
    // Summer (UTC+2): 09:00 in Paris is 07:00 UTC.
    assert!(paris.is_open(utc("2024-07-15T07:00:00Z")));
    assert!(!paris.is_open(utc("2024-07-15T15:00:00Z")));
    // Saturday in Paris, even when it is still Friday in New York.
    assert!(!paris.is_open(utc("2024-01-20T08:30:00Z")));
    let new_york = schedule("America/New_York", &["fri"], "20:00", "23:00");
    // Friday 21:00 in New York is Saturday 02:00 UTC.
    assert!(new_york.is_open(utc("2024-01-20T02:00:00Z")));
    assert!(!paris.is_open(utc("2024-01-20T02:00:00Z")));
}

#[test]
fn a_night_shift_runs_past_midnight_into_the_next_day() {
    let tokyo = schedule("Asia/Tokyo", &["mon"], "22:00", "06:00");
    // Monday 23:00 and Tuesday 05:59 in Tokyo (UTC+9).
    assert!(tokyo.is_open(utc("2024-01-15T14:00:00Z")));
    assert!(tokyo.is_open(utc("2024-01-15T20:59:00Z")));
    assert!(!tokyo.is_open(utc("2024-01-15T21:00:00Z")));
    // Sunday 23:00 is not Monday's shift.
    assert!(!tokyo.is_open(utc("2024-01-14T14:00:00Z")));
}

#[test]
fn operators_on_duty_get_sms_only_while_nobody_is_at_a_desk() {
    let mut on_call = agent("olga", 100);
    // On duty Monday 18:00–08:00 in Paris.
    on_call.mobile = MobileDuty::Schedule(schedule("Europe/Paris", &["mon"], "18:00", "08:00"));
    let mut always = agent("omar", 100);
    always.mobile = MobileDuty::Always;
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), on_call, always],
    );

    // Monday 2024-01-15 16:59 UTC = 17:59 in Paris: only omar is on duty.
    h.now = tandem::bridge::Time(utc("2024-01-15T16:59:00Z"));
    assert_eq!(h.new_chat("c1"), vec![sms("c1", "omar")]);
    // The SMS offer expires with the offer timeout; by then olga's shift has begun.
    h.now = tandem::bridge::Time(utc("2024-01-15T17:00:00Z"));
    h.router.handle_timeout(h.now);
    assert_eq!(offers(&h.drain()), vec![("c1".into(), "olga".into())]);

    // Omar logs in to the desktop: no more SMS for him, and he can pick up the waiting chat.
    // Not ready yet, he does not staff the department: a new chat is still texted to olga.
    h.router.handle_connect(h.now, &id("omar")).unwrap();
    h.drain();
    assert_eq!(h.new_chat("c2"), vec![sms("c2", "olga")]);
    h.router
        .handle_accept(h.now, &chat("c1"), &id("omar"))
        .unwrap();
    let out = h.drain();
    assert!(out.contains(&withdraw("c1", "olga", WithdrawReason::Taken)));
    assert!(out.contains(&assign("c1", "omar")));
}
