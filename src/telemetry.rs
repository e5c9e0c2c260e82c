//! Logging setup: `tracing` with text or JSON output.
//!
//! Text logs are one line per event, and a value that arrived from the network (a login name, a
//! SIP header) may carry line breaks or terminal escapes: written raw, it would forge a log
//! line of its own or rewrite what the operator's terminal shows. Every event's text is written
//! through [`OneLine`], which escapes control characters other than the event's own final
//! newline. JSON logs escape them already.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(config: &LogConfig) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match config.format {
        LogFormat::Text => builder
            .with_writer(OneLine(io::stderr))
            .with_ansi(ansi)
            .try_init(),
        LogFormat::Json => builder
            .with_writer(io::stderr)
            .with_ansi(false)
            .json()
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
}

/// Writes each event as one line: control characters inside it are escaped.
#[derive(Clone, Copy)]
struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = Escaping<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        Escaping(self.0.make_writer())
    }
}

/// The writer of one event (the formatter writes each event whole, in one call).
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !body.iter().any(|&b| needs_escape(b)) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for (i, &b) in body.iter().enumerate() {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                // Colours the formatter itself writes on a terminal are `ESC [ digits;… m`;
                // any other ESC came from a value.
                0x1b if is_colour(&body[i + 1..]) => line.push(b),
                b if needs_escape(b) => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => line.push(b),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn needs_escape(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether what follows an ESC is an SGR colour sequence (`[ digits;… m`).
fn is_colour(after_escape: &[u8]) -> bool {
    let Some(rest) = after_escape.strip_prefix(b"[") else {
        return false;
    };
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b';'));
    end.is_some_and(|i| rest[i] == b'm')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(input: &[u8]) -> String {
        let mut out = Vec::new();
        Escaping(&mut out).write_all(input).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_value_cannot_start_a_log_line_of_its_own() {
        let forged =
            "INFO login refused agent=eve\n2026-01-01T00:00:00Z INFO agent logged in agent=admin\n";
        let out = written(forged.as_bytes());
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.ends_with("agent=admin\n"));
        assert!(out.contains("agent=eve\\n2026"), "{out}");
    }

    #[test]
    fn control_characters_are_escaped_but_colours_and_tabs_kept() {
        let out = written(b"\x1b[32mINFO\x1b[0m name=\x1b]0;owned\x07\tx\r\n");
        assert_eq!(out, "\x1b[32mINFO\x1b[0m name=\\x1b]0;owned\\x07\tx\\r\n");
    }

    #[test]
    fn a_plain_line_is_written_as_it_is() {
        assert_eq!(written(b"INFO all quiet\n"), "INFO all quiet\n");
    }
}
