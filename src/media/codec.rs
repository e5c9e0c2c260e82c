//! The audio codecs a SIP leg's RTP carries: G.711 µ-law and A-law (ITU-T G.711, RFC 3551).
//! Signalling names them (SDP); the media engine, the transcoder and the recorder act on them.

/// An audio codec this gateway can send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static payload type of RFC 3551 §6, used in our offers.
    pub const fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name as written in `a=rtpmap`.
    pub(crate) const fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The codec a static payload type stands for (RFC 3551 §6).
    pub(crate) fn from_static(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The codec an encoding name stands for; names are case-insensitive (RFC 4855 §3).
    pub(crate) fn from_encoding_name(name: &str) -> Option<Codec> {
        [Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.encoding_name()))
    }
}
