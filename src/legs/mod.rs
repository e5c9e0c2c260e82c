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
//! The driver depends on two narrow traits rather than on the hub and the WebRTC service
//! themselves, so its bookkeeping is tested in memory ([`Interactions`], [`calls::Peers`]).

pub mod calls;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bridge::hub::{Hub, HubError};
use crate::bridge::{Action, AgentId, Command, Customer, InteractionId, LegId, Party};
use crate::config::Config;
use crate::media::codec::Codec;
use crate::routing::driver::Routing;
use crate::rtc::{MediaSpec, PeerId, RtcEvent, RtcService};
use crate::sip::core::{AppDial, AppLeg, CallRef, DialTarget};
use crate::sip::driver::{SipCallEvent, SipControl};
use crate::sip::peer::Peer;
use crate::sip::transaction::ServerTxId;
use serde_json::json;

/// What a leg driver needs of the interactions: to command them as the system, and to know
/// which agent holds one.
pub trait Interactions: Send + Sync + 'static {
    /// Sends `command` as `by` (the system, or the customer whose client acted through its
    /// media, as in a renegotiation); a refusal is returned as its stable code
    /// (`interaction_closed` for one that is over or unknown).
    fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: Command,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// The agent who accepted the interaction, if any.
    fn agent(&self, id: &InteractionId) -> impl Future<Output = Option<AgentId>> + Send;
    /// Opens an interaction for a phone call from `caller` to the service number `number`,
    /// routed to agents like a new chat, with the call waiting on its voice leg.
    fn open_for_call(
        &self,
        number: &str,
        caller: &str,
    ) -> impl Future<Output = Result<InteractionId, String>> + Send;
}

/// The interactions as the leg driver sees them: the hub, and routing for those that phone
/// calls open.
#[derive(Clone)]
pub struct CallCentre {
    pub hub: Hub,
    pub routing: Routing,
}

impl Interactions for CallCentre {
    async fn command(&self, id: &InteractionId, by: Party, command: Command) -> Result<(), String> {
        match self.hub.command(id, by, command).await {
            Ok(_) => Ok(()),
            Err(HubError::Rule(rule)) => Err(rule.code().to_string()),
            Err(HubError::NotFound | HubError::Closed) => Err("interaction_closed".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn agent(&self, id: &InteractionId) -> Option<AgentId> {
        let summary = self.hub.get(id)?.summary().await.ok()?;
        summary.agent.map(AgentId)
    }

    async fn open_for_call(&self, number: &str, caller: &str) -> Result<InteractionId, String> {
        let config = self.hub.config().clone();
        let service = config
            .service_for_number(number)
            .ok_or_else(|| format!("no service has the number {number}"))?;
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
            .hub
            .create_for_call(&service.name, customer, context, caller.to_string())
            .await
            .map_err(|e| e.to_string())?;
        if let Some(handle) = self.hub.get(&id) {
            self.routing.watch(handle);
        }
        tracing::info!(interaction = %id, service = %service.name, %caller, %number,
                       "phone call opened an interaction");
        Ok(id)
    }
}

impl calls::Peers for RtcService {
    type Id = PeerId;

    async fn create(&self, audio: bool, video: bool) -> Result<(PeerId, String), String> {
        let spec = MediaSpec { audio, video };
        self.create_peer(spec).await.map_err(|e| e.to_string())
    }

    async fn answer(&self, peer: PeerId, sdp: String) -> Result<(), String> {
        self.accept_answer(peer, sdp)
            .await
            .map_err(|e| e.to_string())
    }

    async fn set_video(&self, peer: PeerId, on: bool) -> Result<String, String> {
        RtcService::set_video(self, peer, on)
            .await
            .map_err(|e| e.to_string())
    }

    async fn link(&self, a: PeerId, b: PeerId) -> Result<(), String> {
        self.connect(a, b).await.map_err(|e| e.to_string())
    }

    async fn bridge_rtp(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        codec: Codec,
    ) -> Result<(), String> {
        RtcService::bridge_rtp(self, peer, remote, codec)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
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
pub struct SipPhones {
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

    async fn dial(&self, dial: AppDial) -> Result<(CallRef, SocketAddr), String> {
        let dialed = self
            .control
            .dial(dial, self.events.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok((dialed.call, dialed.media))
    }
}

impl calls::Phones for SipPhones {
    async fn dial_agent(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), String> {
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
    ) -> Result<(CallRef, SocketAddr), String> {
        let mobile = self
            .routing
            .mobile_number(agent)
            .ok_or_else(|| format!("the agent {agent} has no mobile number"))?;
        self.dial_number(&mobile, interaction, service).await
    }

    async fn dial_number(
        &self,
        number: &str,
        interaction: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), String> {
        let config = self.config.service(service);
        let trunk_name = config
            .and_then(|s| s.trunk.as_deref())
            .ok_or_else(|| format!("the service {service} has no trunk"))?;
        let trunk = self
            .config
            .sip
            .trunks
            .iter()
            .find(|t| t.name == trunk_name)
            .ok_or_else(|| format!("no trunk {trunk_name}"))?;
        // The first address is the next hop; a bare IP means the SIP port.
        let first = trunk.addresses.first().ok_or("the trunk has no address")?;
        let hop: SocketAddr = first
            .parse()
            .or_else(|_| first.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 5060)))
            .map_err(|_| format!("bad trunk address {first}"))?;
        // The Request-URI carries the number and nothing else: only E.164 (`+` and digits)
        // is written into it, whatever reached this far.
        let number = crate::bridge::E164::parse(number)
            .map_err(|_| format!("{number:?} is not an E.164 number"))?;
        let uri = rsipstack::sip::parse_uri(&format!("sip:{number}@{hop}"))
            .map_err(|_| format!("cannot call {number}"))?;
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
    ) -> Result<(CallRef, SocketAddr, Codec), String> {
        let (call, codec) = self
            .control
            .accept(incoming, self.events.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok((call.call, call.media, codec))
    }

    async fn reject_incoming(&self, incoming: ServerTxId, code: u16, why: &str) {
        self.control.reject(incoming, code, why).await;
    }

    async fn bridge(&self, customer: CallRef, agent: CallRef) -> Result<(), String> {
        self.control
            .bridge(customer, agent)
            .await
            .map_err(|e| e.to_string())
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
pub fn recording_name(interaction: &InteractionId, leg: LegId) -> String {
    crate::media::recorder::file_stem(&format!("{}-{}", interaction.0, leg.0))
}

/// The headers every INVITE of an interaction carries: its id, its service, and the id again
/// as RFC 7433 User-to-User data (hex-encoded), for equipment that only passes UUI.
pub fn service_headers(interaction: &InteractionId, service: &str) -> Vec<(String, String)> {
    vec![
        ("X-Interaction-Id".into(), interaction.0.clone()),
        ("X-Service".into(), service.to_string()),
        (
            "User-to-User".into(),
            format!("{};encoding=hex", hex::encode(interaction.0.as_bytes())),
        ),
    ]
}

/// Starts the WebRTC leg driver; it runs until `shutdown`.
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
                RtcEvent::Connected { peer } => calls::PeerEvent::Connected(peer),
                RtcEvent::Closed { peer, reason } => calls::PeerEvent::Closed {
                    peer,
                    reason: reason.to_string(),
                },
                RtcEvent::VideoDropped { peer } => calls::PeerEvent::VideoDropped(peer),
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
                _ = tick.tick() => metrics.set_rtc(&rtc.counters()),
                _ = shutdown.cancelled() => break,
            }
        }
    });
    let interactions = CallCentre { hub, routing };
    let driver = calls::Driver::new(rtc, phones, interactions).with_metrics(metrics);
    tokio::spawn(driver.run(actions, peer_rx, sip_rx, incoming_rx, shutdown))
}
