//! RFC 4475 torture messages through the wire layer: the valid ones parse with the right
//! [`Meta`], the invalid ones are refused with the status and reason RFC 4475 suggests (or
//! dropped when they are responses), and nothing panics on mutated copies of any of them.
//!
//! The messages are RFC 4475's, written with `\n` line ends that [`crlf`] turns into CRLF; the
//! two with binary content are built in code.

use tandem::sip::wire::{
    Frame, Incoming, Meta, Rejection, TopVia, WireError, frame_stream, parse_datagram,
    parse_stream_message,
};

use rsipstack::sip::{Header, Method, Request, Response, StatusCode};

const MAX: usize = 65_535;

fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

fn request(bytes: &[u8]) -> (Request, Meta) {
    match parse_datagram(bytes) {
        Ok(Incoming::Request(req, meta)) => (req, meta),
        other => panic!("not a request: {other:?}"),
    }
}

fn response(bytes: &[u8]) -> (Response, Meta) {
    match parse_datagram(bytes) {
        Ok(Incoming::Response(resp, meta)) => (resp, meta),
        other => panic!("not a response: {other:?}"),
    }
}

fn rejected(bytes: &[u8]) -> Rejection {
    match parse_datagram(bytes) {
        Err(rejection) => rejection,
        Ok(message) => panic!("accepted: {message:?}"),
    }
}

/// Asserts the reply's status line and that it copied `lines` (each without its CRLF), and
/// returns it.
fn reply(rejection: &Rejection, status_line: &str, lines: &[&str]) -> String {
    let reply = rejection.reply.as_deref().expect("a reply");
    let reply = String::from_utf8_lossy(reply).into_owned();
    assert!(
        reply.starts_with(&format!("{status_line}\r\n")),
        "{reply:?}"
    );
    for line in lines {
        assert!(
            reply.contains(&format!("\r\n{line}\r\n")),
            "{line:?} not in {reply:?}"
        );
    }
    assert!(
        reply.ends_with("\r\nContent-Length: 0\r\n\r\n"),
        "{reply:?}"
    );
    reply
}

#[allow(clippy::too_many_arguments)]
fn meta(
    call_id: &str,
    cseq: u32,
    cseq_method: Method,
    from_tag: Option<&str>,
    to_tag: Option<&str>,
    branch: Option<&str>,
    sent_by: &str,
    transport: &str,
) -> Meta {
    Meta {
        call_id: call_id.into(),
        cseq,
        cseq_method,
        from_tag: from_tag.map(Into::into),
        to_tag: to_tag.map(Into::into),
        via: TopVia {
            branch: branch.map(Into::into),
            sent_by: sent_by.into(),
            transport: transport.into(),
            rport: None,
        },
    }
}

fn header_values<'a>(req: &'a Request, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case(name))
        .map(Header::value)
        .collect()
}

// §3.1.1 Valid messages.

const WSINV: &str = r##"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn wsinv() {
    let (req, meta) = request(&crlf(WSINV));
    assert_eq!(req.method, Method::Invite);
    assert_eq!(req.uri.user(), Some("vivekg"));
    assert_eq!(req.uri.host().to_string(), "chair-dnrc.example.com");
    assert_eq!(
        meta,
        self::meta(
            "wsinv.ndaksdj@192.0.2.1",
            9,
            Method::Invite,
            Some("98asjd8"),
            Some("1918181833n"),
            Some("390skdjuw"),
            "192.0.2.2",
            "UDP"
        )
    );
    assert!(!meta.via.is_rfc3261());
    assert_eq!(req.body.len(), 150);
    // Two Via header fields, the second with two values, all unfolded.
    assert_eq!(
        header_values(&req, "Via"),
        [
            "SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw",
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , \
             SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239"
        ]
    );
    assert_eq!(header_values(&req, "Subject"), [""]);
    assert_eq!(
        header_values(&req, "NewFangledHeader"),
        ["newfangled value continued newfangled value"]
    );
    assert_eq!(header_values(&req, "Max-Forwards"), ["0068"]);
}

fn intmeth_message() -> Vec<u8> {
    [
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
        "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
        "To: \"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>",
        "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.",
        "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
        "Max-Forwards: 255",
        "extensionHeader-!.%*+_`'~:\u{feff}大停電",
        "Content-Length: 0",
        "",
        "",
    ]
    .join("\r\n")
    .into_bytes()
}

/// A valid message with a method Tandem does not implement: RFC 4475 expects endpoints to
/// answer 501.
#[test]
fn intmeth_gets_a_501_that_copies_its_headers() {
    let rejection = rejected(&intmeth_message());
    assert_eq!(rejection.error, WireError::UnknownMethod);
    assert_eq!(rejection.status(), Some(501));
    let reply = reply(
        &rejection,
        "SIP/2.0 501 Not Implemented",
        &[
            "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
            "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.",
            "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
        ],
    );
    let to = "To: \"BEL:\\\x07 NUL:\\\0 DEL:\\\x7f\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>;tag=";
    assert!(reply.contains(to), "{reply:?}");
    // Exactly the five transaction headers, in RFC 3261 §8.2.6 order.
    let names: Vec<&str> = reply
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    assert_eq!(
        names,
        ["Via", "From", "To", "Call-ID", "CSeq", "Content-Length"]
    );
}

const ESC01: &str = r##"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn esc01() {
    let (req, meta) = request(&crlf(ESC01));
    assert_eq!(
        meta,
        self::meta(
            "esc01.239409asdfakjkn23onasd0-3234",
            234234,
            Method::Invite,
            Some("938"),
            None,
            Some("z9hG4bKkdjuw"),
            "host5.example.net",
            "UDP"
        )
    );
    // The user part is unescaped (RFC 3261 §19.1.4) and written back escaped once.
    assert_eq!(req.uri.user(), Some("sips:user@example.com"));
    assert_eq!(req.uri.host().to_string(), "example.net");
    assert_eq!(
        req.uri.to_string(),
        "sip:sips%3Auser%40example.com@example.net"
    );
    assert!(
        req.headers
            .iter()
            .any(|h| matches!(h, Header::ContentType(c) if c.value() == "application/sdp"))
    );
    assert_eq!(req.body.len(), 150);
}

const ESCNULL: &str = r##"REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

"##;

#[test]
fn escnull() {
    let (req, meta) = request(&crlf(ESCNULL));
    assert_eq!(
        meta,
        self::meta(
            "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
            14398234,
            Method::Register,
            Some("839923423"),
            None,
            Some("z9hG4bKkdjuw"),
            "host5.example.com",
            "UDP"
        )
    );
    assert_eq!(
        header_values(&req, "Contact"),
        [
            "<sip:%00@host5.example.com>",
            "<sip:%00%00@host5.example.com>"
        ]
    );
    assert_eq!(header_values(&req, "Content-Length"), ["0"]);
}

const ESC02: &str = r##"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"##;

/// `RE%47IST%45R` is not REGISTER: `%` escapes nothing in a method.
#[test]
fn esc02_is_an_unknown_method() {
    let rejection = rejected(&crlf(ESC02));
    assert_eq!(rejection.error, WireError::UnknownMethod);
    reply(
        &rejection,
        "SIP/2.0 501 Not Implemented",
        &[
            "Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234",
            "From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23",
            "Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
            "CSeq: 29344 RE%47IST%45R",
        ],
    );
}

const LWSDISP: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"##;

#[test]
fn lwsdisp() {
    let (_, meta) = request(&crlf(LWSDISP));
    assert_eq!(
        meta,
        self::meta(
            "lwsdisp.1234abcd@funky.example.com",
            60,
            Method::Options,
            Some("323"),
            None,
            Some("z9hG4bKkdjuw"),
            "funky.example.com",
            "UDP"
        )
    );
}

fn longreq_message() -> Vec<u8> {
    let mut vias = String::from(
        "Via: SIP/2.0/TCP sip33.example.com\n\
         v: SIP/2.0/TCP sip32.example.com\n\
         V: SIP/2.0/TCP sip31.example.com\n\
         Via: SIP/2.0/TCP sip30.example.com\n\
         ViA: SIP/2.0/TCP sip29.example.com\n\
         VIa: SIP/2.0/TCP sip28.example.com\n\
         VIA: SIP/2.0/TCP sip27.example.com\n\
         via: SIP/2.0/TCP sip26.example.com\n\
         viA: SIP/2.0/TCP sip25.example.com\n\
         vIa: SIP/2.0/TCP sip24.example.com\n\
         vIA: SIP/2.0/TCP sip23.example.com\n\
         V :  SIP/2.0/TCP sip22.example.com\n\
         v :  SIP/2.0/TCP sip21.example.com\n\
         V  : SIP/2.0/TCP sip20.example.com\n\
         v  : SIP/2.0/TCP sip19.example.com\n\
         Via : SIP/2.0/TCP sip18.example.com\n\
         Via  : SIP/2.0/TCP sip17.example.com\n",
    );
    for n in (1..=16).rev() {
        vias.push_str(&format!("Via: SIP/2.0/TCP sip{n}.example.com\n"));
    }
    let text = format!(
        "INVITE sip:user@example.com SIP/2.0\n\
         To: \"I have a user name of {extreme} proportion\"<sip:user@example.com:6000;unknownparam1=very{long}value;longparamname{name}=shortvalue;very{long}ParameterNameWithNoValue>\n\
         F: sip:{caller}@example.net;tag=12{tag}424;unknownheaderparamname{name20}=unknowheaderparamvalue{value};unknownValueless{paramname}\n\
         Call-ID: longreq.one{really}longcallid\n\
         CSeq: 3882340 INVITE\n\
         Unknown-{Long}-Name: unknown-{long20}-value; unknown-{long20}-parameter-name = unknown-{long20}-parameter-value\n\
         {vias}\
         Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very{long50}branchvalue\n\
         Max-Forwards: 70\n\
         Contact: <sip:{caller}@host5.example.net>\n\
         Content-Type: application/sdp\n\
         l: 150\n\
         \n\
         v=0\n\
         o=mhandley 29739 7272939 IN IP4 192.0.2.1\n\
         s=-\n\
         c=IN IP4 192.0.2.1\n\
         t=0 0\n\
         m=audio 49217 RTP/AVP 0 12\n\
         m=video 3227 RTP/AVP 31\n\
         a=rtpmap:31 LPC\n",
        extreme = "extreme".repeat(10),
        long = "long".repeat(20),
        name = "name".repeat(25),
        caller = "amazinglylongcallername".repeat(5),
        tag = "982".repeat(50),
        name20 = "name".repeat(20),
        value = "value".repeat(15),
        paramname = "paramname".repeat(10),
        really = "really".repeat(20),
        Long = "Long".repeat(20),
        long20 = "long".repeat(20),
        long50 = "long".repeat(50),
    );
    crlf(&text)
}

#[test]
fn longreq() {
    let (req, meta) = request(&longreq_message());
    let tag = format!("12{}424", "982".repeat(50));
    let call_id = format!("longreq.one{}longcallid", "really".repeat(20));
    assert_eq!(
        meta,
        self::meta(
            &call_id,
            3882340,
            Method::Invite,
            Some(&tag),
            None,
            None,
            "sip33.example.com",
            "TCP"
        )
    );
    assert_eq!(header_values(&req, "Via").len(), 34);
    assert_eq!(req.body.len(), 150);
}

const DBLREQ: &str = r##"REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m =video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// The octets after the REGISTER's empty body are noise (RFC 3261 §18.3).
#[test]
fn dblreq() {
    let (req, meta) = request(&crlf(DBLREQ));
    assert_eq!(req.method, Method::Register);
    assert_eq!(
        meta,
        self::meta(
            "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
            8,
            Method::Register,
            Some("43251j3j324"),
            None,
            Some("z9hG4bKkdjuw23492"),
            "192.0.2.125",
            "UDP"
        )
    );
    assert!(req.body.is_empty());
}

const SEMIURI: &str = r##"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

"##;

#[test]
fn semiuri() {
    let (req, meta) = request(&crlf(SEMIURI));
    // The user part runs to the `@`, `;` and all.
    assert_eq!(req.uri.user(), Some("user;par=u@example.net"));
    assert_eq!(req.uri.host().to_string(), "example.com");
    assert!(req.uri.params.is_empty());
    assert_eq!(
        req.uri.to_string(),
        "sip:user;par=u%40example.net@example.com"
    );
    assert_eq!(
        meta,
        self::meta(
            "semiuri.0ha0isndaksdj",
            8,
            Method::Options,
            Some("33242"),
            None,
            Some("z9hG4bKkdjuw"),
            "192.0.2.1",
            "UDP"
        )
    );
    assert_eq!(
        header_values(&req, "Accept"),
        [
            "application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, \
             message/sip, message/sipfrag"
        ]
    );
}

const TRANSPORTS: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"##;

#[test]
fn transports() {
    let (req, meta) = request(&crlf(TRANSPORTS));
    assert_eq!(
        meta,
        self::meta(
            "transports.kijh4akdnaqjkwendsasfdj",
            60,
            Method::Options,
            Some("323"),
            None,
            Some("z9hG4bKkdjuw"),
            "t1.example.com",
            "UDP"
        )
    );
    assert_eq!(header_values(&req, "Via").len(), 5);
}

/// A binary part with NULs, 0xFF and an embedded CRLFCRLF: only Content-Length frames it.
fn mpart01_body() -> Vec<u8> {
    let mut body = crlf(
        "--7a9cbec02ceef655\n\
         Content-Type: text/plain\n\
         Content-Transfer-Encoding: binary\n\
         \n\
         Hello\n\
         --7a9cbec02ceef655\n\
         Content-Type: application/octet-stream\n\
         Content-Transfer-Encoding: binary\n\
         \n",
    );
    body.extend_from_slice(&[
        0x30, 0x82, 0x01, 0x52, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02,
        0xa0, 0x82, 0x01, 0x43, 0x30, 0x82, 0x01, 0x3f, 0x02, 0x01, 0x01, 0x31, 0x09, 0x30, 0x07,
        0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
        0xf7, 0x0d, 0x01, 0x07, 0x01, 0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0xff, 0xfe, 0x00, 0x80,
    ]);
    body.extend_from_slice(b"\r\n--7a9cbec02ceef655--\r\n");
    body
}

fn mpart01_message() -> Vec<u8> {
    let body = mpart01_body();
    let mut message = crlf(&format!(
        "MESSAGE sip:kumiko@example.org SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport\n\
         Max-Forwards: 70\n\
         Route: <sip:127.0.0.1:5080>\n\
         Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=\n\
         Contact: <sip:fluffy@127.0.0.1:5070>\n\
         To: <sip:kumiko@example.org>\n\
         From: <sip:fluffy@example.com>;tag=2fb0dcc9\n\
         Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..\n\
         CSeq: 1 MESSAGE\n\
         Content-Transfer-Encoding: binary\n\
         Content-Type: multipart/mixed;boundary=7a9cbec02ceef655\n\
         Date: Sat, 15 Oct 2005 04:44:56 GMT\n\
         User-Agent: SIPimp.org/0.2.5 (curses)\n\
         Content-Length: {}\n\
         \n",
        body.len()
    ));
    message.extend_from_slice(&body);
    message
}

#[test]
fn mpart01() {
    let (req, meta) = request(&mpart01_message());
    assert_eq!(req.method, Method::Message);
    assert_eq!(req.body, mpart01_body());
    let mut expected = self::meta(
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        1,
        Method::Message,
        Some("2fb0dcc9"),
        None,
        Some("z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"),
        "127.0.0.1:5070",
        "UDP",
    );
    expected.via.rport = Some(None);
    assert_eq!(meta, expected);
    // The same bytes framed on a stream.
    let bytes = mpart01_message();
    assert_eq!(
        frame_stream(&bytes, MAX),
        Ok(Frame::Message { len: bytes.len() })
    );
    let Ok(Incoming::Request(streamed, _)) = parse_stream_message(&bytes) else {
        panic!("not parsed from a stream");
    };
    assert_eq!(streamed.body, mpart01_body());
}

const UNREASON: &str = r##"SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn unreason() {
    let (resp, meta) = response(&crlf(UNREASON));
    assert_eq!(resp.status_code, StatusCode::OK);
    assert_eq!(
        resp.wire_reason.as_deref(),
        Some("= 2**3 * 5**2 но сто девяносто девять - простое")
    );
    assert_eq!(
        meta,
        self::meta(
            "unreason.1234ksdfak3j2erwedfsASdf",
            35,
            Method::Invite,
            Some("11141343"),
            Some("2229"),
            Some("z9hG4bK1324923"),
            "192.0.2.198",
            "UDP"
        )
    );
    assert_eq!(resp.body.len(), 154);
}

const NORESON: &str = r##"SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"##;

#[test]
fn noreason() {
    let (resp, meta) = response(&crlf(NORESON));
    assert_eq!(resp.status_code, StatusCode::Trying);
    assert_eq!(resp.wire_reason, None);
    assert_eq!(meta.to_tag.as_deref(), Some("902jndnke3"));
    assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK2398ndaoe"));
}

// §3.1.2 Invalid messages.

const BADINV01: &str = r##"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn badinv01() {
    let rejection = rejected(&crlf(BADINV01));
    assert_eq!(rejection.error, WireError::Malformed("Via"));
    let reply = reply(
        &rejection,
        "SIP/2.0 400 Malformed Via",
        &[
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
            "From: sip:caller@example.net;tag=134161461246",
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas",
            "CSeq: 8 INVITE",
        ],
    );
    assert!(
        reply.contains("\r\nTo: sip:j.user@example.com;tag="),
        "{reply}"
    );
    // The Contact is as broken: alone, it is refused too.
    let fixed = String::from_utf8(crlf(BADINV01))
        .unwrap()
        .replace(";;,;,,", ";branch=z9hG4bK-ok");
    assert_eq!(
        rejected(fixed.as_bytes()).error,
        WireError::Malformed("Contact")
    );
}

const CLERR: &str = r##"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.155
s=-
c=IN IP4 192.0.2.155
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// On UDP a 400; on a stream the rest may still come, so the framer waits.
#[test]
fn clerr() {
    let bytes = crlf(CLERR);
    let rejection = rejected(&bytes);
    assert_eq!(rejection.error, WireError::ContentLengthTooLarge);
    reply(
        &rejection,
        "SIP/2.0 400 Content-Length larger than message",
        &[
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523",
            "CSeq: 8 INVITE",
        ],
    );
    assert_eq!(frame_stream(&bytes, MAX), Ok(Frame::Incomplete));
}

const NCL: &str = r##"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.53
s=-
c=IN IP4 192.0.2.53
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn ncl() {
    let bytes = crlf(NCL);
    let rejection = rejected(&bytes);
    assert_eq!(rejection.error, WireError::Malformed("Content-Length"));
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Content-Length",
        &["Call-ID: ncl.0ha0isndaksdj2193423r542w35", "CSeq: 0 INVITE"],
    );
    // On a stream the framing is lost: refused, with the same reply, then closed.
    let on_stream = frame_stream(&bytes, MAX).unwrap_err();
    assert_eq!(on_stream.error, WireError::Malformed("Content-Length"));
    assert!(on_stream.reply.is_some());
    let five = String::from_utf8(bytes)
        .unwrap()
        .replace("Content-Length: -999", "Content-Length: five");
    assert_eq!(
        frame_stream(five.as_bytes(), MAX).unwrap_err().error,
        WireError::Malformed("Content-Length")
    );
}

const SCALAR02: &str = r##"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

"##;

#[test]
fn scalar02() {
    let rejection = rejected(&crlf(SCALAR02));
    assert_eq!(rejection.error, WireError::CSeqOutOfRange);
    reply(
        &rejection,
        "SIP/2.0 400 CSeq number out of range",
        &[
            "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3",
            "CSeq: 36893488147419103232 REGISTER",
        ],
    );
}

const SCALARLG: &str = r##"SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"##;

/// A response is never answered: dropped.
#[test]
fn scalarlg() {
    let rejection = rejected(&crlf(SCALARLG));
    assert_eq!(rejection.error, WireError::CSeqOutOfRange);
    assert_eq!(rejection.reply, None);
}

const QUOTBAL: &str = r##"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn quotbal() {
    let rejection = rejected(&crlf(QUOTBAL));
    assert_eq!(rejection.error, WireError::Malformed("To"));
    // The unreadable To is copied as it came, without a tag glued inside its open quote.
    reply(
        &rejection,
        "SIP/2.0 400 Malformed To",
        &[
            "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
            "To: \"Mr. J. User <sip:j.user@example.com>",
            "Call-ID: quotbal.aksdj",
            "CSeq: 8 INVITE",
        ],
    );
}

const LTGTRURI: &str = r##"INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 159

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=3149328700 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn ltgtruri() {
    let rejection = rejected(&crlf(LTGTRURI));
    assert_eq!(rejection.error, WireError::MalformedRequestUri);
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Request-URI",
        &["Via: SIP/2.0/UDP 192.0.2.5", "CSeq: 1 INVITE"],
    );
}

const LWSRURI: &str = r##"INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 159

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=3149328700 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn lwsruri() {
    let rejection = rejected(&crlf(LWSRURI));
    assert_eq!(rejection.error, WireError::MalformedRequestLine);
    // The To already has a tag: it is copied unchanged.
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Request-Line",
        &[
            "To: sip:user@example.com;tag=3xfe-9921883-z9f",
            "CSeq: 2130706432 INVITE",
        ],
    );
}

const LWSSTART: &str = r##"INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn lwsstart() {
    let rejection = rejected(&crlf(LWSSTART));
    assert_eq!(rejection.error, WireError::MalformedRequestLine);
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Request-Line",
        &["CSeq: 1893884 INVITE"],
    );
}

const TRWS: &str = "OPTIONS sip:remote-target@example.com SIP/2.0  
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

";

#[test]
fn trws() {
    let rejection = rejected(&crlf(TRWS));
    assert_eq!(rejection.error, WireError::MalformedRequestLine);
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Request-Line",
        &["CSeq: 238923 OPTIONS"],
    );
}

const ESCRURI: &str = r##"INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

#[test]
fn escruri() {
    let rejection = rejected(&crlf(ESCRURI));
    assert_eq!(rejection.error, WireError::MalformedRequestUri);
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Request-URI",
        &["CSeq: 149209342 INVITE"],
    );
}

const BADDATE: &str = r##"INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// RFC 4475 §3.1.2.12: an element "shouldn't" refuse a bad Date "unless the contents of the
/// Date header field were actually important to its processing". Tandem never reads Date, so
/// the request is accepted and the Date kept as text.
#[test]
fn baddate_is_accepted_because_date_is_never_read() {
    let (req, meta) = request(&crlf(BADDATE));
    assert_eq!(meta.call_id, "baddate.239423mnsadf3j23lj42--sedfnm234");
    assert_eq!(
        header_values(&req, "Date"),
        ["Fri, 01 Jan 2010 16:00:00 EST"]
    );
}

const REGBADCT: &str = r##"REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

"##;

#[test]
fn regbadct() {
    let rejection = rejected(&crlf(REGBADCT));
    assert_eq!(rejection.error, WireError::Malformed("Contact"));
    reply(
        &rejection,
        "SIP/2.0 400 Malformed Contact",
        &[
            "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw",
            "CSeq: 1 REGISTER",
        ],
    );
}

const BADASPEC: &str = r##"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"##;

#[test]
fn badaspec() {
    let rejection = rejected(&crlf(BADASPEC));
    assert_eq!(rejection.error, WireError::Malformed("To"));
    reply(
        &rejection,
        "SIP/2.0 400 Malformed To",
        &[
            "From: \"Bell, Alexander\" <sip:a.g.bell@example.com>;tag=433423",
            "To: \"Watson, Thomas\" < sip:t.watson@example.org >",
            "CSeq: 3923239 OPTIONS",
        ],
    );
}

const BADDN: &str = r##"OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

"##;

#[test]
fn baddn() {
    let rejection = rejected(&crlf(BADDN));
    assert_eq!(rejection.error, WireError::Malformed("From"));
    reply(
        &rejection,
        "SIP/2.0 400 Malformed From",
        &[
            "Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw",
            "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "To: Watson, Thomas <sip:t.watson@example.org>",
            "CSeq: 3923239 OPTIONS",
        ],
    );
}

const BADVERS: &str = r##"OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

"##;

#[test]
fn badvers() {
    let rejection = rejected(&crlf(BADVERS));
    assert_eq!(rejection.error, WireError::VersionNotSupported);
    reply(
        &rejection,
        "SIP/2.0 505 Version Not Supported",
        &[
            "Via: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw",
            "From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe",
            "Call-ID: badvers.31417@c.example.com",
            "CSeq: 1 OPTIONS",
        ],
    );
}

const MISMATCH01: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

"##;

#[test]
fn mismatch01() {
    let rejection = rejected(&crlf(MISMATCH01));
    assert_eq!(rejection.error, WireError::CSeqMismatch);
    reply(
        &rejection,
        "SIP/2.0 400 CSeq method does not match the request method",
        &["Call-ID: mismatch01.dj0234sxdfl3", "CSeq: 8 INVITE"],
    );
}

const MISMATCH02: &str = r##"NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// RFC 4475 prefers 501 over 400 here.
#[test]
fn mismatch02() {
    let rejection = rejected(&crlf(MISMATCH02));
    assert_eq!(rejection.error, WireError::UnknownMethod);
    reply(
        &rejection,
        "SIP/2.0 501 Not Implemented",
        &["Call-ID: mismatch02.dj0234sxdfl3", "CSeq: 8 INVITE"],
    );
}

const BIGCODE: &str = r##"SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"##;

#[test]
fn bigcode() {
    let rejection = rejected(&crlf(BIGCODE));
    assert_eq!(rejection.error, WireError::MalformedStatusLine);
    assert_eq!(rejection.reply, None);
    for code in ["700", "099", "20", "2000"] {
        let text = String::from_utf8(crlf(BIGCODE))
            .unwrap()
            .replace("4294967301", code);
        assert_eq!(
            rejected(text.as_bytes()).error,
            WireError::MalformedStatusLine,
            "{code}"
        );
    }
}

// §3.2 Transaction layer.

const BADBRANCH: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

"##;

/// A bare magic cookie names no transaction: accepted, matched the RFC 2543 way.
#[test]
fn badbranch() {
    let (_, meta) = request(&crlf(BADBRANCH));
    assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK"));
    assert!(!meta.via.is_rfc3261());
}

// §3.3 Application layer, where the wire layer can decide.

const INSUF: &str = r##"INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.95
s=-
c=IN IP4 192.0.2.95
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// No From, To or Call-ID: a 400 that names them all, carrying what can be copied (the Via
/// and CSeq the sender matches responses by).
#[test]
fn insuf() {
    let rejection = rejected(&crlf(INSUF));
    let WireError::Missing(missing) = rejection.error else {
        panic!("{rejection:?}");
    };
    assert!(missing.contains("From") && missing.contains("To") && missing.contains("Call-ID"));
    let reply = reply(
        &rejection,
        "SIP/2.0 400 Missing From, To, Call-ID",
        &[
            "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf",
            "CSeq: 193942 INVITE",
        ],
    );
    assert!(!reply.contains("From:") && !reply.contains("To:") && !reply.contains("Call-ID:"));
}

const UNKSCM: &str = r##"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

"##;

#[test]
fn unkscm() {
    let rejection = rejected(&crlf(UNKSCM));
    assert_eq!(rejection.error, WireError::UnsupportedUriScheme);
    reply(
        &rejection,
        "SIP/2.0 416 Unsupported URI Scheme",
        &[
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234",
            "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34",
            "CSeq: 3923423 OPTIONS",
        ],
    );
}

const NOVELSC: &str = r##"OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

"##;

#[test]
fn novelsc() {
    let rejection = rejected(&crlf(NOVELSC));
    assert_eq!(rejection.error, WireError::UnsupportedUriScheme);
    reply(
        &rejection,
        "SIP/2.0 416 Unsupported URI Scheme",
        &["Call-ID: novelsc.asdfasser0q239nwsdfasdkl34"],
    );
}

const UNKSM2: &str = r##"REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

"##;

/// Syntactically valid; whether a registrar takes an isbn: AOR is the registrar's call.
#[test]
fn unksm2() {
    let (_, meta) = request(&crlf(UNKSM2));
    assert_eq!(
        meta,
        self::meta(
            "unksm2.daksdj@hyphenated-host.example.com",
            234902,
            Method::Register,
            Some("3234233"),
            None,
            Some("z9hG4bKkdjuw"),
            "192.0.2.21:5060",
            "UDP"
        )
    );
}

const BEXT01: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0

"##;

/// Which extensions are supported is the user agent's to say (420 Bad Extension).
#[test]
fn bext01_is_left_to_the_user_agent() {
    let (req, meta) = request(&crlf(BEXT01));
    assert_eq!(meta.via.transport, "TLS");
    assert_eq!(
        header_values(&req, "Require"),
        ["nothingSupportsThis, nothingSupportsThisEither"]
    );
}

const INVUT: &str = r##"INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: 40

<audio>
 <pcmu port="443"/>
</audio>
"##;

/// An unknown body type is the user agent's to refuse (415).
#[test]
fn invut_is_left_to_the_user_agent() {
    let (req, _) = request(&crlf(INVUT));
    assert_eq!(req.body, crlf("<audio>\n <pcmu port=\"443\"/>\n</audio>\n"));
}

const REGAUT01: &str = r##"REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

"##;

#[test]
fn regaut01() {
    let (req, _) = request(&crlf(REGAUT01));
    assert_eq!(
        header_values(&req, "Authorization"),
        ["NoOneKnowsThisScheme opaque-data=here"]
    );
}

const MULTI01: &str = r##"INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 154
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.25
s=-
c=IN IP4 192.0.2.25
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC

"##;

/// The reply copies the first of each, so it stays a well-formed response.
#[test]
fn multi01() {
    let rejection = rejected(&crlf(MULTI01));
    assert_eq!(rejection.error, WireError::Repeated("CSeq"));
    let reply = reply(
        &rejection,
        "SIP/2.0 400 Multiple CSeq headers",
        &[
            "From: sip:caller@example.com;tag=3413415",
            "Call-ID: multi01.98asdh@192.0.2.1",
            "CSeq: 5 INVITE",
        ],
    );
    assert!(!reply.contains("192.0.2.2\r\n") && !reply.contains("59 INVITE"));
    assert_eq!(reply.matches("\r\nTo: ").count(), 1);
}

const MCL01: &str = r##"OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
"##;

#[test]
fn mcl01() {
    let bytes = crlf(MCL01);
    let rejection = rejected(&bytes);
    assert_eq!(rejection.error, WireError::Repeated("Content-Length"));
    reply(
        &rejection,
        "SIP/2.0 400 Multiple Content-Length headers",
        &["CSeq: 15932 OPTIONS"],
    );
    // On a stream: refused (and the connection closed) rather than guessed at.
    let on_stream = frame_stream(&bytes, MAX).unwrap_err();
    assert_eq!(on_stream.error, WireError::Repeated("Content-Length"));
    assert!(on_stream.reply.is_some());
}

const BCAST: &str = r##"SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// Well-formed; where not to forward it is a proxy's concern.
#[test]
fn bcast() {
    let (resp, meta) = response(&crlf(BCAST));
    assert_eq!(resp.status_code, StatusCode::OK);
    assert_eq!(meta.via.sent_by, "192.0.2.198");
}

const ZEROMF: &str = r##"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

"##;

#[test]
fn zeromf() {
    let (req, _) = request(&crlf(ZEROMF));
    assert_eq!(header_values(&req, "Max-Forwards"), ["0"]);
}

const CPARAM01: &str = r##"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0

"##;

#[test]
fn cparam01() {
    let (_, meta) = request(&crlf(CPARAM01));
    assert_eq!(meta.from_tag.as_deref(), Some("DkfVgjkrtMwaerKKpe"));
    assert_eq!(meta.via.sent_by, "saturn.example.com:5060");
}

const CPARAM02: &str = r##"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: cparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0

"##;

#[test]
fn cparam02() {
    let (_, meta) = request(&crlf(CPARAM02));
    assert_eq!(meta.cseq, 3);
}

const REGESCRT: &str = r##"REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0

"##;

/// Escaped headers are fine in a bracketed Contact URI (compare regbadct).
#[test]
fn regescrt() {
    let (req, _) = request(&crlf(REGESCRT));
    assert_eq!(
        header_values(&req, "Contact"),
        ["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"]
    );
}

const SDP01: &str = r##"INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: sdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
Content-Length: 150
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"##;

/// An unacceptable Accept is the user agent's to refuse (406).
#[test]
fn sdp01_is_left_to_the_user_agent() {
    let (req, _) = request(&crlf(SDP01));
    assert_eq!(req.body.len(), 150);
}

// §3.4 Backward compatibility.

const INV2543: &str = r##"INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
"##;

/// No branch, no tag, no Max-Forwards, no Content-Length: fine on UDP, where the datagram
/// ends the body; unframeable on a stream.
#[test]
fn inv2543() {
    let bytes = crlf(INV2543);
    let (req, meta) = request(&bytes);
    assert_eq!(
        meta,
        self::meta(
            "inv2543.1717@ift.client.example.com",
            56,
            Method::Invite,
            None,
            None,
            None,
            "iftgw.example.com",
            "UDP"
        )
    );
    assert!(!meta.via.is_rfc3261());
    assert!(req.body.starts_with(b"v=0\r\n") && req.body.ends_with(b"RTP/AVP 0\r\n"));
    assert_eq!(
        frame_stream(&bytes, MAX).unwrap_err().error,
        WireError::MissingContentLength
    );
}

// Forms RFC 4475 touches only in passing.

const OPTIONS: &str = r##"OPTIONS sip:tandem@192.0.2.1 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-base;rport
Max-Forwards: 70
From: <sip:a@192.0.2.7>;tag=abc
To: <sip:tandem@192.0.2.1>
Call-ID: base@192.0.2.7
CSeq: 7 OPTIONS
Content-Length: 0

"##;

fn options_with(from: &str, to: &str) -> Vec<u8> {
    crlf(&OPTIONS.replace(from, to))
}

#[test]
fn compact_header_names_are_read() {
    let text = r##"INVITE sip:bob@example.com SIP/2.0
v: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-compact
f: <sip:alice@example.com>;tag=a1
t: <sip:bob@example.com>
i: compact@192.0.2.7
CSeq: 1 INVITE
m: <sip:alice@192.0.2.7>
k: 100rel
s: compact
e: identity
c: text/plain
l: 2

hi"##;
    let (req, meta) = request(&crlf(text));
    assert_eq!(
        meta,
        self::meta(
            "compact@192.0.2.7",
            1,
            Method::Invite,
            Some("a1"),
            None,
            Some("z9hG4bK-compact"),
            "192.0.2.7",
            "UDP"
        )
    );
    assert_eq!(req.body, b"hi");
    for (name, value) in [
        ("Contact", "<sip:alice@192.0.2.7>"),
        ("Supported", "100rel"),
        ("Subject", "compact"),
        ("Content-Encoding", "identity"),
        ("Content-Type", "text/plain"),
        ("Content-Length", "2"),
    ] {
        assert_eq!(header_values(&req, name), [value], "{name}");
    }
}

#[test]
fn the_top_via_is_the_first_value_of_the_first_via_header() {
    let one_header = options_with(
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-base;rport",
        "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bK-1 , SIP/2.0/TCP second.example.com;branch=z9hG4bK-2\n\
         Via: SIP/2.0/UDP third.example.com;branch=z9hG4bK-3",
    );
    let (req, meta) = request(&one_header);
    assert_eq!(meta.via.sent_by, "first.example.com");
    assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK-1"));
    assert_eq!(header_values(&req, "Via").len(), 2);
    let several_headers = options_with(
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-base;rport",
        "v: SIP/2.0/TCP first.example.com:5061;branch=z9hG4bK-1\n\
         VIA: SIP/2.0/UDP second.example.com;branch=z9hG4bK-2",
    );
    let (_, meta) = request(&several_headers);
    assert_eq!(meta.via.sent_by, "first.example.com:5061");
    assert_eq!(meta.via.transport, "TCP");
    // A bad Via further down is refused too: responses carry them all back.
    let bad_second = options_with(
        "Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-base;rport",
        "Via: SIP/2.0/UDP first.example.com;branch=z9hG4bK-1, SIP/2.0/UDP ;branch=x",
    );
    assert_eq!(rejected(&bad_second).error, WireError::Malformed("Via"));
}

#[test]
fn folded_lines_odd_whitespace_and_case_are_read() {
    let text = "OPTIONS sip:tandem@192.0.2.1 SIP/2.0\n\
                vIA   :\tSIP/2.0/udp\n \t192.0.2.7:5070\n ;BRANCH=z9hG4bK-fold\n\
                Max-Forwards:70\n\
                FROM:<sip:a@192.0.2.7>\n\t;TAG=abc\n\
                to\t: <sip:tandem@192.0.2.1>\n\
                CALL-id:fold@192.0.2.7   \n\
                cSeQ:\t7\n   OPTIONS\n\
                Content-Length: 0\n\n";
    let (_, meta) = request(&crlf(text));
    assert_eq!(
        meta,
        self::meta(
            "fold@192.0.2.7",
            7,
            Method::Options,
            Some("abc"),
            None,
            Some("z9hG4bK-fold"),
            "192.0.2.7:5070",
            "UDP"
        )
    );
    // Methods are case-sensitive: `options` is another method.
    let lower = options_with("OPTIONS sip", "options sip");
    assert_eq!(rejected(&lower).error, WireError::UnknownMethod);
    // SIP-Version is not.
    let lower_version = options_with("SIP/2.0\n", "sip/2.0\n");
    assert_eq!(request(&lower_version).1.call_id, "base@192.0.2.7");
}

#[test]
fn numbers_may_have_leading_zeros() {
    let bytes = options_with("CSeq: 7 OPTIONS", "CSeq: 0009 OPTIONS");
    let bytes = String::from_utf8(bytes).unwrap().replace(
        "Content-Length: 0",
        "Content-Length: 0000000000000000000000",
    );
    let (_, meta) = request(bytes.as_bytes());
    assert_eq!(meta.cseq, 9);
    let (_, meta) = request(&options_with("CSeq: 7 OPTIONS", "CSeq: 4294967295 OPTIONS"));
    assert_eq!(meta.cseq, u32::MAX);
    assert_eq!(
        rejected(&options_with("CSeq: 7 OPTIONS", "CSeq: 4294967296 OPTIONS")).error,
        WireError::CSeqOutOfRange
    );
    assert_eq!(
        rejected(&options_with("CSeq: 7 OPTIONS", "CSeq: -7 OPTIONS")).error,
        WireError::Malformed("CSeq")
    );
}

#[test]
fn escaped_uris_are_unescaped_once() {
    let bytes = options_with("OPTIONS sip:tandem@", "OPTIONS sip:%74andem%2Bqueue@");
    let (req, _) = request(&bytes);
    assert_eq!(req.uri.user(), Some("tandem+queue"));
    assert_eq!(req.uri.to_string(), "sip:tandem+queue@192.0.2.1");
    assert_eq!(
        rejected(&options_with("OPTIONS sip:tandem@", "OPTIONS sip:t%4@")).error,
        WireError::MalformedRequestUri
    );
}

#[test]
fn ipv6_hosts_are_read_in_via_and_request_uri() {
    let text = OPTIONS
        .replace(
            "sip:tandem@192.0.2.1 SIP",
            "sip:tandem@[2001:db8::1]:5060;transport=udp SIP",
        )
        .replace("192.0.2.7:5070;branch", "[2001:DB8:0:0::10]:5070;branch")
        .replace(";rport", ";received=2001:db8::10;rport=5070");
    let (req, meta) = request(&crlf(&text));
    assert_eq!(req.uri.host().to_string(), "[2001:db8::1]");
    assert_eq!(req.uri.host_with_port.port.map(|p| p.value()), Some(5060));
    assert_eq!(meta.via.sent_by, "[2001:db8::10]:5070");
    assert_eq!(meta.via.rport, Some(Some(5070)));
    let unclosed = OPTIONS.replace("192.0.2.7:5070;branch", "[2001:db8::10:5070;branch");
    assert_eq!(
        rejected(&crlf(&unclosed)).error,
        WireError::Malformed("Via")
    );
}

/// [`options_with`] without turning the LFs of `to` into CRLFs.
fn options_with_raw(from: &str, to: &str) -> Vec<u8> {
    String::from_utf8(crlf(OPTIONS))
        .unwrap()
        .replace(from, to)
        .into_bytes()
}

#[test]
fn bare_line_breaks_are_refused_not_guessed_at() {
    // A peer that ends lines at LF would read a second Via here.
    let injected = options_with_raw("Max-Forwards: 70", "Subject: x\nVia: SIP/2.0/UDP evil");
    let rejection = rejected(&injected);
    assert_eq!(rejection.error, WireError::BareLineBreak);
    let reply = reply(
        &rejection,
        "SIP/2.0 400 Bare CR or LF in the header section",
        &["CSeq: 7 OPTIONS"],
    );
    assert!(!reply.contains("evil"), "{reply}");
    let bare_cr = options_with_raw("Max-Forwards: 70", "Max-Forwards: 70\rX: y");
    assert_eq!(rejected(&bare_cr).error, WireError::BareLineBreak);
    let in_start_line = options_with_raw("OPTIONS sip:", "OPTIONS\nsip:");
    assert_eq!(rejected(&in_start_line).error, WireError::BareLineBreak);
}

#[test]
fn a_field_folded_over_many_lines_is_joined_with_single_spaces() {
    let folds = "\n  x".repeat(10_000);
    let bytes = options_with("Max-Forwards: 70", &format!("Subject: a{folds}"));
    let started = std::time::Instant::now();
    let (req, _) = request(&bytes);
    // Linear, not quadratic, in the number of continuation lines.
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let subject = header_values(&req, "Subject")[0];
    assert_eq!(subject.len(), 1 + 2 * 10_000);
    assert!(subject.starts_with("a x x"));
}

#[test]
fn header_lines_must_be_name_colon_value() {
    for (from, to) in [
        ("Max-Forwards: 70", "Max-Forwards 70"),
        ("Max-Forwards: 70", "Max Forwards: 70"),
        // A continuation line right after the start line continues nothing.
        ("SIP/2.0\nVia:", "SIP/2.0\n X: y\nVia:"),
    ] {
        let rejection = rejected(&options_with(from, to));
        assert_eq!(rejection.error, WireError::MalformedHeaderLine, "{to:?}");
        reply(
            &rejection,
            "SIP/2.0 400 Malformed header line",
            &["CSeq: 7 OPTIONS"],
        );
    }
}

#[test]
fn responses_and_acks_are_never_answered() {
    let response = "SIP/2.0 200 OK\n\
                    Via: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-r\n\
                    CSeq: 1 INVITE\n\
                    Content-Length: 0\n\n";
    let rejection = rejected(&crlf(response));
    assert!(matches!(rejection.error, WireError::Missing(_)));
    assert_eq!(rejection.reply, None);
    let ack = OPTIONS
        .replace("OPTIONS sip", "ACK sip")
        .replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE");
    let rejection = rejected(&crlf(&ack));
    assert_eq!(rejection.error, WireError::CSeqMismatch);
    assert_eq!(rejection.reply, None);
}

// Stream framing (RFC 3261 §18.3, RFC 5626 §3.5.1).

#[test]
fn a_message_split_across_reads_is_framed_once_complete() {
    let bytes = crlf(ESC01);
    for cut in 1..bytes.len() {
        assert_eq!(
            frame_stream(&bytes[..cut], MAX),
            Ok(Frame::Incomplete),
            "{cut}"
        );
    }
    assert_eq!(
        frame_stream(&bytes, MAX),
        Ok(Frame::Message { len: bytes.len() })
    );
    let (req, _) = match parse_stream_message(&bytes) {
        Ok(Incoming::Request(req, meta)) => (req, meta),
        other => panic!("{other:?}"),
    };
    assert_eq!(req.body.len(), 150);
}

#[test]
fn two_messages_in_one_read_are_framed_one_by_one() {
    let first = crlf(ESC01);
    let second = crlf(LWSDISP);
    let mut buf = [first.as_slice(), b"\r\n", second.as_slice()].concat();
    let mut seen = Vec::new();
    while !buf.is_empty() {
        match frame_stream(&buf, MAX).unwrap() {
            Frame::Message { len } => {
                let Ok(Incoming::Request(req, _)) = parse_stream_message(&buf[..len]) else {
                    panic!("not parsed");
                };
                seen.push(req.method);
                buf.drain(..len);
            }
            Frame::KeepAlive { skip, pong } => {
                assert!(!pong);
                buf.drain(..skip);
            }
            Frame::Incomplete => panic!("both are complete"),
        }
    }
    assert_eq!(seen, [Method::Invite, Method::Options]);
}

#[test]
fn crlf_keep_alives_are_skipped_and_pings_ponged() {
    assert_eq!(
        frame_stream(b"\r\n\r\n", MAX),
        Ok(Frame::KeepAlive {
            skip: 4,
            pong: true
        })
    );
    assert_eq!(
        frame_stream(b"\r\n\r\n\r\n\r\nOPTIONS", MAX),
        Ok(Frame::KeepAlive {
            skip: 8,
            pong: true
        })
    );
    // A pong, or half a ping: wait for what follows.
    assert_eq!(frame_stream(b"\r\n", MAX), Ok(Frame::Incomplete));
    assert_eq!(frame_stream(b"\r\n\r", MAX), Ok(Frame::Incomplete));
    assert_eq!(
        frame_stream(b"\r\nOPTIONS", MAX),
        Ok(Frame::KeepAlive {
            skip: 2,
            pong: false
        })
    );
    assert_eq!(
        frame_stream(b"\n\n\n\n\n", MAX),
        Ok(Frame::KeepAlive {
            skip: 5,
            pong: false
        })
    );
    assert_eq!(frame_stream(b"", MAX), Ok(Frame::Incomplete));
}

#[test]
fn a_stream_message_needs_a_numeric_content_length() {
    let missing = options_with("Content-Length: 0\n", "");
    let rejection = frame_stream(&missing, MAX).unwrap_err();
    assert_eq!(rejection.error, WireError::MissingContentLength);
    reply(
        &rejection,
        "SIP/2.0 400 Missing Content-Length on a stream transport",
        &["CSeq: 7 OPTIONS"],
    );
    let word = options_with("Content-Length: 0", "Content-Length: zero");
    assert_eq!(
        frame_stream(&word, MAX).unwrap_err().error,
        WireError::Malformed("Content-Length")
    );
    let folded = options_with("Content-Length: 0", "Content-Length:\n 0");
    assert_eq!(
        frame_stream(&folded, MAX),
        Ok(Frame::Message { len: folded.len() })
    );
}

#[test]
fn an_oversized_stream_message_is_refused() {
    let big = options_with("Content-Length: 0", "Content-Length: 70000");
    let rejection = frame_stream(&big, MAX).unwrap_err();
    assert_eq!(rejection.error, WireError::TooLarge);
    reply(
        &rejection,
        "SIP/2.0 513 Message Too Large",
        &["CSeq: 7 OPTIONS"],
    );
    let huge = options_with(
        "Content-Length: 0",
        "Content-Length: 99999999999999999999999",
    );
    assert_eq!(
        frame_stream(&huge, MAX).unwrap_err().error,
        WireError::TooLarge
    );
    // Headers that never end.
    let endless = [b"OPTIONS sip:a@b SIP/2.0\r\n".as_slice(), &[b'X'; MAX]].concat();
    let rejection = frame_stream(&endless, MAX).unwrap_err();
    assert_eq!(rejection.error, WireError::TooLarge);
    assert_eq!(rejection.reply, None);
}

#[test]
fn a_framed_message_must_match_its_content_length() {
    let bytes = options_with("Content-Length: 0", "Content-Length: 3");
    let rejection = parse_stream_message(&[bytes.as_slice(), b"ab"].concat()).unwrap_err();
    assert_eq!(rejection.error, WireError::ContentLengthMismatch);
    // Without one (a WebSocket frame is the message), the body is the rest.
    let ws = options_with("Content-Length: 0\n", "");
    let Ok(Incoming::Request(req, _)) = parse_stream_message(&[ws.as_slice(), b"abc"].concat())
    else {
        panic!("not parsed");
    };
    assert_eq!(req.body, b"abc");
}

// No input makes the wire layer panic.

fn corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = [
        WSINV, ESC01, ESCNULL, ESC02, LWSDISP, DBLREQ, SEMIURI, TRANSPORTS, UNREASON, NORESON,
        BADINV01, CLERR, NCL, SCALAR02, SCALARLG, QUOTBAL, LTGTRURI, LWSRURI, LWSSTART, TRWS,
        ESCRURI, BADDATE, REGBADCT, BADASPEC, BADDN, BADVERS, MISMATCH01, MISMATCH02, BIGCODE,
        BADBRANCH, INSUF, UNKSCM, NOVELSC, UNKSM2, BEXT01, INVUT, REGAUT01, MULTI01, MCL01, BCAST,
        ZEROMF, CPARAM01, CPARAM02, REGESCRT, SDP01, INV2543, OPTIONS,
    ]
    .iter()
    .map(|text| crlf(text))
    .collect();
    corpus.extend([intmeth_message(), longreq_message(), mpart01_message()]);
    corpus
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\0",
    b"\xff",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\"",
    b"<",
    b">",
    b"@",
    b"%",
    b"[",
    b"]",
    b"/",
    b"\\",
    b"0",
    b"9999999999999999999999",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(5) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 => input.truncate(at),
            2 => {
                let insert = INTERESTING[rng.below(INTERESTING.len())];
                input.splice(at..at, insert.iter().copied());
            }
            3 if at < input.len() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at..end);
            }
            _ => {
                // Duplicate a slice of the message elsewhere, such as a header line.
                let start = rng.below(input.len());
                let end = (start + rng.below(64)).min(input.len());
                let copy = input[start..end].to_vec();
                input.splice(at..at, copy);
            }
        }
    }
}

#[test]
fn no_mutation_of_the_corpus_makes_the_parser_panic() {
    let corpus = corpus();
    let mut rng = Rng(0x5eed_f00d_7a4d_e301);
    for round in 0..20_000 {
        let mut input = corpus[round % corpus.len()].clone();
        mutate(&mut rng, &mut input);
        let datagram = parse_datagram(&input);
        if let Err(rejection) = &datagram
            && let Some(reply) = &rejection.reply
        {
            // Nothing from the input can split or end the reply's header section early.
            let end = reply.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(end, Some(reply.len() - 4), "{reply:?}");
            let lf = reply.iter().filter(|&&b| b == b'\n').count();
            let cr = reply.iter().filter(|&&b| b == b'\r').count();
            assert_eq!(
                (lf, cr),
                (reply.windows(2).filter(|w| w == b"\r\n").count(), lf)
            );
            assert!(!matches!(parse_datagram(reply), Ok(Incoming::Request(..))));
        }
        match frame_stream(&input, 4096) {
            Ok(Frame::Message { len }) => {
                let _ = parse_stream_message(&input[..len]);
            }
            Ok(Frame::KeepAlive { skip, .. }) => assert!(skip > 0 && skip <= input.len()),
            Ok(Frame::Incomplete) | Err(_) => {}
        }
        let _ = parse_stream_message(&input);
    }
}

/// Writes the corpus as seeds for the `fuzz/` targets, which get much further from real
/// messages than from nothing: `cargo test --test sip_torture_messages -- --ignored seeds`.
#[test]
#[ignore = "writes files; run by hand before fuzzing"]
fn seeds_for_the_fuzz_targets() {
    for target in ["parse_datagram", "frame_stream"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, message) in corpus().iter().enumerate() {
            std::fs::write(dir.join(format!("torture-{i:02}")), message).unwrap();
        }
    }
}
