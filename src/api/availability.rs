//! `GET availability`: whether a chat opened now would reach someone, and how long it would wait.
//!
//! Who would take the chat is the router's own answer ([`Router::staff`]): the available desk
//! agents when one of them has room, else the mobile operators on duty by SMS (if SMS can leave
//! at all: `sms.url`), else the available desk agents after all (they take the chat when a slot
//! frees). Reading the rule from the router keeps the answer true when the rule changes.
//!
//! The expected wait is zero while the staff have more free slots than chats waiting for them;
//! beyond that, the chats ahead share the staff's slots, each for the handle time
//! (`routing.default_handle_time_s`): `⌈ahead × handle time ÷ slots⌉`.
//!
//! [`Router::staff`]: crate::routing::router::Router::staff

use crate::routing::router::{Staff, Via};

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

/// The availability of a department whose staff routing reports as `staff`; `sms_leaves` says
/// whether texts can be sent, `handle_s` is the time one chat takes.
pub fn estimate(staff: &Staff, sms_leaves: bool, handle_s: u64) -> Availability {
    let by_sms = staff.via == Via::Sms && sms_leaves && !staff.sms.is_empty();
    let group = if by_sms { &staff.sms } else { &staff.desk };
    if group.is_empty() {
        return Availability::Unavailable;
    }
    let slots: u64 = group.iter().map(|s| u64::from(s.total)).sum();
    let free: u64 = group.iter().map(|s| u64::from(s.free)).sum();
    let queued = staff.waiting as u64;
    if queued < free {
        return Availability::Available { ewt_s: 0 };
    }
    let ahead = queued + 1 - free;
    Availability::Available {
        ewt_s: (ahead * handle_s).div_ceil(slots.max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::router::Slots;

    fn slots(of: &[(u32, u32)]) -> Vec<Slots> {
        of.iter()
            .map(|&(total, free)| Slots { total, free })
            .collect()
    }

    fn staff(via: Via, group: &[(u32, u32)], waiting: usize) -> Staff {
        let (desk, sms) = match via {
            Via::Desktop => (slots(group), Vec::new()),
            Via::Sms => (Vec::new(), slots(group)),
        };
        Staff {
            via,
            desk,
            sms,
            waiting,
        }
    }

    #[test]
    fn nobody_to_take_it_is_unavailable() {
        assert_eq!(
            estimate(&staff(Via::Desktop, &[], 0), true, 300),
            Availability::Unavailable
        );
    }

    #[test]
    fn a_free_agent_at_a_desk_answers_at_once() {
        assert_eq!(
            estimate(&staff(Via::Desktop, &[(4, 4)], 0), false, 300),
            Availability::Available { ewt_s: 0 }
        );
    }

    #[test]
    fn operators_answer_by_sms_only_when_sms_can_leave() {
        let operators = staff(Via::Sms, &[(4, 4)], 0);
        assert_eq!(
            estimate(&operators, true, 300),
            Availability::Available { ewt_s: 0 }
        );
        assert_eq!(estimate(&operators, false, 300), Availability::Unavailable);
        // Without SMS, a full desk agent still takes the chat when a slot frees.
        let full_desk = Staff {
            desk: slots(&[(4, 0)]),
            ..operators
        };
        assert_eq!(
            estimate(&full_desk, false, 300),
            Availability::Available { ewt_s: 75 }
        );
    }

    #[test]
    fn a_queue_beyond_the_free_slots_waits_its_share_of_the_handle_time() {
        // Alice has 4 slots (1 free), Bob 2 (none free): 6 slots, 1 free.
        let busy = |waiting| staff(Via::Desktop, &[(4, 1), (2, 0)], waiting);
        assert_eq!(
            estimate(&busy(0), false, 300),
            Availability::Available { ewt_s: 0 }
        );
        // One waiting takes the free slot; the next is one ahead: 300 s over 6 slots.
        assert_eq!(
            estimate(&busy(1), false, 300),
            Availability::Available { ewt_s: 50 }
        );
        assert_eq!(
            estimate(&busy(3), false, 300),
            Availability::Available { ewt_s: 150 }
        );
    }
}
