//! `GET availability`: whether a chat opened now would reach someone, and how long it would wait.
//!
//! The answer comes from routing (presence and load of the department's agents, the chats
//! waiting), read with the router's own rule for who takes a department's chats: the agents at
//! a desk who are `available` (a chat queues for them even when they are full: they take it
//! when a slot frees); when none of its agents has a desk open, the mobile operators on duty,
//! by SMS, if SMS can leave at all (`sms.url`). Agents away or busy at their desks take
//! nothing, and, as the router has it, keep operators from being texted. Should the router's
//! rule for a staffed department change, [`estimate`] changes with it.
//!
//! The expected wait is zero while the staff have more free slots than chats waiting for them;
//! beyond that, the chats ahead share the staff's slots, each for the handle time
//! (`routing.default_handle_time_s`): `⌈ahead × handle time ÷ slots⌉`.

use crate::config::{AgentConfig, Config, MobileMode};
use crate::routing::driver::Staffing;
use crate::routing::router::Presence;

/// What a customer about to open a chat is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Someone could take the chat; the expected wait in seconds.
    Available { ewt_s: u64 },
    /// Nobody could take it now.
    Unavailable,
}

/// What the customer is told when nobody could answer.
pub const NOBODY: &str = "Nobody is available to answer now. Please try again later.";

/// The availability of `department` given what routing says of its agents (`staffing`) and
/// the departments of the chats waiting (`waiting`, one entry per chat), at `now_ms`.
pub fn estimate(
    config: &Config,
    department: &str,
    staffing: &Staffing,
    waiting: &[&str],
    now_ms: u64,
) -> Availability {
    let chat_load = config.routing.chat_load_percent.max(1);
    let members: Vec<(&AgentConfig, Presence, u32)> = config
        .agents
        .iter()
        .filter(|a| a.departments.iter().any(|d| d == department))
        .filter_map(|a| {
            let s = staffing.agents.iter().find(|s| s.agent.0 == a.name)?;
            Some((a, s.presence, s.load))
        })
        .collect();
    let at_desk = members.iter().any(|(_, p, _)| *p != Presence::Offline);
    let sms_leaves = config.sms.url.is_some();
    let staff: Vec<(u32, u32)> = members
        .iter()
        .filter(|(a, presence, _)| {
            if at_desk {
                *presence == Presence::Available
            } else {
                sms_leaves && a.mobile.is_some() && on_duty(a, now_ms)
            }
        })
        .map(|(a, _, load)| {
            let slots = (a.capacity_percent / chat_load).max(1);
            let free = a.capacity_percent.saturating_sub(*load) / chat_load;
            (slots, free)
        })
        .collect();
    if staff.is_empty() {
        return Availability::Unavailable;
    }
    let slots: u64 = staff.iter().map(|(s, _)| u64::from(*s)).sum();
    let free: u64 = staff.iter().map(|(_, f)| u64::from(*f)).sum();
    let queued = waiting.iter().filter(|d| **d == department).count() as u64;
    if queued < free {
        return Availability::Available { ewt_s: 0 };
    }
    let ahead = queued + 1 - free;
    let handle_s = config.routing.default_handle_time_s;
    Availability::Available {
        ewt_s: (ahead * handle_s).div_ceil(slots.max(1)),
    }
}

/// Whether a mobile operator takes offers by SMS at `now_ms`.
fn on_duty(agent: &AgentConfig, now_ms: u64) -> bool {
    match (agent.mobile_mode, &agent.mobile_schedule) {
        (MobileMode::On, _) => true,
        (MobileMode::Schedule, Some(schedule)) => schedule.is_open(now_ms),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::AgentId;
    use crate::routing::driver::Staffed;

    fn config(sms: bool) -> Config {
        let url = if sms {
            "[sms]\nurl = \"http://127.0.0.1:9/sms\"\n"
        } else {
            ""
        };
        let hash = crate::routing::password::hash("x");
        Config::parse(&format!(
            r#"{url}
[routing]
chat_load_percent = 25
default_handle_time_s = 300

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]

[[agents]]
name = "bob"
password_hash = "{hash}"
departments = ["claims"]
capacity_percent = 50

[[agents]]
name = "olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"

[[agents]]
name = "sam"
password_hash = "{hash}"
departments = ["sales"]
"#
        ))
        .unwrap()
    }

    fn staffing(agents: &[(&str, Presence, u32)]) -> Staffing {
        Staffing {
            agents: agents
                .iter()
                .map(|(name, presence, load)| Staffed {
                    agent: AgentId::from(*name),
                    presence: *presence,
                    load: *load,
                })
                .collect(),
            waiting: Vec::new(),
        }
    }

    use Presence::{Available as On, Away, Offline as Off};

    #[test]
    fn nobody_logged_in_and_no_sms_is_unavailable() {
        let nobody = staffing(&[("alice", Off, 0), ("bob", Off, 0), ("olga", Off, 0)]);
        assert_eq!(
            estimate(&config(false), "claims", &nobody, &[], 0),
            Availability::Unavailable
        );
        // Another department's agent does not count.
        let other = staffing(&[("sam", On, 0)]);
        assert_eq!(
            estimate(&config(false), "claims", &other, &[], 0),
            Availability::Unavailable
        );
    }

    #[test]
    fn a_free_agent_at_a_desk_answers_at_once() {
        let alice = staffing(&[("alice", On, 0), ("bob", Off, 0), ("olga", Off, 0)]);
        assert_eq!(
            estimate(&config(false), "claims", &alice, &["claims", "sales"], 0),
            Availability::Available { ewt_s: 0 }
        );
    }

    #[test]
    fn agents_away_at_their_desks_take_nothing_and_keep_operators_from_being_texted() {
        let away = staffing(&[("alice", Away, 0), ("bob", Off, 0), ("olga", Off, 0)]);
        assert_eq!(
            estimate(&config(true), "claims", &away, &[], 0),
            Availability::Unavailable
        );
    }

    #[test]
    fn operators_on_duty_answer_by_sms_when_sms_can_leave() {
        let nobody = staffing(&[("alice", Off, 0), ("bob", Off, 0), ("olga", Off, 0)]);
        assert_eq!(
            estimate(&config(true), "claims", &nobody, &[], 0),
            Availability::Available { ewt_s: 0 }
        );
    }

    #[test]
    fn a_queue_beyond_the_free_slots_waits_its_share_of_the_handle_time() {
        // Alice has 4 slots (1 free), Bob 2 (none free): 6 slots, 1 free.
        let busy = staffing(&[("alice", On, 75), ("bob", On, 50), ("olga", Off, 0)]);
        let c = config(false);
        assert_eq!(
            estimate(&c, "claims", &busy, &[], 0),
            Availability::Available { ewt_s: 0 }
        );
        // One waiting takes the free slot; the next is one ahead: 300 s over 6 slots.
        assert_eq!(
            estimate(&c, "claims", &busy, &["claims"], 0),
            Availability::Available { ewt_s: 50 }
        );
        // Three waiting: three ahead.
        let waiting = ["claims", "claims", "claims", "sales"];
        assert_eq!(
            estimate(&c, "claims", &busy, &waiting, 0),
            Availability::Available { ewt_s: 150 }
        );
    }
}
