//! The wire layer: bytes in, validated messages out.
//!
//! rsipstack's `sip` types hold the message; this layer does what its parser leaves to the
//! caller. It frames messages (RFC 3261 §18.3: on UDP the datagram is the message and
//! Content-Length is optional; on a stream Content-Length is mandatory), checks the headers
//! every transaction needs (Via, From, To, Call-ID, CSeq), extracts them once into [`Meta`], and
//! turns every refusal into a [`Rejection`]: either a ready-made error response for the sender
//! (`400` with a reason that says what is wrong, `501` for an unknown method, `505` for another
//! SIP version) or a silent drop when nothing can be answered.
//!
//! Nothing here panics on any input; `fuzz/` drives [`parse_datagram`] and [`frame_stream`].

use std::borrow::Cow;

use rsipstack::sip::{
    self, Header, Method, Request, Response, SipMessage,
    typed::{CSeq, From, To, Via},
};

/// Header fields every transaction and dialog needs, parsed once on receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    pub from_tag: Option<String>,
    pub to_tag: Option<String>,
    pub via: TopVia,
}

/// The topmost Via: where responses go and what names the transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopVia {
    /// The branch parameter, when present.
    pub branch: Option<String>,
    /// `host[:port]` as written, lower-cased: part of the server transaction key.
    pub sent_by: String,
    /// The transport named in the Via (`UDP`, `TCP` …).
    pub transport: String,
    /// `Some(None)` for a bare `;rport` (RFC 3581), `Some(Some(p))` when it has a value.
    pub rport: Option<Option<u16>>,
}

impl TopVia {
    /// Whether the branch carries the RFC 3261 magic cookie, so it alone names the transaction.
    pub fn is_rfc3261(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

/// A parsed message with its [`Meta`].
#[derive(Debug, Clone)]
pub enum Incoming {
    Request(Request, Meta),
    Response(Response, Meta),
}

/// Why a message was not accepted, and what (if anything) to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Human-readable cause, also the reason phrase of the reply.
    pub reason: Cow<'static, str>,
    /// A complete response to send to the source, when the message was an answerable request.
    pub reply: Option<Vec<u8>>,
}

impl Rejection {
    fn drop(reason: impl Into<Cow<'static, str>>) -> Rejection {
        Rejection {
            reason: reason.into(),
            reply: None,
        }
    }
}

const MAGIC_TERMINATOR: &[u8] = b"\r\n\r\n";

/// Where the header section ends: the index just past the empty line.
fn header_end(buf: &[u8]) -> Option<usize> {
    memchr_find(buf, MAGIC_TERMINATOR).map(|i| i + MAGIC_TERMINATOR.len())
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Header lines of a header section, with folded continuation lines joined (RFC 3261 §7.3.1).
fn unfolded_lines(head: &str) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                let joined = format!("{} {}", last.trim_end(), line.trim());
                *last = Cow::Owned(joined);
            }
            continue;
        }
        out.push(Cow::Borrowed(line));
    }
    out
}

/// Splits `Name: value` with the RFC's free whitespace around the colon.
fn split_header(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    Some((line[..colon].trim(), line[colon + 1..].trim()))
}

fn is_content_length(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l")
}

/// The declared Content-Length: `Ok(None)` when absent, an error when malformed or repeated.
fn declared_length(lines: &[Cow<'_, str>]) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    for line in lines.iter().skip(1) {
        let Some((name, value)) = split_header(line) else {
            continue;
        };
        if is_content_length(name) {
            if found.is_some() {
                return Err("Multiple Content-Length headers");
            }
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 9 {
                return Err("Malformed Content-Length");
            }
            found = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| "Malformed Content-Length")?,
            );
        }
    }
    Ok(found)
}

/// Parses one UDP datagram (RFC 3261 §18.3: bytes beyond Content-Length are discarded, a
/// Content-Length larger than the datagram is an error, an absent one means "the rest").
pub fn parse_datagram(buf: &[u8]) -> Result<Incoming, Rejection> {
    let buf = trim_leading_crlf(buf);
    if buf.is_empty() {
        return Err(Rejection::drop("keep-alive"));
    }
    let end = header_end(buf).ok_or_else(|| Rejection::drop("no end of headers"))?;
    let head = std::str::from_utf8(&buf[..end - 4])
        .map_err(|_| Rejection::drop("header section is not UTF-8"))?;
    let lines = unfolded_lines(head);
    let available = buf.len() - end;
    let body_len = match declared_length(&lines) {
        Ok(Some(n)) if n > available => {
            return Err(reject(&lines, 400, "Content-Length larger than message"));
        }
        Ok(Some(n)) => n,
        Ok(None) => available,
        Err(reason) => return Err(reject(&lines, 400, reason)),
    };
    parse_framed(&buf[..end + body_len], &lines, end)
}

/// What [`frame_stream`] found at the front of a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// `skip` bytes of CRLF keep-alive to discard (RFC 5626 §3.5.1 double-CRLF ping when `pong`).
    KeepAlive { skip: usize, pong: bool },
    /// A complete message occupies the first `len` bytes.
    Message { len: usize },
}

/// Finds the next message boundary in a stream (TCP) buffer. On a stream Content-Length is
/// mandatory (RFC 3261 §18.3); without it the stream cannot be resynchronised, so the error
/// closes the connection after the reply is sent.
pub fn frame_stream(buf: &[u8], max_size: usize) -> Result<Frame, Rejection> {
    let crlf = buf.len() - trim_leading_crlf(buf).len();
    if crlf > 0 {
        return Ok(Frame::KeepAlive {
            skip: crlf,
            pong: crlf >= 4,
        });
    }
    let Some(end) = header_end(buf) else {
        if buf.len() > max_size {
            return Err(Rejection::drop("headers exceed the message size limit"));
        }
        return Ok(Frame::Incomplete);
    };
    let head = std::str::from_utf8(&buf[..end - 4])
        .map_err(|_| Rejection::drop("header section is not UTF-8"))?;
    let lines = unfolded_lines(head);
    let body_len = match declared_length(&lines) {
        Ok(Some(n)) => n,
        Ok(None) => {
            return Err(reject(
                &lines,
                400,
                "Missing Content-Length on a stream transport",
            ));
        }
        Err(reason) => return Err(reject(&lines, 400, reason)),
    };
    if end + body_len > max_size {
        return Err(reject(&lines, 413, "Message Too Large"));
    }
    if buf.len() < end + body_len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message {
        len: end + body_len,
    })
}

/// Parses one message already framed by [`frame_stream`].
pub fn parse_stream_message(buf: &[u8]) -> Result<Incoming, Rejection> {
    let end = header_end(buf).ok_or_else(|| Rejection::drop("no end of headers"))?;
    let head = std::str::from_utf8(&buf[..end - 4])
        .map_err(|_| Rejection::drop("header section is not UTF-8"))?;
    let lines = unfolded_lines(head);
    parse_framed(buf, &lines, end)
}

fn trim_leading_crlf(buf: &[u8]) -> &[u8] {
    let n = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    &buf[n..]
}

/// `buf` is exactly one message whose body starts at `body_start`.
fn parse_framed(
    buf: &[u8],
    lines: &[Cow<'_, str>],
    body_start: usize,
) -> Result<Incoming, Rejection> {
    let start = lines.first().map(|l| l.as_ref()).unwrap_or("");
    let is_request = !start.starts_with("SIP/");
    if is_request {
        check_request_line(start).map_err(|(code, reason)| reject(lines, code, reason))?;
    } else {
        check_status_line(start).map_err(Rejection::drop)?;
    }
    let message = sip::parser::parse_message(buf).map_err(|e| {
        if is_request {
            reject(lines, 400, describe(&e))
        } else {
            Rejection::drop(format!("unparsable response: {e}"))
        }
    })?;
    match message {
        SipMessage::Request(mut req) => {
            req.body = buf[body_start..].to_vec();
            let meta = meta_of(&req.headers).map_err(|reason| reject(lines, 400, reason))?;
            if meta.cseq_method != req.method {
                return Err(reject(
                    lines,
                    400,
                    "CSeq method does not match the request method",
                ));
            }
            Ok(Incoming::Request(req, meta))
        }
        SipMessage::Response(mut resp) => {
            resp.body = buf[body_start..].to_vec();
            let meta = meta_of(&resp.headers).map_err(Rejection::drop)?;
            Ok(Incoming::Response(resp, meta))
        }
    }
}

fn describe(e: &sip::Error) -> String {
    let text = e.to_string();
    // Reason phrases are one line of printable text.
    let clean: String = text.chars().filter(|c| !c.is_control()).take(120).collect();
    format!("Bad Request ({clean})")
}

/// A method token per RFC 3261 §25.1.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

fn known_method(s: &str) -> bool {
    matches!(
        s,
        "ACK"
            | "BYE"
            | "CANCEL"
            | "INFO"
            | "INVITE"
            | "MESSAGE"
            | "NOTIFY"
            | "OPTIONS"
            | "PRACK"
            | "PUBLISH"
            | "REFER"
            | "REGISTER"
            | "SUBSCRIBE"
            | "UPDATE"
    )
}

fn check_request_line(line: &str) -> Result<(), (u16, &'static str)> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((400, "Malformed Request-Line"));
    };
    if !is_token(method) {
        return Err((400, "Malformed method"));
    }
    if uri.is_empty() || !uri.contains(':') {
        return Err((400, "Malformed Request-URI"));
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err((505, "Version Not Supported"));
    }
    if !known_method(method) {
        return Err((501, "Not Implemented"));
    }
    Ok(())
}

fn check_status_line(line: &str) -> Result<(), &'static str> {
    let mut parts = line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err("malformed Status-Line");
    };
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err("unsupported SIP version in response");
    }
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || code.as_bytes()[0] == b'0' {
        return Err("malformed status code");
    }
    Ok(())
}

/// Extracts [`Meta`] from a parsed message's headers.
pub fn meta_of(headers: &sip::Headers) -> Result<Meta, Cow<'static, str>> {
    let mut call_id = None;
    let mut cseq = None;
    let mut from = None;
    let mut to = None;
    let mut via = None;
    for header in headers.iter() {
        match header {
            Header::CallId(v) => once(&mut call_id, v.value(), "Call-ID")?,
            Header::CSeq(v) => once(&mut cseq, v.value(), "CSeq")?,
            Header::From(v) => once(&mut from, v.value(), "From")?,
            Header::To(v) => once(&mut to, v.value(), "To")?,
            Header::Via(v) if via.is_none() => via = Some(v.value()),
            _ => {}
        }
    }
    let call_id = call_id.ok_or("Missing Call-ID")?;
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err("Malformed Call-ID".into());
    }
    let cseq = CSeq::parse(cseq.ok_or("Missing CSeq")?).map_err(|_| "Malformed CSeq")?;
    if cseq.seq >= 1 << 31 {
        // RFC 3261 §8.1.1.5: the sequence number must be less than 2**31.
        return Err("CSeq number out of range".into());
    }
    let from = From::parse(from.ok_or("Missing From")?).map_err(|_| "Malformed From")?;
    let to = To::parse(to.ok_or("Missing To")?).map_err(|_| "Malformed To")?;
    let via = top_via(via.ok_or("Missing Via")?)?;
    Ok(Meta {
        call_id: call_id.to_string(),
        cseq: cseq.seq,
        cseq_method: cseq.method,
        from_tag: from.tag().map(|t| t.to_string()),
        to_tag: to.tag().map(|t| t.to_string()),
        via,
    })
}

fn once<'a>(
    slot: &mut Option<&'a str>,
    value: &'a str,
    name: &'static str,
) -> Result<(), Cow<'static, str>> {
    if slot.is_some() {
        return Err(format!("Multiple {name} headers").into());
    }
    *slot = Some(value);
    Ok(())
}

/// Parses the first value of a (possibly comma-separated) Via header.
fn top_via(value: &str) -> Result<TopVia, Cow<'static, str>> {
    let first = value.split(',').next().unwrap_or("").trim();
    let via = Via::parse(first).map_err(|_| "Malformed Via")?;
    let mut branch = None;
    let mut rport = None;
    for param in &via.params {
        match param {
            sip::Param::Branch(b) => branch = Some(b.to_string()),
            sip::Param::Rport(p) => rport = Some(*p),
            _ => {}
        }
    }
    Ok(TopVia {
        branch,
        sent_by: via.uri.host_with_port.to_string().to_ascii_lowercase(),
        transport: via.transport.to_string(),
        rport,
    })
}

/// Builds an error response from the raw header lines of a request that could not be fully
/// parsed (RFC 3261 §8.2.6: Via, From, To, Call-ID and CSeq are copied). Returns `None` when
/// the message is not a request or those headers are not all there.
fn reject(lines: &[Cow<'_, str>], code: u16, reason: impl Into<Cow<'static, str>>) -> Rejection {
    let reason = reason.into();
    let reply = error_reply(lines, code, &reason);
    Rejection { reason, reply }
}

fn error_reply(lines: &[Cow<'_, str>], code: u16, reason: &str) -> Option<Vec<u8>> {
    let start = lines.first()?;
    if start.starts_with("SIP/") || start.starts_with("ACK ") {
        // Responses are never answered, and neither is ACK (RFC 3261 §17.2.3).
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    let mut have = [false; 5];
    for line in lines.iter().skip(1) {
        let Some((name, value)) = split_header(line) else {
            continue;
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "via" | "v" => 0,
            "from" | "f" => 1,
            "to" | "t" => 2,
            "call-id" | "i" => 3,
            "cseq" => 4,
            _ => continue,
        };
        if slot == 2 && !value.contains(";tag=") {
            out.push_str(&format!("To: {value};tag={}\r\n", super::ids::new_tag()));
        } else {
            let canonical = ["Via", "From", "To", "Call-ID", "CSeq"][slot];
            out.push_str(&format!("{canonical}: {value}\r\n"));
        }
        have[slot] = true;
    }
    if !have.iter().all(|h| *h) {
        return None;
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:tandem@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n\
        Max-Forwards: 70\r\n\
        From: <sip:a@127.0.0.1>;tag=abc\r\n\
        To: <sip:tandem@127.0.0.1>\r\n\
        Call-ID: call-1@127.0.0.1\r\n\
        CSeq: 7 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn meta_is_extracted_once() {
        let Ok(Incoming::Request(req, meta)) = parse_datagram(OPTIONS.as_bytes()) else {
            panic!("not parsed");
        };
        assert_eq!(req.method, Method::Options);
        assert_eq!(meta.call_id, "call-1@127.0.0.1");
        assert_eq!(meta.cseq, 7);
        assert_eq!(meta.from_tag.as_deref(), Some("abc"));
        assert_eq!(meta.to_tag, None);
        assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK-1"));
        assert_eq!(meta.via.sent_by, "127.0.0.1:5070");
        assert_eq!(meta.via.rport, Some(None));
        assert!(meta.via.is_rfc3261());
    }

    #[test]
    fn a_missing_call_id_gets_a_400_that_says_so() {
        let text = OPTIONS.replace("Call-ID: call-1@127.0.0.1\r\n", "");
        let err = parse_datagram(text.as_bytes()).unwrap_err();
        assert_eq!(err.reason, "Missing Call-ID");
        // No Call-ID to copy, so no reply can be built.
        assert!(err.reply.is_none());
    }

    #[test]
    fn an_unknown_method_gets_501_with_the_dialog_headers_copied() {
        let text = OPTIONS
            .replacen("OPTIONS sip", "FOOBAR sip", 1)
            .replace("7 OPTIONS", "7 FOOBAR");
        let err = parse_datagram(text.as_bytes()).unwrap_err();
        let reply = String::from_utf8(err.reply.unwrap()).unwrap();
        assert!(
            reply.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{reply}"
        );
        assert!(reply.contains("Call-ID: call-1@127.0.0.1\r\n"));
        assert!(reply.contains("To: <sip:tandem@127.0.0.1>;tag="));
    }

    #[test]
    fn a_datagram_shorter_than_its_content_length_is_refused() {
        let text = OPTIONS.replace("Content-Length: 0", "Content-Length: 10");
        let err = parse_datagram(text.as_bytes()).unwrap_err();
        assert_eq!(err.reason, "Content-Length larger than message");
        assert!(err.reply.unwrap().starts_with(b"SIP/2.0 400 "));
    }

    #[test]
    fn a_stream_needs_content_length() {
        let text = OPTIONS.replace("Content-Length: 0\r\n", "");
        assert_eq!(
            frame_stream(text.as_bytes(), 65535).unwrap_err().reason,
            "Missing Content-Length on a stream transport"
        );
        let two = format!("{OPTIONS}{OPTIONS}");
        assert_eq!(
            frame_stream(two.as_bytes(), 65535),
            Ok(Frame::Message { len: OPTIONS.len() })
        );
        assert_eq!(
            frame_stream(&OPTIONS.as_bytes()[..20], 65535),
            Ok(Frame::Incomplete)
        );
        assert_eq!(
            frame_stream(b"\r\n\r\nOPT", 65535),
            Ok(Frame::KeepAlive {
                skip: 4,
                pong: true
            })
        );
    }
}
