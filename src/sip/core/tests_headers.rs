//! What our own messages say about us, on a virtual clock: every request we send names us
//! (`User-Agent`, RFC 3261 §20.41), every response (`Server`, §20.35, the 100 included); our
//! INVITEs say what we allow and support (§20.5, §20.37: RFC 4028 timers are offered); a call
//! to an agent's softphone is addressed To the agent's address of record while its
//! Request-URI is the registered contact (§8.1.1.2).

use super::tests_b2bua::{AGENT, TRUNK, World, header};

#[test]
fn the_100_trying_names_the_server() {
    // A call to an agent is not answered in the pass that takes the INVITE: the trunk hears
    // a 100 while the agent's phone is asked.
    let mut world = World::new(|c| c.user_agent = "Tandem-test".into());
    world.register_agent();
    world.trunk_invite("h1", "");
    let trying = world.take(TRUNK).remove(0);
    assert!(trying.starts_with("SIP/2.0 100"), "{trying}");
    assert!(trying.contains("Server: Tandem-test\r\n"), "{trying}");
}

#[test]
fn our_invite_to_an_agent_names_us_says_what_we_support_and_is_to_the_agents_address() {
    let mut world = World::new(|c| c.user_agent = "Tandem-test".into());
    world.register_agent();
    world.trunk_invite("hdr-1", "");
    let invite = world.take(AGENT).remove(0);
    assert!(
        invite.starts_with("INVITE sip:alice@127.0.0.1:5090 SIP/2.0"),
        "{invite}"
    );
    assert_eq!(header(&invite, "To:"), "To: <sip:alice@127.0.0.1>");
    assert_eq!(header(&invite, "User-Agent:"), "User-Agent: Tandem-test");
    assert_eq!(
        header(&invite, "Allow:"),
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE"
    );
    assert_eq!(header(&invite, "Supported:"), "Supported: timer");
}

#[test]
fn ack_bye_and_reinvite_name_us_too() {
    let mut world = World::new(|c| c.user_agent = "Tandem-test".into());
    let (_, ok) = world.bridged_call("hdr-2");
    // The ACK to the agent's 200 went out during the set-up; look at the ones that follow.
    let hold_offer = format!("{}a=sendonly\r\n", super::tests_b2bua::OFFER);
    let reinvite = format!(
        "INVITE sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-hdr2h\r\n\
         Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: hdr-2\r\nCSeq: 2 INVITE\r\nContact: <sip:carrier@{TRUNK}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold_offer}",
        header(&ok, "From:"),
        header(&ok, "To:"),
        hold_offer.len()
    );
    world.send(TRUNK, &reinvite);
    let to_agent = world.take(AGENT).remove(0);
    assert!(to_agent.starts_with("INVITE "), "{to_agent}");
    assert_eq!(header(&to_agent, "User-Agent:"), "User-Agent: Tandem-test");
    world.agent_answers(&to_agent, 200, "OK");
    let ack = world.take(AGENT).remove(0);
    assert!(ack.starts_with("ACK "), "{ack}");
    assert_eq!(header(&ack, "User-Agent:"), "User-Agent: Tandem-test");

    let bye = format!(
        "BYE sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-hdr2b\r\n\
         Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: hdr-2\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "From:"),
        header(&ok, "To:"),
    );
    world.send(TRUNK, &bye);
    let agent_bye = world.take(AGENT).remove(0);
    assert!(agent_bye.starts_with("BYE "), "{agent_bye}");
    assert_eq!(header(&agent_bye, "User-Agent:"), "User-Agent: Tandem-test");
}
