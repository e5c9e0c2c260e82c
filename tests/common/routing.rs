//! A harness that drives the router on a virtual clock.
#![allow(dead_code)] // each test file uses a part of the harness

use std::collections::HashMap;
use std::time::Duration;

use tandem::bridge::{AgentId, InteractionId, Time};
use tandem::config::RoutingMode;
use tandem::routing::router::{
    AgentSpec, MobileDuty, Output, Presence, Router, ServiceSpec, Settings, Via, WithdrawReason,
};

pub fn settings() -> Settings {
    Settings {
        chat_load: 25,
        call_load: 100,
        offer_timeout: Duration::from_secs(20),
        max_wait: Duration::from_secs(300),
        reconnect_grace: Duration::from_secs(30),
        status_interval: Duration::from_secs(10),
        default_handle_time: Duration::from_secs(300),
        initial_presence: Presence::Away,
    }
}

pub fn agent(name: &str, capacity: u32) -> AgentSpec {
    AgentSpec {
        id: AgentId::from(name),
        departments: vec!["claims".into()],
        capacity,
        mobile: MobileDuty::Never,
    }
}

pub fn id(s: &str) -> AgentId {
    AgentId::from(s)
}
pub fn chat(s: &str) -> InteractionId {
    InteractionId::from(s)
}

pub struct Harness {
    pub now: Time,
    pub router: Router,
    pub outputs: Vec<Output>,
}

impl Harness {
    /// One service `claims` in `mode`, with these agents.
    pub fn new(mode: RoutingMode, agents: Vec<AgentSpec>) -> Harness {
        Harness::with(settings(), mode, agents)
    }

    pub fn with(settings: Settings, mode: RoutingMode, agents: Vec<AgentSpec>) -> Harness {
        let now = Time(1_700_000_000_000);
        let services = HashMap::from([(
            "claims".to_string(),
            ServiceSpec {
                department: "claims".into(),
                mode,
            },
        )]);
        Harness {
            now,
            router: Router::new(settings, services, agents, now),
            outputs: Vec::new(),
        }
    }

    pub fn drain(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        while let Some(o) = self.router.poll_output() {
            out.push(o);
        }
        self.outputs.extend(out.clone());
        out
    }

    /// Connects the agents and makes them available.
    pub fn available(&mut self, names: &[&str]) -> Vec<Output> {
        for name in names {
            self.router.handle_connect(self.now, &id(name)).unwrap();
            self.router
                .handle_presence(self.now, &id(name), Presence::Available)
                .unwrap();
        }
        self.drain()
    }

    pub fn new_chat(&mut self, name: &str) -> Vec<Output> {
        self.router.handle_new_chat(self.now, chat(name), "claims");
        self.drain()
    }

    /// Advances the virtual clock to the next deadline and fires it.
    pub fn progress(&mut self) -> Vec<Output> {
        let at = self.router.poll_timeout().expect("a timer is armed");
        assert!(at >= self.now, "timers never go backwards");
        self.now = at;
        self.router.handle_timeout(at);
        self.drain()
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Output> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(at) = self.router.poll_timeout().filter(|at| *at <= end) {
            self.now = at.max(self.now);
            self.router.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = end;
        out
    }
}

pub fn offer(c: &str, a: &str) -> Output {
    Output::Offer {
        chat: chat(c),
        agent: id(a),
        via: Via::Desktop,
    }
}

pub fn sms(c: &str, a: &str) -> Output {
    Output::Offer {
        chat: chat(c),
        agent: id(a),
        via: Via::Sms,
    }
}

pub fn withdraw(c: &str, a: &str, reason: WithdrawReason) -> Output {
    Output::Withdraw {
        chat: chat(c),
        agent: id(a),
        reason,
    }
}

pub fn assign(c: &str, a: &str) -> Output {
    Output::Assign {
        chat: chat(c),
        agent: id(a),
    }
}

/// The offers among outputs, as (chat, agent).
pub fn offers(outputs: &[Output]) -> Vec<(String, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Offer { chat, agent, .. } => Some((chat.0.clone(), agent.0.clone())),
            _ => None,
        })
        .collect()
}
