//! SRTP (RFC 3711) with keys exchanged in SDP (SDES, RFC 4568), for SIP legs over TLS: the
//! `AES_CM_128_HMAC_SHA1_80` suite, the one every SDES peer supports. Sans-IO: packets in,
//! packets out, on the aws-lc-rs primitives the rest of the tree uses.
//!
//! One [`Context`] protects or unprotects one direction of one call. The rollover counter is
//! kept per SSRC (§3.3.1); there is no replay list (the relay behind it latches one source and
//! forwards, it does not act on content), and no key lifetime or MKI (refused when offered).

use std::collections::HashMap;

use crate::sip::ids::Ids;
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use base64::Engine;

/// The crypto suite Tandem offers and accepts.
pub(crate) const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";
const MASTER_KEY: usize = 16;
const MASTER_SALT: usize = 14;
const AUTH_TAG: usize = 10;
const RTP_HEADER: usize = 12;

/// Why a packet or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SrtpError {
    /// The `inline:` key is not 30 bytes of base64, or carries a lifetime or MKI.
    #[error("unusable SDES key")]
    BadKey,
    /// Shorter than an RTP header plus the authentication tag, or not RTP version 2.
    #[error("not an SRTP packet")]
    Malformed,
    /// The authentication tag does not match: not from our peer, or altered.
    #[error("SRTP authentication failed")]
    Unauthentic,
}

/// Master key and salt, as `inline:` carries them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct MasterKey {
    key: [u8; MASTER_KEY],
    salt: [u8; MASTER_SALT],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// A fresh key and salt from `ids` (RFC 3711 §8.1: keys are random).
    pub(crate) fn generate(ids: &mut Ids) -> MasterKey {
        MasterKey {
            key: ids.bytes(),
            salt: ids.bytes(),
        }
    }

    /// From the key parameter of an `a=crypto` line: `inline:<base64>` without `|lifetime`
    /// or `|MKI`.
    pub(crate) fn from_inline(param: &str) -> Result<MasterKey, SrtpError> {
        let encoded = param.strip_prefix("inline:").ok_or(SrtpError::BadKey)?;
        if encoded.contains('|') {
            return Err(SrtpError::BadKey);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| SrtpError::BadKey)?;
        if bytes.len() != MASTER_KEY + MASTER_SALT {
            return Err(SrtpError::BadKey);
        }
        let mut key = [0; MASTER_KEY];
        let mut salt = [0; MASTER_SALT];
        key.copy_from_slice(&bytes[..MASTER_KEY]);
        salt.copy_from_slice(&bytes[MASTER_KEY..]);
        Ok(MasterKey { key, salt })
    }

    pub(crate) fn inline(&self) -> String {
        let mut bytes = self.key.to_vec();
        bytes.extend_from_slice(&self.salt);
        format!(
            "inline:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }
}

/// AES-CM keystream XORed into `data` (RFC 3711 §4.1.1).
fn aes_cm(key: &EncryptingKey, iv: [u8; 16], data: &mut [u8]) {
    key.less_safe_encrypt(data, EncryptionContext::Iv128(iv.into()))
        .expect("CTR mode takes any length");
}

fn aes_key(key: &[u8]) -> EncryptingKey {
    let unbound = UnboundCipherKey::new(&AES_128, key).expect("a 128-bit key");
    EncryptingKey::ctr(unbound).expect("AES-128 runs in CTR mode")
}

/// The session keys of one direction (RFC 3711 §4.3.1, key derivation rate 0).
pub(crate) struct Context {
    cipher: EncryptingKey,
    auth: hmac::Key,
    salt: [u8; MASTER_SALT],
    /// Per SSRC: the highest sequence number seen and the rollover counter.
    streams: HashMap<u32, (u16, u32)>,
}

impl Context {
    pub(crate) fn new(master: &MasterKey) -> Context {
        let derive = |label: u8, len: usize| -> Vec<u8> {
            let mut iv = [0u8; 16];
            iv[..MASTER_SALT].copy_from_slice(&master.salt);
            iv[7] ^= label;
            let mut out = vec![0u8; len];
            aes_cm(&aes_key(&master.key), iv, &mut out);
            out
        };
        let mut salt = [0u8; MASTER_SALT];
        salt.copy_from_slice(&derive(2, MASTER_SALT));
        Context {
            cipher: aes_key(&derive(0, MASTER_KEY)),
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &derive(1, 20)),
            salt,
            streams: HashMap::new(),
        }
    }

    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        iv
    }

    fn tag(&self, authenticated: &[u8], roc: u32) -> [u8; AUTH_TAG] {
        let mut context = hmac::Context::with_key(&self.auth);
        context.update(authenticated);
        context.update(&roc.to_be_bytes());
        let mut tag = [0u8; AUTH_TAG];
        tag.copy_from_slice(&context.sign().as_ref()[..AUTH_TAG]);
        tag
    }

    /// Encrypts and authenticates an RTP packet in place (the tag is appended).
    pub(crate) fn protect(&mut self, packet: &mut Vec<u8>) -> Result<(), SrtpError> {
        let (header, ssrc, seq) = rtp_header(packet)?;
        let state = self.streams.entry(ssrc).or_insert((seq, 0));
        if seq < state.0 && state.0 - seq > 0x8000 {
            state.1 = state.1.wrapping_add(1);
        }
        if seq_newer(seq, state.0) {
            state.0 = seq;
        }
        let roc = state.1;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let iv = self.iv(ssrc, index);
        aes_cm(&self.cipher, iv, &mut packet[header..]);
        let tag = self.tag(packet, roc);
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// Checks and decrypts an SRTP packet: the plain RTP packet.
    pub(crate) fn unprotect(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < RTP_HEADER + AUTH_TAG {
            return Err(SrtpError::Malformed);
        }
        let (body, tag) = packet.split_at(packet.len() - AUTH_TAG);
        let (header, ssrc, seq) = rtp_header(body)?;
        // RFC 3711 §3.3.1: guess the rollover counter from the highest sequence number.
        let (s_l, roc) = self.streams.get(&ssrc).copied().unwrap_or((seq, 0));
        let guess = if s_l < 0x8000 {
            if seq > s_l && seq - s_l > 0x8000 {
                roc.wrapping_sub(1)
            } else {
                roc
            }
        } else if s_l - 0x8000 > seq {
            roc.wrapping_add(1)
        } else {
            roc
        };
        let expected = self.tag(body, guess);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&expected, tag).is_err() {
            return Err(SrtpError::Unauthentic);
        }
        if guess == roc.wrapping_add(1) || (guess == roc && seq_newer(seq, s_l)) {
            self.streams.insert(ssrc, (seq, guess));
        } else {
            self.streams.entry(ssrc).or_insert((s_l, roc));
        }
        let mut plain = body.to_vec();
        let index = (u64::from(guess) << 16) | u64::from(seq);
        let iv = self.iv(ssrc, index);
        aes_cm(&self.cipher, iv, &mut plain[header..]);
        Ok(plain)
    }
}

fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// The RTP header's length (with CSRCs and extension), SSRC and sequence number.
fn rtp_header(packet: &[u8]) -> Result<(usize, u32, u16), SrtpError> {
    if packet.len() < RTP_HEADER || packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut len = RTP_HEADER + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4).ok_or(SrtpError::Malformed)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > packet.len() {
        return Err(SrtpError::Malformed);
    }
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Ok((len, ssrc, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0xca, 0xfe, 0xba, 0xbe];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// RFC 3711 Appendix B.3: the session keys derived from its master key and salt.
    #[test]
    fn key_derivation_matches_rfc_3711() {
        let master = MasterKey {
            key: hex::decode("E1F97A0D3E018BE0D64FA32C06DE4139")
                .unwrap()
                .try_into()
                .unwrap(),
            salt: hex::decode("0EC675AD498AFEEBB6960B3AABE6")
                .unwrap()
                .try_into()
                .unwrap(),
        };
        let context = Context::new(&master);
        assert_eq!(
            hex::encode_upper(context.salt),
            "30CBBC08863D8C85D49DB34A9AE1"
        );
    }

    #[test]
    fn a_protected_packet_unprotects_to_itself_across_a_rollover() {
        let master = MasterKey::generate(&mut Ids::seeded(1));
        let (mut sender, mut receiver) = (Context::new(&master), Context::new(&master));
        for seq in [65_533u16, 65_534, 65_535, 0, 1, 2] {
            let plain = packet(seq, b"hello, g711");
            let mut srtp = plain.clone();
            sender.protect(&mut srtp).unwrap();
            assert_eq!(srtp.len(), plain.len() + AUTH_TAG);
            assert_ne!(&srtp[RTP_HEADER..plain.len()], b"hello, g711");
            assert_eq!(receiver.unprotect(&srtp).unwrap(), plain, "seq {seq}");
        }
    }

    #[test]
    fn altered_packets_and_other_keys_are_refused() {
        let master = MasterKey::generate(&mut Ids::seeded(2));
        let mut sender = Context::new(&master);
        let mut srtp = packet(7, b"payload");
        sender.protect(&mut srtp).unwrap();
        let mut altered = srtp.clone();
        altered[RTP_HEADER] ^= 1;
        let mut receiver = Context::new(&master);
        assert_eq!(receiver.unprotect(&altered), Err(SrtpError::Unauthentic));
        let mut stranger = Context::new(&MasterKey::generate(&mut Ids::seeded(3)));
        assert_eq!(stranger.unprotect(&srtp), Err(SrtpError::Unauthentic));
        assert_eq!(receiver.unprotect(&srtp[..15]), Err(SrtpError::Malformed));
        assert!(receiver.unprotect(&srtp).is_ok());
    }

    #[test]
    fn sdes_keys_round_trip_and_lifetimes_are_refused() {
        let master = MasterKey::generate(&mut Ids::seeded(4));
        assert_eq!(MasterKey::from_inline(&master.inline()).unwrap(), master);
        let with_lifetime = format!("{}|2^20", master.inline());
        assert_eq!(
            MasterKey::from_inline(&with_lifetime),
            Err(SrtpError::BadKey)
        );
        assert_eq!(
            MasterKey::from_inline("inline:c2hvcnQ="),
            Err(SrtpError::BadKey)
        );
    }
}
