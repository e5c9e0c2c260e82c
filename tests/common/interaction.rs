//! A harness that drives one Interaction on a virtual clock.
#![allow(dead_code)] // each test file uses a part of the harness

use std::time::Duration;

use serde_json::json;
use tandem::bridge::{
    Accepted, Action, AgentId, Command, Customer, Event, EventKind, Interaction, InteractionId,
    JoinSecret, Party, RuleError, Rules, Time,
};

pub fn rules() -> Rules {
    Rules {
        service: "claims".into(),
        video_allowed: true,
        auto_dial: false,
        auto_dial_delay: Duration::ZERO,
        inactivity_timeout: Duration::from_secs(600),
        max_message_bytes: 65536,
        teardown_timeout: Duration::from_secs(32),
        call_request_timeout: Duration::from_secs(60),
        mask_dtmf: false,
        join_secret: JoinSecret::new(b"the test join key"),
        dial_plan: Default::default(),
    }
}

pub struct Harness {
    pub now: Time,
    pub it: Interaction,
    /// Every event drained so far.
    pub events: Vec<Event>,
    /// Every action drained so far.
    pub actions: Vec<Action>,
}

pub fn alice() -> Party {
    Party::Agent(AgentId::from("alice"))
}

impl Harness {
    pub fn new(rules: Rules) -> Harness {
        let now = Time(1_700_000_000_000);
        let customer = Customer {
            device: "dev-1".into(),
            name: Some("Carol".into()),
            phone: Some("+15550100".into()),
        };
        let it = Interaction::new(
            now,
            InteractionId::from("i-1"),
            rules,
            customer,
            json!({"policy": "P-1"}),
        );
        let mut h = Harness {
            now,
            it,
            events: Vec::new(),
            actions: Vec::new(),
        };
        h.drain();
        h
    }

    /// A chat accepted by alice.
    pub fn active(rules: Rules) -> Harness {
        let mut h = Harness::new(rules);
        h.ok(
            Party::System,
            Command::Offer {
                agent: AgentId::from("alice"),
            },
        );
        h.ok(
            alice(),
            Command::Accept {
                display_name: "Alice".into(),
            },
        );
        h
    }

    pub fn drain(&mut self) {
        while let Some(e) = self.it.poll_event() {
            self.events.push(e);
        }
        while let Some(a) = self.it.poll_action() {
            self.actions.push(a);
        }
    }

    pub fn cmd(&mut self, by: Party, command: Command) -> Result<Accepted, RuleError> {
        let r = self.it.handle_command(self.now, &by, command);
        self.drain();
        r
    }

    pub fn ok(&mut self, by: Party, command: Command) -> Accepted {
        let what = format!("{command:?}");
        self.cmd(by, command)
            .unwrap_or_else(|e| panic!("{what} refused: {}", e.code()))
    }

    /// Refused with this code, and nothing was emitted.
    pub fn refused(&mut self, by: Party, command: Command, code: &str) {
        let before = (self.events.len(), self.actions.len());
        let err = self.cmd(by, command).expect_err("should be refused");
        assert_eq!(err.code(), code);
        assert_eq!((self.events.len(), self.actions.len()), before);
    }

    /// Advances the virtual clock to the next deadline and fires it.
    pub fn progress(&mut self) -> bool {
        match self.it.poll_timeout() {
            Some(at) => {
                assert!(at >= self.now, "timers never go backwards");
                self.now = at;
                self.it.handle_timeout(at);
                self.drain();
                true
            }
            None => false,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.it.handle_timeout(self.now);
        self.drain();
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.events.iter().map(|e| e.kind.name()).collect()
    }

    pub fn last(&self) -> &EventKind {
        &self.events.last().expect("an event").kind
    }
}
