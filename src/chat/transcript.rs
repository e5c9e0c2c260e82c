//! Transcripts for people: plain text and HTML, system events included. Which events a
//! transcript tells, and how, is [`crate::presentation::transcript`].

use crate::bridge::{Event, EventKind};
use crate::presentation::transcript::line;

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn customer_name(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Created { customer, .. } => customer.name.clone(),
            _ => None,
        })
        .unwrap_or_else(|| "customer".into())
}

/// The transcript as plain text, one line per event.
pub fn to_text(events: &[Event]) -> String {
    let customer = customer_name(events);
    let mut out = String::new();
    for line in events.iter().filter_map(|e| line(e, &customer)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The transcript as a standalone HTML page.
pub fn to_html(title: &str, events: &[Event]) -> String {
    let customer = customer_name(events);
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1><ol>\n",
        escape(title),
        escape(title)
    );
    for event in events {
        if let Some(line) = line(event, &customer) {
            let class = if matches!(event.kind, EventKind::Message { .. }) {
                "message"
            } else {
                "system"
            };
            out.push_str(&format!("<li class=\"{class}\">{}</li>\n", escape(&line)));
        }
    }
    out.push_str("</ol></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_civil_utc() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_704_094_200_000), "2024-01-01 07:30:00");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
    }
}
