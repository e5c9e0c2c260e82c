//! The wire layer: bytes in, validated messages out.
//!
//! rsipstack's `sip` types hold the message, but its parser is too trusting to face the network:
//! it ends lines at a bare LF, reads a malformed Content-Length as 0, strips `<>` around a
//! Request-URI, ends a user part at its first `;`, and knows no extension method. So this layer
//! reads the message itself, once, and uses rsipstack only to hold the result:
//!
//! - Framing (RFC 3261 §18.3): on UDP the datagram is the message and Content-Length is
//!   optional; on a stream Content-Length is mandatory. [`frame_stream`] finds the boundary (and
//!   RFC 5626 keep-alives) with the same line reader the parser uses, so the two cannot disagree
//!   about where a message ends.
//! - Validation: the start line, the Request-URI, and the grammar of the headers that
//!   transactions and dialogs read (Via, From, To, Call-ID, CSeq, Contact, Content-Length), as
//!   RFC 4475's torture messages exercise it. Other headers are kept as text and typed lazily.
//! - [`Meta`]: those headers extracted once.
//! - Refusal: every problem is a [`WireError`], mapped in [`WireError::status`] to the status a
//!   request is answered with (400 with a reason that says what is wrong, 416, 501, 505, 513)
//!   or to a silent drop. Responses and ACKs are never answered.
//!
//! Nothing here panics on any input; `fuzz/` drives [`parse_datagram`] and [`frame_stream`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use memchr::{memchr2, memmem};
use rsipstack::sip::{
    self, Auth, Domain, Headers, Host, HostWithPort, Method, Param, Port, Request, Response,
    Scheme, StatusCode, Uri, Version,
    headers::make_header,
    param::{OtherParam, OtherParamValue},
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
    /// `host[:port]`, lower-cased, IPv6 in its canonical bracketed form, the port without
    /// leading zeros: part of the server transaction key.
    pub sent_by: String,
    /// The transport named in the Via (`UDP`, `TCP` …), upper-cased.
    pub transport: String,
    /// `Some(None)` for a bare `;rport` (RFC 3581), `Some(Some(p))` when it has a value.
    pub rport: Option<Option<u16>>,
}

const MAGIC_COOKIE: &str = "z9hG4bK";

impl TopVia {
    /// Whether the branch carries the RFC 3261 magic cookie and an identifier after it, so it
    /// alone names the transaction. A bare cookie (RFC 4475 §3.2.1) falls back to RFC 2543
    /// matching.
    pub fn is_rfc3261(&self) -> bool {
        self.branch
            .as_deref()
            .is_some_and(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }
}

/// A parsed message with its [`Meta`].
#[derive(Debug, Clone)]
pub enum Incoming {
    Request(Request, Meta),
    Response(Response, Meta),
}

/// Why the wire layer refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Only CR and LF octets: a keep-alive, not a message.
    #[error("keep-alive")]
    KeepAlive,
    /// No empty line ends the header section.
    #[error("no end of headers")]
    NoEndOfHeaders,
    /// The header section is not UTF-8 (RFC 3261 §7.3.1 allows nothing else there).
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// A CR or LF outside a CRLF line end: peers that split lines on those would read a
    /// different message.
    #[error("Bare CR or LF in the header section")]
    BareLineBreak,
    /// A header line that is not `token ":" value`, or a continuation line with nothing to
    /// continue.
    #[error("Malformed header line")]
    MalformedHeaderLine,
    /// Not `Method SP Request-URI SP SIP-Version` with single spaces (RFC 3261 §7.1).
    #[error("Malformed Request-Line")]
    MalformedRequestLine,
    /// A Request-URI against its grammar: LWS, `<>`, escaped headers, a bad host (§19.1.1).
    #[error("Malformed Request-URI")]
    MalformedRequestUri,
    /// A well-formed Request-URI whose scheme is not sip, sips or tel (§8.2.2.1).
    #[error("Unsupported URI Scheme")]
    UnsupportedUriScheme,
    /// A request of another SIP version (§21.5.6).
    #[error("Version Not Supported")]
    VersionNotSupported,
    /// A method token this stack does not know (§8.2.1).
    #[error("Not Implemented")]
    UnknownMethod,
    /// Headers every message needs are absent (§8.1.1).
    #[error("Missing {0}")]
    Missing(MissingHeaders),
    /// A header allowed once appears more than once (§7.3.1, §20.14).
    #[error("Multiple {0} headers")]
    Repeated(&'static str),
    /// A header value against its grammar.
    #[error("Malformed {0}")]
    Malformed(&'static str),
    /// A CSeq sequence number beyond 2**32-1 (§8.1.1.5).
    #[error("CSeq number out of range")]
    CSeqOutOfRange,
    /// The CSeq method differs from the request method (§8.1.1.5).
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    /// A response whose CSeq names a method this stack never sends.
    #[error("Unknown CSeq method")]
    UnknownCSeqMethod,
    /// A datagram shorter than its Content-Length (§18.3).
    #[error("Content-Length larger than message")]
    ContentLengthTooLarge,
    /// A framed stream message whose body is not its Content-Length long.
    #[error("Content-Length does not match the message")]
    ContentLengthMismatch,
    /// No Content-Length on a stream, where nothing else can frame the message (§18.3).
    #[error("Missing Content-Length on a stream transport")]
    MissingContentLength,
    /// A message beyond the configured size limit.
    #[error("Message Too Large")]
    TooLarge,
    /// A Status-Line that is not `SIP/2.0 SP 1xx–6xx`; such responses are dropped (§21).
    #[error("malformed Status-Line")]
    MalformedStatusLine,
}

impl WireError {
    /// The status a request refused for this reason is answered with, or `None` when it is
    /// dropped. The one place wire errors become SIP statuses.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::KeepAlive | Self::NoEndOfHeaders | Self::NotUtf8 | Self::MalformedStatusLine => {
                None
            }
            Self::UnsupportedUriScheme => Some(416),
            Self::UnknownMethod => Some(501),
            Self::VersionNotSupported => Some(505),
            Self::TooLarge => Some(513),
            _ => Some(400),
        }
    }
}

/// Which of Via, From, To, Call-ID and CSeq are absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MissingHeaders(u8);

impl MissingHeaders {
    const NAMES: [&'static str; 5] = ["Via", "From", "To", "Call-ID", "CSeq"];

    /// Whether `name` (spelt as in RFC 3261) is among the missing.
    pub fn contains(self, name: &str) -> bool {
        Self::NAMES
            .iter()
            .position(|n| *n == name)
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for MissingHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (i, name) in Self::NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                write!(f, "{sep}{name}")?;
                sep = ", ";
            }
        }
        Ok(())
    }
}

/// Why a message was not accepted, and what (if anything) to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Human-readable cause, also the reason phrase of the reply.
    pub reason: Cow<'static, str>,
    /// A complete response to send to the source, when the message was an answerable request.
    pub reply: Option<Vec<u8>>,
    /// The cause itself.
    pub error: WireError,
}

impl Rejection {
    fn drop(error: WireError) -> Rejection {
        Rejection {
            reason: error.to_string().into(),
            reply: None,
            error,
        }
    }

    /// The status code of [`Rejection::reply`], when there is one.
    pub fn status(&self) -> Option<u16> {
        self.reply.as_ref().and(self.error.status())
    }
}

const END_OF_HEADERS: &[u8] = b"\r\n\r\n";

/// Parses one UDP datagram (RFC 3261 §18.3: bytes beyond Content-Length are discarded, a
/// Content-Length larger than the datagram is an error, an absent one means "the rest").
pub fn parse_datagram(buf: &[u8]) -> Result<Incoming, Rejection> {
    let buf = trim_leading_crlf(buf);
    if buf.is_empty() {
        return Err(Rejection::drop(WireError::KeepAlive));
    }
    let head = Head::read(buf)?;
    let available = buf.len() - head.body_start;
    let body_len = match head.content_length {
        Ok(Some(n)) if n > available => {
            return Err(head.reject(WireError::ContentLengthTooLarge));
        }
        Ok(Some(n)) => n,
        Ok(None) => available,
        Err(ref e) => return Err(head.reject(e.clone())),
    };
    let body = &buf[head.body_start..head.body_start + body_len];
    head.finish(body)
}

/// What [`frame_stream`] found at the front of a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// `skip` bytes of CRLF keep-alive to discard; answer with a CRLF when `pong` (RFC 5626
    /// §3.5.1: CRLFCRLF is a ping, a lone CRLF its pong).
    KeepAlive { skip: usize, pong: bool },
    /// A complete message occupies the first `len` bytes.
    Message { len: usize },
}

/// Finds the next message boundary in a stream (TCP) buffer. On a stream Content-Length is
/// mandatory (RFC 3261 §18.3); without a usable one the stream cannot be resynchronised, so
/// every error closes the connection once its reply (if any) is sent.
pub fn frame_stream(buf: &[u8], max_size: usize) -> Result<Frame, Rejection> {
    if let Some(frame) = keep_alive(buf) {
        return Ok(frame);
    }
    let Some(end) = memmem::find(buf, END_OF_HEADERS) else {
        if buf.len() > max_size {
            return Err(Rejection::drop(WireError::TooLarge));
        }
        return Ok(Frame::Incomplete);
    };
    let section =
        std::str::from_utf8(&buf[..end]).map_err(|_| Rejection::drop(WireError::NotUtf8))?;
    let reject = |error| match Head::read(buf) {
        Ok(head) => head.reject(error),
        Err(rejection) => rejection,
    };
    let body_len = match declared_length(section) {
        Ok(Some(n)) => n,
        Ok(None) => return Err(reject(WireError::MissingContentLength)),
        Err(e) => return Err(reject(e)),
    };
    let len = (end + END_OF_HEADERS.len()).saturating_add(body_len);
    if len > max_size {
        return Err(reject(WireError::TooLarge));
    }
    if buf.len() < len {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message { len })
}

/// A keep-alive at the front of `buf`, or `Incomplete` when `buf` may be the first half of a
/// ping; `None` when a message starts there.
fn keep_alive(buf: &[u8]) -> Option<Frame> {
    let run = buf.len() - trim_leading_crlf(buf).len();
    if run == 0 {
        return None;
    }
    let pings = buf
        .chunks_exact(4)
        .take_while(|c| *c == END_OF_HEADERS)
        .count();
    if pings > 0 {
        return Some(Frame::KeepAlive {
            skip: 4 * pings,
            pong: true,
        });
    }
    if run == buf.len() && END_OF_HEADERS.starts_with(buf) {
        return Some(Frame::Incomplete);
    }
    Some(Frame::KeepAlive {
        skip: run,
        pong: false,
    })
}

/// Parses one message already framed by [`frame_stream`] (or by a WebSocket frame, where
/// Content-Length is optional, RFC 7118).
pub fn parse_stream_message(buf: &[u8]) -> Result<Incoming, Rejection> {
    let buf = trim_leading_crlf(buf);
    let head = Head::read(buf)?;
    let body = &buf[head.body_start..];
    match head.content_length {
        Ok(Some(n)) if n != body.len() => Err(head.reject(WireError::ContentLengthMismatch)),
        Err(ref e) => Err(head.reject(e.clone())),
        Ok(_) => head.finish(body),
    }
}

fn trim_leading_crlf(buf: &[u8]) -> &[u8] {
    let n = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    &buf[n..]
}

/// The header a field is, by its full or compact name (RFC 3261 §7.3.3), where this layer
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Via,
    From,
    To,
    CallId,
    CSeq,
    ContentLength,
    Contact,
    Other,
}

impl Kind {
    fn of(name: &str) -> Kind {
        let is = |full: &str| name.eq_ignore_ascii_case(full);
        match name.len() {
            1 => match name.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Kind::Via,
                b'f' => Kind::From,
                b't' => Kind::To,
                b'i' => Kind::CallId,
                b'l' => Kind::ContentLength,
                b'm' => Kind::Contact,
                _ => Kind::Other,
            },
            2 if is("to") => Kind::To,
            3 if is("via") => Kind::Via,
            4 if is("from") => Kind::From,
            4 if is("cseq") => Kind::CSeq,
            7 if is("call-id") => Kind::CallId,
            7 if is("contact") => Kind::Contact,
            14 if is("content-length") => Kind::ContentLength,
            _ => Kind::Other,
        }
    }
}

/// One header field: its name as written and its value, continuation lines joined with a
/// single space (RFC 3261 §7.3.1).
struct Field<'a> {
    name: &'a str,
    kind: Kind,
    value: Cow<'a, str>,
}

/// Lines of a header section split at CRLF, each flagged when it holds a bare CR or LF.
struct PhysicalLines<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for PhysicalLines<'a> {
    type Item = (&'a str, bool);

    fn next(&mut self) -> Option<(&'a str, bool)> {
        let rest = self.rest?;
        let bytes = rest.as_bytes();
        let mut bare = false;
        let mut from = 0;
        while let Some(i) = memchr2(b'\r', b'\n', &bytes[from..]) {
            let i = from + i;
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                self.rest = Some(&rest[i + 2..]);
                return Some((&rest[..i], bare));
            }
            bare = true;
            from = i + 1;
        }
        self.rest = None;
        Some((rest, bare))
    }
}

/// The header fields after a start line. A field that can't be read is an error item; the
/// fields after it are still read, so a reply can copy them.
struct Fields<'a> {
    lines: std::iter::Peekable<PhysicalLines<'a>>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (line, mut bare) = self.lines.next()?;
        let field = split_field(line);
        let mut value = Cow::Borrowed(field.map_or("", |(_, v)| v));
        while let Some(&(next, next_bare)) = self.lines.peek()
            && next.starts_with([' ', '\t'])
        {
            self.lines.next();
            bare |= next_bare;
            let more = trim_lws(next);
            if value.is_empty() {
                value = Cow::Borrowed(more);
            } else if !more.is_empty() {
                // Appended in place: a field folded over thousands of lines stays linear.
                let value = value.to_mut();
                value.push(' ');
                value.push_str(more);
            }
        }
        if bare {
            return Some(Err(WireError::BareLineBreak));
        }
        let Some((name, _)) = field else {
            return Some(Err(WireError::MalformedHeaderLine));
        };
        Some(Ok(Field {
            name,
            kind: Kind::of(name),
            value,
        }))
    }
}

/// Splits the first line of a field into `name` and `value`, with the free whitespace around
/// the colon (RFC 3261 §7.3.1).
fn split_field(line: &str) -> Option<(&str, &str)> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let (name, value) = line.split_once(':')?;
    let name = trim_lws(name);
    is_token(name).then(|| (name, trim_lws(value)))
}

fn content_length_value(value: &str) -> Result<usize, WireError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        // RFC 4475 §3.1.2.3: negative or non-numeric lengths frame nothing.
        return Err(WireError::Malformed("Content-Length"));
    }
    // Only overflow is left to fail: a length beyond any buffer.
    Ok(value.parse().unwrap_or(usize::MAX))
}

/// Adds one Content-Length field to what is known: `Ok(None)` until one is seen.
fn note_length(known: &mut Result<Option<usize>, WireError>, value: &str) {
    if let Ok(previous) = known {
        *known = match previous {
            None => content_length_value(value).map(Some),
            Some(_) => Err(WireError::Repeated("Content-Length")),
        };
    }
}

/// The Content-Length of a header section, read as [`Head::read`] reads it.
fn declared_length(section: &str) -> Result<Option<usize>, WireError> {
    let mut lines = PhysicalLines {
        rest: Some(section),
    };
    lines.next();
    let mut known = Ok(None);
    let fields = Fields {
        lines: lines.peekable(),
    };
    for field in fields.flatten() {
        if field.kind == Kind::ContentLength {
            note_length(&mut known, &field.value);
        }
    }
    known
}

/// A message's start line and header fields, read but not yet judged.
struct Head<'a> {
    start: &'a str,
    /// Whether the start line holds a bare CR or LF.
    start_bare: bool,
    fields: Vec<Field<'a>>,
    /// The first header line that could not be read.
    field_error: Option<WireError>,
    content_length: Result<Option<usize>, WireError>,
    body_start: usize,
}

impl<'a> Head<'a> {
    fn read(buf: &'a [u8]) -> Result<Head<'a>, Rejection> {
        let end = memmem::find(buf, END_OF_HEADERS)
            .ok_or_else(|| Rejection::drop(WireError::NoEndOfHeaders))?;
        let section =
            std::str::from_utf8(&buf[..end]).map_err(|_| Rejection::drop(WireError::NotUtf8))?;
        let mut lines = PhysicalLines {
            rest: Some(section),
        };
        let (start, start_bare) = lines.next().unwrap_or(("", false));
        let mut head = Head {
            start,
            start_bare,
            fields: Vec::with_capacity(16),
            field_error: None,
            content_length: Ok(None),
            body_start: end + END_OF_HEADERS.len(),
        };
        let fields = Fields {
            lines: lines.peekable(),
        };
        for field in fields {
            match field {
                Ok(field) => {
                    if field.kind == Kind::ContentLength {
                        note_length(&mut head.content_length, &field.value);
                    }
                    head.fields.push(field);
                }
                Err(e) => {
                    head.field_error.get_or_insert(e);
                }
            }
        }
        Ok(head)
    }

    fn is_response(&self) -> bool {
        self.start
            .as_bytes()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    }

    fn reject(&self, error: WireError) -> Rejection {
        let reason = error.to_string();
        let reply = error
            .status()
            .and_then(|code| self.error_reply(code, &reason));
        Rejection {
            reason: reason.into(),
            reply,
            error,
        }
    }

    /// An error response built from the raw fields of a request that was refused (RFC 3261
    /// §8.2.6: all Vias, From, To, Call-ID and CSeq copied, a To tag added). It needs a Via and
    /// a CSeq, without which the sender could not match it to its transaction (§17.1.3); the
    /// others are copied when present. Responses and ACKs are never answered (§17.2.3).
    fn error_reply(&self, code: u16, reason: &str) -> Option<Vec<u8>> {
        if self.is_response() || self.start.split(' ').next() == Some("ACK") {
            return None;
        }
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        let (mut via, mut from, mut to, mut call_id, mut cseq) = (false, None, None, None, None);
        for field in &self.fields {
            let slot = match field.kind {
                Kind::Via => {
                    let _ = write!(out, "Via: {}\r\n", field.value);
                    via = true;
                    continue;
                }
                Kind::From => &mut from,
                Kind::To => &mut to,
                Kind::CallId => &mut call_id,
                Kind::CSeq => &mut cseq,
                _ => continue,
            };
            slot.get_or_insert(&*field.value);
        }
        let cseq = cseq.filter(|_| via)?;
        if let Some(from) = from {
            let _ = write!(out, "From: {from}\r\n");
        }
        if let Some(to) = to {
            match parse_address(to) {
                Some(address) if address.tag.is_none() => {
                    let top_via = self.fields.iter().find(|f| matches!(f.kind, Kind::Via));
                    let top_via = top_via.map_or("", |f| &*f.value);
                    let key = [call_id.unwrap_or(""), from.unwrap_or(""), top_via, cseq];
                    let _ = write!(out, "To: {to};tag={}\r\n", super::ids::stateless_tag(&key));
                }
                _ => {
                    let _ = write!(out, "To: {to}\r\n");
                }
            }
        }
        if let Some(call_id) = call_id {
            let _ = write!(out, "Call-ID: {call_id}\r\n");
        }
        let _ = write!(out, "CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n");
        Some(out.into_bytes())
    }

    fn finish(self, body: &[u8]) -> Result<Incoming, Rejection> {
        if self.is_response() {
            self.finish_response(body)
        } else {
            self.finish_request(body)
        }
    }

    /// Checks a request in the order RFC 3261 §8.2 inspects one: syntax first (start line,
    /// Request-URI, header fields), then the method (501), then the CSeq method, then the
    /// Request-URI scheme (416).
    fn finish_request(self, body: &[u8]) -> Result<Incoming, Rejection> {
        let line = if self.start_bare {
            Err(WireError::BareLineBreak)
        } else {
            request_line(self.start)
        };
        let line = line.map_err(|e| self.reject(e))?;
        let uri = request_uri(line.uri).map_err(|e| self.reject(e))?;
        if let Some(e) = &self.field_error {
            return Err(self.reject(e.clone()));
        }
        let found = extract(self.fields.iter().map(|f| (f.kind, &*f.value)))
            .and_then(|found| check_contacts(&self.fields).map(|()| found))
            .map_err(|e| self.reject(e))?;
        let Some(method) = known_method(line.method) else {
            return Err(self.reject(WireError::UnknownMethod));
        };
        if found.cseq_method != line.method {
            return Err(self.reject(WireError::CSeqMismatch));
        }
        let Some(uri) = uri else {
            return Err(self.reject(WireError::UnsupportedUriScheme));
        };
        let meta = found.into_meta().map_err(|e| self.reject(e))?;
        let request = Request {
            method,
            uri,
            version: Version::V2,
            headers: into_headers(self.fields),
            body: body.to_vec(),
        };
        Ok(Incoming::Request(request, meta))
    }

    fn finish_response(self, body: &[u8]) -> Result<Incoming, Rejection> {
        let (code, reason) = status_line(self.start)
            .filter(|_| !self.start_bare)
            .ok_or_else(|| Rejection::drop(WireError::MalformedStatusLine))?;
        if let Some(e) = self.field_error {
            return Err(Rejection::drop(e));
        }
        let meta = extract(self.fields.iter().map(|f| (f.kind, &*f.value)))
            .and_then(Found::into_meta)
            .map_err(Rejection::drop)?;
        let status_code = StatusCode::try_from((code, reason))
            .unwrap_or_else(|_| StatusCode::Other(code, reason.into()));
        let wire_reason = (!reason.is_empty()
            && !matches!(status_code, StatusCode::Other(..))
            && !reason.eq_ignore_ascii_case(status_code.text()))
        .then(|| reason.to_string());
        let response = Response {
            status_code,
            wire_reason,
            version: Version::V2,
            headers: into_headers(self.fields),
            body: body.to_vec(),
        };
        Ok(Incoming::Response(response, meta))
    }
}

fn into_headers(fields: Vec<Field<'_>>) -> Headers {
    let mut headers = Headers::from(Vec::with_capacity(fields.len()));
    for field in fields {
        headers.push(make_header(field.name, field.value.into_owned()));
    }
    headers
}

struct RequestLine<'a> {
    method: &'a str,
    uri: &'a str,
}

/// `Method SP Request-URI SP SIP-Version`, single spaces only (RFC 3261 §7.1; RFC 4475
/// §3.1.2.8–10 reject LWS inside the URI, runs of SP and trailing SP).
fn request_line(line: &str) -> Result<RequestLine<'_>, WireError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WireError::MalformedRequestLine);
    };
    if !is_token(method) || uri.is_empty() {
        return Err(WireError::MalformedRequestLine);
    }
    match sip_version(version) {
        Some((2, 0)) => Ok(RequestLine { method, uri }),
        Some(_) => Err(WireError::VersionNotSupported),
        None => Err(WireError::MalformedRequestLine),
    }
}

/// `SIP/2.0 SP Status-Code SP Reason-Phrase` with a code of 100–699 (RFC 3261 §7.2; RFC 4475
/// §3.1.2.19 drops larger ones). A missing reason phrase is tolerated.
fn status_line(line: &str) -> Option<(u16, &str)> {
    let (version, rest) = line.split_once(' ')?;
    if sip_version(version)? != (2, 0) {
        return None;
    }
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code = code.parse().ok()?;
    (100..700).contains(&code).then(|| (code, trim_lws(reason)))
}

/// `"SIP" "/" 1*DIGIT "." 1*DIGIT`, "SIP" in any case (RFC 3261 §7.1).
fn sip_version(text: &str) -> Option<(u16, u16)> {
    let prefix = text.as_bytes().get(..4)?;
    if !prefix.eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let (major, minor) = text[4..].split_once('.')?;
    let number = |d: &str| {
        (!d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .then(|| d.parse().ok())
            .flatten()
    };
    Some((number(major)?, number(minor)?))
}

/// Methods are case-sensitive (RFC 3261 §7.1): `invite` is an unknown method.
fn known_method(token: &str) -> Option<Method> {
    Some(match token {
        "ACK" => Method::Ack,
        "BYE" => Method::Bye,
        "CANCEL" => Method::Cancel,
        "INFO" => Method::Info,
        "INVITE" => Method::Invite,
        "MESSAGE" => Method::Message,
        "NOTIFY" => Method::Notify,
        "OPTIONS" => Method::Options,
        "PRACK" => Method::PRack,
        "PUBLISH" => Method::Publish,
        "REFER" => Method::Refer,
        "REGISTER" => Method::Register,
        "SUBSCRIBE" => Method::Subscribe,
        "UPDATE" => Method::Update,
        _ => return None,
    })
}

/// The Request-URI (RFC 3261 §19.1): `Ok(None)` when it is well-formed but of a scheme this
/// stack does not serve (sip, sips and tel are served).
fn request_uri(text: &str) -> Result<Option<Uri>, WireError> {
    let malformed = WireError::MalformedRequestUri;
    if !is_uri(text) {
        return Err(malformed);
    }
    let (scheme, rest) = text.split_once(':').ok_or(WireError::MalformedRequestUri)?;
    let sip = |scheme| sip_uri(scheme, rest).map(Some).ok_or(malformed.clone());
    if scheme.eq_ignore_ascii_case("sip") {
        sip(Scheme::Sip)
    } else if scheme.eq_ignore_ascii_case("sips") {
        sip(Scheme::Sips)
    } else if scheme.eq_ignore_ascii_case("tel") {
        sip::parse_uri(text)
            .map(Some)
            .map_err(|_| malformed.clone())
    } else {
        Ok(None)
    }
}

/// A SIP or SIPS Request-URI after its `scheme:` (RFC 3261 §19.1.1). The user part ends at the
/// `@` (it may hold `;`, RFC 4475 §3.1.1.9) and is unescaped, because rsipstack escapes it
/// again when it writes the URI. Headers (`?…`) are not allowed in a Request-URI.
fn sip_uri(scheme: Scheme, rest: &str) -> Option<Uri> {
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((userinfo, hostpart)) => (Some(userinfo), hostpart),
        None => (None, rest),
    };
    if hostpart.contains('?') {
        return None;
    }
    let (hostport, params) = match hostpart.split_once(';') {
        Some((hostport, params)) => (hostport, Some(params)),
        None => (hostpart, None),
    };
    let (host, port) = host_port(hostport)?;
    let auth = match userinfo {
        None => None,
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if user.is_empty() {
                return None;
            }
            Some(Auth {
                user: unescape(user)?,
                password: match password {
                    Some(password) => Some(unescape(password)?),
                    None => None,
                },
            })
        }
    };
    let mut list = Vec::new();
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (param, None),
        };
        if name.is_empty() || value == Some("") {
            return None;
        }
        // Unknown values of known parameters (`transport=foo`) stay as text.
        list.push(Param::try_from((name, value)).unwrap_or_else(|_| {
            Param::Other(OtherParam::new(name), value.map(OtherParamValue::new))
        }));
    }
    Some(Uri {
        scheme: Some(scheme),
        auth,
        host_with_port: HostWithPort {
            host: match host {
                HostRef::Name(name) => Host::Domain(Domain::from(name)),
                HostRef::Ip(ip) => Host::IpAddr(ip),
            },
            port: port.map(Port),
        },
        params: list,
        headers: Vec::new(),
    })
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2). Text that doesn't decode to UTF-8 is kept as
/// written; an escape without two hex digits is an error.
fn unescape(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
            out.push((hex(i + 1)? * 16 + hex(i + 2)?) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8(out).unwrap_or_else(|_| text.to_owned()))
}

#[derive(Debug, Clone, Copy)]
enum HostRef<'a> {
    Name(&'a str),
    Ip(IpAddr),
}

/// `host [":" port]` with an IPv6 reference in brackets (RFC 3261 §25.1).
fn host_port(text: &str) -> Option<(HostRef<'_>, Option<u16>)> {
    let (host, after) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        (HostRef::Ip(IpAddr::V6(ip.parse::<Ipv6Addr>().ok()?)), after)
    } else {
        let end = text.find(':').unwrap_or(text.len());
        let name = &text[..end];
        let hostname = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
        if name.is_empty() || !name.bytes().all(hostname) {
            return None;
        }
        let host = match name.parse::<Ipv4Addr>() {
            Ok(ip) => HostRef::Ip(IpAddr::V4(ip)),
            Err(_) => HostRef::Name(name),
        };
        (host, &text[end..])
    };
    let port = match after.strip_prefix(':') {
        None if after.is_empty() => None,
        None => return None,
        Some(digits) => Some(port_number(digits)?),
    };
    Some((host, port))
}

fn port_number(digits: &str) -> Option<u16> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What [`extract`] reads, borrowed from the message.
struct Found<'a> {
    call_id: &'a str,
    cseq: u32,
    cseq_method: &'a str,
    from_tag: Option<&'a str>,
    to_tag: Option<&'a str>,
    via: TopVia,
}

impl Found<'_> {
    fn into_meta(self) -> Result<Meta, WireError> {
        Ok(Meta {
            call_id: self.call_id.to_owned(),
            cseq: self.cseq,
            cseq_method: known_method(self.cseq_method).ok_or(WireError::UnknownCSeqMethod)?,
            from_tag: self.from_tag.map(str::to_owned),
            to_tag: self.to_tag.map(str::to_owned),
            via: self.via,
        })
    }
}

/// Reads Via, From, To, Call-ID and CSeq: repeated singletons first, then missing headers,
/// then each value's grammar, so the same message always gets the same answer.
fn extract<'a>(
    fields: impl Iterator<Item = (Kind, &'a str)> + Clone,
) -> Result<Found<'a>, WireError> {
    let (mut has_via, mut from, mut to, mut call_id, mut cseq) = (false, None, None, None, None);
    for (kind, value) in fields.clone() {
        let (slot, name) = match kind {
            Kind::Via => {
                has_via = true;
                continue;
            }
            Kind::From => (&mut from, "From"),
            Kind::To => (&mut to, "To"),
            Kind::CallId => (&mut call_id, "Call-ID"),
            Kind::CSeq => (&mut cseq, "CSeq"),
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(WireError::Repeated(name));
        }
    }
    let present = [
        has_via,
        from.is_some(),
        to.is_some(),
        call_id.is_some(),
        cseq.is_some(),
    ];
    let mut missing = MissingHeaders::default();
    for (i, present) in present.into_iter().enumerate() {
        if !present {
            missing.0 |= 1 << i;
        }
    }
    let (Some(from), Some(to), Some(call_id), Some(cseq)) = (from, to, call_id, cseq) else {
        return Err(WireError::Missing(missing));
    };
    if !missing.is_empty() {
        return Err(WireError::Missing(missing));
    }
    // Every Via value is checked, not only the top one: responses carry them all back.
    let mut top = None;
    for (_, value) in fields.filter(|(kind, _)| *kind == Kind::Via) {
        for element in split_outside(value, b',') {
            let via = parse_via(element).ok_or(WireError::Malformed("Via"))?;
            top.get_or_insert(via);
        }
    }
    let via = top.ok_or(WireError::Malformed("Via"))?;
    let from = parse_address(from).ok_or(WireError::Malformed("From"))?;
    let to = parse_address(to).ok_or(WireError::Malformed("To"))?;
    if call_id.is_empty() || !call_id.bytes().all(|b| b > b' ' && b != 0x7f) {
        return Err(WireError::Malformed("Call-ID"));
    }
    let (seq, cseq_method) = parse_cseq(cseq)?;
    Ok(Found {
        call_id,
        cseq: seq,
        cseq_method,
        from_tag: from.tag,
        to_tag: to.tag,
        via: via.to_top(),
    })
}

/// `CSeq: 1*DIGIT LWS Method`; leading zeros are fine (RFC 4475 §3.1.1.1), values beyond
/// 32 bits are not (RFC 3261 §8.1.1.5, RFC 4475 §3.1.2.4).
fn parse_cseq(value: &str) -> Result<(u32, &str), WireError> {
    let malformed = || WireError::Malformed("CSeq");
    let (seq, method) = value.split_once([' ', '\t']).ok_or_else(malformed)?;
    let method = trim_lws(method);
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return Err(malformed());
    }
    let seq = seq.parse().map_err(|_| WireError::CSeqOutOfRange)?;
    Ok((seq, method))
}

/// One Via value, borrowed.
struct ViaRef<'a> {
    transport: &'a str,
    host: HostRef<'a>,
    port: Option<u16>,
    branch: Option<&'a str>,
    rport: Option<Option<u16>>,
}

impl ViaRef<'_> {
    fn to_top(&self) -> TopVia {
        let mut sent_by = match self.host {
            HostRef::Name(name) => name.to_ascii_lowercase(),
            HostRef::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            HostRef::Ip(ip) => ip.to_string(),
        };
        if let Some(port) = self.port {
            let _ = write!(sent_by, ":{port}");
        }
        TopVia {
            branch: self.branch.map(str::to_owned),
            sent_by,
            transport: self.transport.to_ascii_uppercase(),
            rport: self.rport,
        }
    }
}

/// `protocol-name SLASH protocol-version SLASH transport LWS sent-by *(SEMI via-params)`, with
/// the free whitespace around slashes and semicolons (RFC 3261 §20.42, RFC 4475 §3.1.1.1).
fn parse_via(value: &str) -> Option<ViaRef<'_>> {
    let (name, rest) = value.split_once('/')?;
    let (version, rest) = rest.split_once('/')?;
    if !is_token(trim_lws(name)) || !is_token(trim_lws(version)) {
        return None;
    }
    let (transport, rest) = trim_lws_start(rest).split_once([' ', '\t'])?;
    if !is_token(transport) {
        return None;
    }
    let rest = trim_lws_start(rest);
    let end = rest.find(';').unwrap_or(rest.len());
    let (host, port) = host_port(trim_lws(&rest[..end]))?;
    let mut via = ViaRef {
        transport,
        host,
        port,
        branch: None,
        rport: None,
    };
    each_param(&rest[end..], |name, value| {
        if name.eq_ignore_ascii_case("branch") {
            via.branch.get_or_insert(value?);
        } else if name.eq_ignore_ascii_case("rport") {
            // RFC 3581: `rport` alone in a request, `rport=port` once filled in.
            via.rport = Some(value.map(port_number).map_or(Some(None), |p| p.map(Some))?);
        }
        Some(())
    })?;
    Some(via)
}

/// A `name-addr` or `addr-spec` and its header parameters (RFC 3261 §20.10, §25.1).
struct Address<'a> {
    tag: Option<&'a str>,
}

/// Checks an address as From, To and Contact hold it: a display name that is a quoted string
/// or tokens (RFC 4475 §3.1.2.6, §3.1.1.6, §3.1.2.15), a URI without spaces in `<>` (§3.1.2.14),
/// an unbracketed URI free of `?` and `,` (§3.1.2.13), and well-formed parameters
/// (§3.1.2.1), reading the `tag`.
fn parse_address(value: &str) -> Option<Address<'_>> {
    let value = trim_lws(value);
    let (uri, params) = if value.starts_with('"') {
        let end = quoted_string_end(value)?;
        in_angle_brackets(trim_lws_start(&value[end..]))?
    } else if let Some(lt) = value.find('<') {
        let display = &value[..lt];
        if !display
            .bytes()
            .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
        {
            return None;
        }
        in_angle_brackets(&value[lt..])?
    } else {
        let end = value.find(';').unwrap_or(value.len());
        let uri = trim_lws(&value[..end]);
        // RFC 3261 §20: a URI holding `,` `?` or `;` must be in `<>`; `;` starts parameters.
        if uri.contains(['?', ',']) {
            return None;
        }
        (uri, &value[end..])
    };
    if !is_uri(uri) {
        return None;
    }
    let mut tag = None;
    each_param(params, |name, value| {
        if name.eq_ignore_ascii_case("tag") {
            let value = value.filter(|v| is_token(v))?;
            tag.get_or_insert(value);
        }
        Some(())
    })?;
    Some(Address { tag })
}

fn in_angle_brackets(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix('<')?.split_once('>')
}

/// Walks the `;name[=value]` parameters in `text` (empty, or starting with `;`), calling
/// `each` with every one; `None` when one is empty or malformed (RFC 4475 §3.1.2.1) or `each`
/// refuses it.
fn each_param<'a>(
    text: &'a str,
    mut each: impl FnMut(&'a str, Option<&'a str>) -> Option<()>,
) -> Option<()> {
    let text = trim_lws(text);
    if text.is_empty() {
        return Some(());
    }
    for param in split_outside(text.strip_prefix(';')?, b';') {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (trim_lws(name), Some(trim_lws(value))),
            None => (trim_lws(param), None),
        };
        if !is_token(name) || value.is_some_and(|v| !is_gen_value(v)) {
            return None;
        }
        each(name, value)?;
    }
    Some(())
}

/// `token / host / quoted-string` (RFC 3261 §25.1 gen-value).
fn is_gen_value(value: &str) -> bool {
    if value.starts_with('"') {
        return quoted_string_end(value) == Some(value.len());
    }
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\",;".contains(&b))
}

/// The index just past the closing quote of the quoted string `text` starts with, honouring
/// `\`-escapes (RFC 3261 §25.1 quoted-pair).
fn quoted_string_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Splits `text` at each `sep` outside quoted strings and `<…>` (RFC 3261 §7.3.1).
fn split_outside(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        let bytes = text.as_bytes();
        let (mut quoted, mut angle, mut i) = (false, false, 0);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b if b == sep && !quoted && !angle => {
                    rest = Some(&text[i + 1..]);
                    return Some(&text[..i]);
                }
                _ => {}
            }
            i += 1;
        }
        rest = None;
        Some(text)
    })
}

/// Every Contact value is an address, or `*` (RFC 3261 §20.10).
fn check_contacts(fields: &[Field<'_>]) -> Result<(), WireError> {
    for field in fields.iter().filter(|f| f.kind == Kind::Contact) {
        if trim_lws(&field.value) == "*" {
            continue;
        }
        for element in split_outside(&field.value, b',') {
            parse_address(element).ok_or(WireError::Malformed("Contact"))?;
        }
    }
    Ok(())
}

/// `scheme ":" 1*uric` without spaces, quotes or angle brackets (RFC 3261 §25.1, RFC 3986).
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut scheme_bytes = scheme.bytes();
    scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !rest.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,%[]".contains(&b))
}

/// A token (RFC 3261 §25.1): methods, header names, parameter names.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn trim_lws(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

fn trim_lws_start(text: &str) -> &str {
    text.trim_start_matches([' ', '\t'])
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
        let reply = String::from_utf8(err.reply.unwrap()).unwrap();
        assert!(
            reply.starts_with("SIP/2.0 400 Missing Call-ID\r\n"),
            "{reply}"
        );
        assert!(!reply.contains("Call-ID:"), "{reply}");
        assert!(reply.contains("CSeq: 7 OPTIONS\r\n"), "{reply}");
    }

    #[test]
    fn without_via_or_cseq_nothing_can_be_answered() {
        for header in [
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n",
            "CSeq: 7 OPTIONS\r\n",
        ] {
            let text = OPTIONS.replace(header, "");
            let err = parse_datagram(text.as_bytes()).unwrap_err();
            assert!(matches!(err.error, WireError::Missing(_)), "{err:?}");
            assert_eq!(err.reply, None);
        }
    }

    #[test]
    fn an_unknown_method_gets_501_with_the_dialog_headers_copied() {
        let text = OPTIONS
            .replacen("OPTIONS sip", "FOOBAR sip", 1)
            .replace("7 OPTIONS", "7 FOOBAR");
        let err = parse_datagram(text.as_bytes()).unwrap_err();
        assert_eq!(err.status(), Some(501));
        let reply = String::from_utf8(err.reply.unwrap()).unwrap();
        assert!(
            reply.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{reply}"
        );
        assert!(reply.contains("Call-ID: call-1@127.0.0.1\r\n"));
        assert!(reply.contains("To: <sip:tandem@127.0.0.1>;tag="));
    }

    #[test]
    fn a_reply_parses_back_to_the_same_transaction() {
        let text = OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE");
        let err = parse_datagram(text.as_bytes()).unwrap_err();
        assert_eq!(err.error, WireError::CSeqMismatch);
        let Ok(Incoming::Response(resp, meta)) = parse_datagram(&err.reply.unwrap()) else {
            panic!("the reply does not parse");
        };
        assert_eq!(resp.status_code.code(), 400);
        assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK-1"));
        assert_eq!(meta.call_id, "call-1@127.0.0.1");
        assert_eq!(meta.cseq_method, Method::Invite);
        assert!(meta.to_tag.is_some());
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

    #[test]
    fn a_sip_request_uri_round_trips_through_rsipstack() {
        for (text, user, host) in [
            (
                "sip:alice@example.com:5070;transport=tcp;lr",
                Some("alice"),
                "example.com",
            ),
            ("sips:[2001:db8::10]:5071;maddr=x", None, "[2001:db8::10]"),
            (
                "sip:user;par=u%40example.net@example.com",
                Some("user;par=u@example.net"),
                "example.com",
            ),
            (
                "sip:%61lice:pw@192.0.2.1;transport=foo",
                Some("alice"),
                "192.0.2.1",
            ),
        ] {
            let uri = request_uri(text).unwrap().unwrap();
            assert_eq!(uri.user(), user, "{text}");
            assert_eq!(uri.host().to_string(), host, "{text}");
            let written = uri.to_string();
            assert_eq!(request_uri(&written).unwrap().unwrap(), uri, "{written}");
        }
    }

    #[test]
    fn request_uris_against_the_grammar_are_refused() {
        for text in [
            "<sip:a@b>",
            "sip:a@b?Route=x",
            "sip:",
            "sip:@b",
            "sip:a@",
            "sip:a@b;;lr",
            "sip:a@b:99999",
            "sip:a@[::1",
            "sip:%zz@b",
            "sip:a b@c",
        ] {
            assert_eq!(
                request_uri(text),
                Err(WireError::MalformedRequestUri),
                "{text}"
            );
        }
        assert_eq!(request_uri("soap.beep://192.0.2.103:3002"), Ok(None));
        assert!(matches!(request_uri("tel:+15551234567"), Ok(Some(_))));
    }

    #[test]
    fn addresses_follow_the_name_addr_grammar() {
        for (text, tag) in [
            ("<sip:a@b>;tag=1", Some("1")),
            ("sip:a@b ;  tag = 2", Some("2")),
            ("\"A \\\"B\\\\\" <sip:a@b>;x;tag=3", Some("3")),
            ("a b<sip:a@b>", None),
            ("<sip:a@b?X=1>;x=\"q;r\"", None),
            ("isbn:2983792873", None),
        ] {
            assert_eq!(parse_address(text).map(|a| a.tag), Some(tag), "{text}");
        }
        for text in [
            "\"A <sip:a@b>",
            "A, B <sip:a@b>",
            "< sip:a@b >",
            "sip:a@b?X=1",
            "<sip:a@b>;;",
            "<sip:a@b>;tag",
            "<sip:a@b> junk",
            "",
        ] {
            assert!(parse_address(text).is_none(), "{text}");
        }
    }

    #[test]
    fn vias_follow_their_grammar() {
        let via = parse_via("SIP / 2.0 / udp  [2001:DB8::10]:05070 ; branch = z9hG4bKx ; rport=5")
            .unwrap()
            .to_top();
        assert_eq!(via.sent_by, "[2001:db8::10]:5070");
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.branch.as_deref(), Some("z9hG4bKx"));
        assert_eq!(via.rport, Some(Some(5)));
        for text in [
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host;;",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0 host",
            "SIP/2.0/UDP ho st",
        ] {
            assert!(parse_via(text).is_none(), "{text}");
        }
    }

    #[test]
    fn missing_headers_are_listed_in_rfc_order() {
        let missing = MissingHeaders(0b01110);
        assert_eq!(missing.to_string(), "From, To, Call-ID");
        assert!(missing.contains("To"));
        assert!(!missing.contains("Via"));
    }
}
