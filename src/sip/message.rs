//! Building messages: responses to requests (RFC 3261 §8.2.6) and the headers we add.

use rsipstack::sip::{Header, Headers, Request, Response, StatusCode, Version};

/// A response to `req`: Via (all of them, in order), From, To, Call-ID and CSeq copied
/// (RFC 3261 §8.2.6.2), `to_tag` added to To when the request's To has none, and
/// `Content-Length: 0` (callers that add a body use [`set_body`]).
pub(crate) fn response(req: &Request, status: StatusCode, to_tag: Option<&str>) -> Response {
    let mut headers = Headers::default();
    for header in req.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone())
            }
            Header::To(to) => match to_tag {
                Some(tag) if !to.value().contains(";tag=") => headers.push(Header::To(
                    rsipstack::sip::To::new(format!("{};tag={tag}", to.value())),
                )),
                _ => headers.push(header.clone()),
            },
            _ => {}
        }
    }
    headers.push(Header::ContentLength(rsipstack::sip::ContentLength::new(
        "0",
    )));
    Response {
        status_code: status,
        wire_reason: None,
        version: Version::V2,
        headers,
        body: Vec::new(),
    }
}

/// Copies the request's Record-Route headers, in order, into a response that creates a dialog
/// (RFC 3261 §12.1.1: the UAS MUST copy them into every 18x and 2xx to the dialog-creating
/// request), so that the caller learns the route set the proxies on the way asked for.
pub(crate) fn copy_record_route(req: &Request, resp: &mut Response) {
    let routes: Vec<Header> = req
        .headers
        .iter()
        .filter(|h| matches!(h, Header::RecordRoute(_)))
        .cloned()
        .collect();
    insert_before_length(&mut resp.headers, routes);
}

/// Adds `extra` before the final Content-Length, which [`response`] and the dialog's requests
/// write last.
pub(crate) fn insert_before_length(headers: &mut Headers, extra: Vec<Header>) {
    if extra.is_empty() {
        return;
    }
    let length = headers.pop_first(|h| matches!(h, Header::ContentLength(_)).then(|| h.clone()));
    headers.extend(extra);
    if let Some(length) = length {
        headers.push(length);
    }
}

/// Whether a request is outside any dialog (its To has no tag), so that its 18x/2xx creates one.
pub(crate) fn creates_dialog(req: &Request) -> bool {
    req.headers.iter().any(|h| match h {
        Header::To(to) => !to.value().to_ascii_lowercase().contains(";tag="),
        _ => false,
    })
}

/// The option tags a request's `Require` lists that are not in `supported`
/// (RFC 3261 §8.2.2.3: such a request gets 420 with `Unsupported`).
pub(crate) fn unsupported_requirements(headers: &Headers, supported: &[&str]) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::Require(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
        .map(String::from)
        .collect()
}

/// A status code whose reason phrase says what went wrong (e.g. `400 Missing Call-ID`).
pub(crate) fn status_with_reason(code: u16, reason: &str) -> StatusCode {
    let clean: String = reason.chars().filter(|c| !c.is_control()).collect();
    StatusCode::Other(code, clean)
}

/// Replaces the body and its Content-Type/Content-Length headers.
pub(crate) fn set_body(
    headers: &mut Headers,
    body_slot: &mut Vec<u8>,
    content_type: &str,
    body: Vec<u8>,
) {
    headers.retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_)));
    headers.push(Header::ContentType(rsipstack::sip::ContentType::new(
        content_type,
    )));
    headers.push(Header::ContentLength(rsipstack::sip::ContentLength::new(
        body.len().to_string(),
    )));
    *body_slot = body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{Incoming, parse_datagram};

    #[test]
    fn a_response_copies_the_transaction_headers_and_tags_to() {
        let raw = "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a\r\n\
            Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-b\r\n\
            From: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\n\
            Call-ID: c@10.0.0.1\r\nCSeq: 1 INVITE\r\nSubject: hi\r\nContent-Length: 0\r\n\r\n";
        let Ok(Incoming::Request(req, _)) = parse_datagram(raw.as_bytes()) else {
            panic!()
        };
        let resp = response(&req, StatusCode::Ringing, Some("xyz"));
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 180 Ringing\r\n"));
        assert!(text.contains("To: <sip:echo@127.0.0.1>;tag=xyz\r\n"));
        assert!(!text.contains("Subject"));
        let a = text.find("z9hG4bK-a").unwrap();
        let b = text.find("z9hG4bK-b").unwrap();
        assert!(a < b, "Via order kept");
        // It parses back with the same keys.
        let Ok(Incoming::Response(_, meta)) = parse_datagram(text.as_bytes()) else {
            panic!()
        };
        assert_eq!(meta.to_tag.as_deref(), Some("xyz"));
    }

    #[test]
    fn a_custom_reason_phrase_is_written() {
        let status = status_with_reason(400, "Missing\r\nCall-ID");
        assert_eq!(status.code(), 400);
        assert_eq!(status.text(), "MissingCall-ID");
    }
}
