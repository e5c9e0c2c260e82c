//! Budgets of the connections a customer holds open: WebSockets and long polls.
//!
//! Agents and customers draw from separate pools (`http.max_agent_websockets` against
//! `http.max_websockets` and `http.max_long_polls`), so no number of customers' sockets can
//! lock an agent out of the desktop. Within the customers' pools each chat and each device
//! (`clientId`) has a budget of its own (`http.max_connections_per_chat`,
//! `http.max_connections_per_device`), so one customer cannot take the pool from the others;
//! the per-address connection cap of the listener bounds a client that invents devices.
//!
//! [`Budgets`] only counts; a [`Slot`] gives its place back when dropped, however the
//! connection ends. The maps hold only chats and devices with a connection open, so they are
//! bounded by the pools.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;
use crate::bridge::InteractionId;

/// A place in the pool `pool` (of `what`), held until dropped; `too_many` when it is full.
pub fn permit(pool: &Arc<Semaphore>, what: &'static str) -> Result<OwnedSemaphorePermit, ApiError> {
    pool.clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::TooMany(what))
}

/// Which budget a refused connection would have gone over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The chat already has `max_connections_per_chat` sockets and polls open.
    #[error("this chat has {0} connections open, the most it may")]
    Chat(usize),
    /// The device already has `max_connections_per_device` sockets and polls open.
    #[error("this device has {0} connections open, the most it may")]
    Device(usize),
}

impl BudgetError {
    /// The stable code clients see (with `429`).
    pub fn code(&self) -> &'static str {
        match self {
            BudgetError::Chat(_) => "too_many_connections_for_chat",
            BudgetError::Device(_) => "too_many_connections_for_device",
        }
    }
}

#[derive(Default)]
struct Counts {
    chats: HashMap<InteractionId, usize>,
    devices: HashMap<String, usize>,
}

/// The per-chat and per-device counts of customers' open connections.
pub struct Budgets {
    per_chat: usize,
    per_device: usize,
    counts: Mutex<Counts>,
}

/// One connection's place in its chat's and device's budgets, given back on drop.
pub struct Slot {
    budgets: Arc<Budgets>,
    chat: InteractionId,
    device: String,
}

impl Budgets {
    pub fn new(per_chat: usize, per_device: usize) -> Arc<Budgets> {
        Arc::new(Budgets {
            per_chat,
            per_device,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A place for one more connection of `device` to `chat`, if both budgets have room.
    pub fn take(self: &Arc<Self>, chat: &InteractionId, device: &str) -> Result<Slot, BudgetError> {
        let mut counts = self.counts.lock().expect("budgets");
        let on_chat = counts.chats.get(chat).copied().unwrap_or(0);
        let on_device = counts.devices.get(device).copied().unwrap_or(0);
        if on_device >= self.per_device {
            return Err(BudgetError::Device(self.per_device));
        }
        if on_chat >= self.per_chat {
            return Err(BudgetError::Chat(self.per_chat));
        }
        *counts.chats.entry(chat.clone()).or_default() += 1;
        *counts.devices.entry(device.to_string()).or_default() += 1;
        Ok(Slot {
            budgets: self.clone(),
            chat: chat.clone(),
            device: device.to_string(),
        })
    }

    /// Connections open on `chat`.
    #[cfg(test)]
    fn on_chat(&self, chat: &InteractionId) -> usize {
        let counts = self.counts.lock().expect("budgets");
        counts.chats.get(chat).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.budgets.counts.lock().expect("budgets");
        release(&mut counts.chats, &self.chat);
        release(&mut counts.devices, &self.device);
    }
}

/// One less under `key`; a key at zero is forgotten.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(n: u32) -> InteractionId {
        InteractionId(format!("chat-{n}"))
    }

    #[test]
    fn a_chat_and_a_device_each_have_their_budget_and_get_it_back() {
        let budgets = Budgets::new(2, 3);
        let a1 = budgets.take(&chat(1), "phone").unwrap();
        let _a2 = budgets.take(&chat(1), "phone").unwrap();
        assert_eq!(
            budgets.take(&chat(1), "phone").err(),
            Some(BudgetError::Chat(2))
        );
        let _b1 = budgets.take(&chat(2), "phone").unwrap();
        assert_eq!(
            budgets.take(&chat(2), "phone").err(),
            Some(BudgetError::Device(3))
        );
        // Another device is not held back by this one.
        let _other = budgets.take(&chat(3), "tablet").unwrap();
        drop(a1);
        assert_eq!(budgets.on_chat(&chat(1)), 1);
        let _again = budgets.take(&chat(2), "phone").unwrap();
    }

    #[test]
    fn released_chats_and_devices_are_forgotten() {
        let budgets = Budgets::new(1, 1);
        for n in 0..100 {
            drop(budgets.take(&chat(n), &format!("device-{n}")).unwrap());
        }
        let counts = budgets.counts.lock().unwrap();
        assert!(counts.chats.is_empty() && counts.devices.is_empty());
    }
}
