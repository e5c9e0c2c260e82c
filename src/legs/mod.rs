//! Leg drivers: they carry out what an [`Interaction`](crate::bridge::Interaction) decides about
//! its media legs, and report back what happened to them.
//!
//! The Interaction owns every rule (who may call, when video may start, the teardown order); a
//! driver only turns [`Action::StartLeg`](crate::bridge::Action::StartLeg),
//! [`Action::ReleaseLeg`](crate::bridge::Action::ReleaseLeg) and
//! [`Action::Signal`](crate::bridge::Action::Signal) into peers, offers and media paths, and
//! answers with [`Command::LegUp`](crate::bridge::Command::LegUp) and
//! [`Command::LegReleased`](crate::bridge::Command::LegReleased). A release is always answered,
//! even for a leg the driver never knew, so a teardown never waits for nothing.
//!
//! [`driver::Driver`] decides (sans-IO, tested in memory); [`shell`] carries its operations out
//! with the WebRTC service and the SIP task, and delivers its reports to the interactions
//! through one queue per interaction, so an interaction whose store is slow delays only its
//! own reports, never another call's setup.

pub mod driver;
#[cfg(test)]
mod harness;
pub mod shell;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_replay;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bridge::{Action, AgentId, Customer, HeldCall, InteractionId, LegId, Party};
use crate::config::Config;
use crate::hub::{Hub, HubError};
use crate::media::codec::Codec;
use crate::routing::driver::Routing;
use crate::rtc::{MediaSpec, PeerId, RtcEvent, RtcService};
use crate::sip::core::{AppDial, AppLeg, CallRef, DialTarget};
use crate::sip::driver::{SipCallEvent, SipControl};
use crate::sip::peer::Peer;
use crate::sip::transaction::ServerTxId;
use driver::{LegError, PeerEvent, ReportError};
use serde_json::json;
use shell::{Interactions, Undelivered};

/// The hub delivers reports as [`Party::System`] commands; an interaction whose store is not
/// taking writes asks for the report again later ([`Undelivered::NotNow`]). An interaction a
/// call to a service number opens is routed like any other: routing follows the hub's new
/// interactions.
impl Interactions for Hub {
    async fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: crate::bridge::Command,
    ) -> Result<(), Undelivered> {
        match Hub::command(self, id, by, command).await {
            // Carried out; stored (and published) once the store returns.
            Ok(_) | Err(HubError::NotStored) => Ok(()),
            Err(HubError::Rule(rule)) => Err(Undelivered::Refused(ReportError::Rule(rule))),
            Err(HubError::NotFound | HubError::Closed | HubError::TooMany { .. }) => {
                Err(Undelivered::Refused(ReportError::Closed))
            }
            Err(
                HubError::StoreUnavailable
                | HubError::Store(_)
                | HubError::Moved
                | HubError::Unavailable,
            ) => Err(Undelivered::NotNow),
        }
    }

    async fn open_for_call(
        &self,
        number: &str,
        caller: &str,
        held: HeldCall,
    ) -> Result<InteractionId, LegError> {
        let config = self.config().clone();
        let service = config
            .service_for_number(number)
            .ok_or_else(|| LegError::NoService(number.to_string()))?;
        // The caller's number is the customer's phone (to call back); a withheld or odd one
        // is not, and such callers are not grouped as one "device".
        let phone = crate::config::valid_phone_number(caller).then(|| caller.to_string());
        let device = match &phone {
            Some(phone) => format!("phone:{phone}"),
            None => format!("phone:withheld-{}", crate::bridge::random_hex(8)),
        };
        let customer = Customer {
            device,
            name: None,
            phone,
        };
        // The offer's context shows the agent that this is a phone call, and from whom.
        let context = json!({"channel": "phone", "caller": caller, "number": number});
        let (id, _) = self
            .create_for_call(&service.name, customer, context, caller.to_string(), held)
            .await
            .map_err(|e| {
                tracing::warn!(%number, %caller, "cannot open an interaction: {e}");
                LegError::CannotOpen
            })?;
        tracing::info!(interaction = %id, service = %service.name, %caller, %number,
                       "phone call opened an interaction");
        Ok(id)
    }
}

impl shell::Peers for RtcService {
    type Id = PeerId;

    async fn create(&self, media: MediaSpec) -> Result<(PeerId, String), LegError> {
        Ok(self.create_peer(media).await?)
    }

    async fn answer(&self, peer: PeerId, sdp: String) -> Result<(), LegError> {
        Ok(self.accept_answer(peer, sdp).await?)
    }

    async fn set_video(&self, peer: PeerId, on: bool) -> Result<String, LegError> {
        Ok(RtcService::set_video(self, peer, on).await?)
    }

    async fn link(&self, a: PeerId, b: PeerId) -> Result<(), LegError> {
        Ok(self.connect(a, b).await?)
    }

    async fn bridge_rtp(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        codec: Codec,
    ) -> Result<(), LegError> {
        RtcService::bridge_rtp(self, peer, remote, codec).await?;
        Ok(())
    }

    async fn close(&self, peer: PeerId) {
        RtcService::close(self, peer).await;
    }

    fn ice_servers(&self) -> Vec<String> {
        RtcService::ice_servers(self).to_vec()
    }
}

/// Calls to agents' softphones and customers' phones through the SIP task; their events go to
/// the driver's channel.
struct SipPhones {
    pub control: SipControl,
    pub events: mpsc::UnboundedSender<SipCallEvent>,
    pub config: Arc<Config>,
    /// The agents' mobile numbers (their own settings, else the configuration's).
    pub routing: Routing,
}

impl SipPhones {
    /// The user part of the From of a service's calls: its caller id, else its name.
    fn caller_id(&self, service: &str) -> String {
        self.config
            .service(service)
            .and_then(|s| s.caller_id.clone())
            .unwrap_or_else(|| service.to_string())
    }

    async fn dial(&self, dial: AppDial) -> Result<(CallRef, SocketAddr), LegError> {
        let dialed = self.control.dial(dial, self.events.clone()).await?;
        Ok((dialed.call, dialed.media))
    }
}

impl shell::Phones for SipPhones {
    async fn dial_agent(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        self.dial(AppDial {
            target: DialTarget::Registered(agent.0.clone()),
            from_user: self.caller_id(service),
            extra_headers: service_headers(interaction, service),
        })
        .await
    }

    async fn dial_mobile(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        let mobile = self
            .routing
            .mobile_number(agent)
            .ok_or_else(|| LegError::NoMobile(agent.clone()))?;
        self.dial_number(&mobile, interaction, service).await
    }

    async fn dial_number(
        &self,
        number: &str,
        interaction: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        let config = self.config.service(service);
        let no_trunk = || LegError::NoTrunk(service.to_string());
        let trunk_name = config
            .and_then(|s| s.trunk.as_deref())
            .ok_or_else(no_trunk)?;
        let trunk = self
            .config
            .sip
            .trunks
            .iter()
            .find(|t| t.name == trunk_name)
            .ok_or_else(no_trunk)?;
        // The first address is the next hop; a bare IP means the SIP port.
        let first = trunk
            .addresses
            .first()
            .ok_or_else(|| LegError::BadTrunk(trunk_name.to_string()))?;
        let hop: SocketAddr = first
            .parse()
            .or_else(|_| first.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 5060)))
            .map_err(|_| LegError::BadTrunk(first.clone()))?;
        // The Request-URI carries the number and nothing else: only E.164 (`+` and digits)
        // is written into it, whatever reached this far.
        let bad_number = || LegError::BadNumber(number.to_string());
        let number = crate::bridge::E164::parse(number).map_err(|_| bad_number())?;
        let uri =
            rsipstack::sip::parse_uri(&format!("sip:{number}@{hop}")).map_err(|_| bad_number())?;
        self.dial(AppDial {
            target: DialTarget::Uri {
                uri,
                via: Peer::udp(hop),
            },
            from_user: self.caller_id(service),
            extra_headers: service_headers(interaction, service),
        })
        .await
    }

    async fn hangup(&self, call: CallRef) {
        self.control.hangup(call).await;
    }

    async fn accept_incoming(
        &self,
        incoming: ServerTxId,
    ) -> Result<(CallRef, SocketAddr, Codec), LegError> {
        let (call, codec) = self.control.accept(incoming, self.events.clone()).await?;
        Ok((call.call, call.media, codec))
    }

    async fn reject_incoming(&self, incoming: ServerTxId, code: u16, why: &str) {
        self.control.reject(incoming, code, why).await;
    }

    async fn bridge(&self, customer: CallRef, agent: CallRef) -> Result<(), LegError> {
        Ok(self.control.bridge(customer, agent).await?)
    }

    async fn record(
        &self,
        interaction: &InteractionId,
        service: &str,
        leg: LegId,
        customer: AppLeg,
        agent: AppLeg,
    ) -> Option<String> {
        let records = self.config.service(service).is_some_and(|s| s.recording);
        if !records || self.config.sip.recording_dir.is_none() {
            return None;
        }
        let name = recording_name(interaction, leg);
        match self.control.record(customer, agent, name.clone()).await {
            Ok(()) => Some(format!("{name}.wav")),
            Err(e) => {
                tracing::warn!(%interaction, %leg, "call not recorded: {e}");
                None
            }
        }
    }
}

/// The stem of the recording of call `leg` of an interaction: its id and the call's number,
/// reduced to characters safe in a file name.
fn recording_name(interaction: &InteractionId, leg: LegId) -> String {
    crate::media::recorder::file_stem(&format!("{}-{}", interaction.0, leg.0))
}

/// The headers every INVITE of an interaction carries: its id, its service, and the id again
/// as RFC 7433 User-to-User data (hex-encoded), for equipment that only passes UUI.
fn service_headers(interaction: &InteractionId, service: &str) -> Vec<(String, String)> {
    vec![
        ("X-Interaction-Id".into(), interaction.0.clone()),
        ("X-Service".into(), service.to_string()),
        (
            "User-to-User".into(),
            format!("{};encoding=hex", hex::encode(interaction.0.as_bytes())),
        ),
    ]
}

/// Starts the leg driver; it runs until `shutdown`.
pub fn start(
    hub: Hub,
    routing: Routing,
    rtc: RtcService,
    mut rtc_events: mpsc::Receiver<RtcEvent>,
    sip: SipControl,
    actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (sip_tx, sip_rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (peer_tx, peer_rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Some(event) = rtc_events.recv().await {
            let event = match event {
                RtcEvent::Connected { peer } => PeerEvent::Connected(peer),
                RtcEvent::Closed { peer, reason } => PeerEvent::Closed {
                    peer,
                    reason: reason.to_string(),
                },
                RtcEvent::VideoDropped { peer } => PeerEvent::VideoDropped(peer),
            };
            if peer_tx.send(event).await.is_err() {
                break;
            }
        }
    });
    let subscribe = sip.clone();
    tokio::spawn(async move { subscribe.subscribe(incoming_tx).await });
    let phones = SipPhones {
        control: sip,
        events: sip_tx,
        config: hub.config().clone(),
        routing: routing.clone(),
    };
    let metrics = hub.metrics().clone();
    let publish = (rtc.clone(), metrics.clone(), shutdown.clone());
    tokio::spawn(async move {
        let (rtc, metrics, shutdown) = publish;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => metrics.publish(&rtc.counters()),
                _ = shutdown.cancelled() => break,
            }
        }
    });
    let shell = shell::Shell::new(rtc, phones, hub).with_metrics(metrics);
    let inputs = shell::Inputs {
        actions,
        peers: peer_rx,
        sip: sip_rx,
        incoming: incoming_rx,
    };
    tokio::spawn(shell.run(inputs, shutdown))
}
