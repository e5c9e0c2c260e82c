//! G.711 µ-law (PCMU) and A-law (PCMA): encoding, decoding, and the direct PCMU↔PCMA conversion
//! used when the two legs of a call negotiated different laws.
//!
//! The arithmetic comes from `audio-codec-algorithms`: it has no dependencies, never allocates or
//! panics, its decode tables were generated with the ITU-T G.191 reference tools, its encoders are
//! tested against G.191 output for all 65536 inputs, and its law-to-law conversion is the 256-entry
//! table of G.711 Tables 3 and 4. We chose it over `ezk-g711`, whose functions are equally small
//! but come with the ezk media framework (`Frame`, payloaders, `bytes`) that this engine does not
//! use.
//!
//! Transcoding goes through the conversion tables, not through linear PCM: G.711 defines them so
//! that a µ→A→µ (or A→µ→A) double conversion changes at most the least significant bit of a few
//! codes, whereas decoding and re-encoding would drift further.
//!
//! Everything here is a pure function over caller-owned buffers: output is appended to a `Vec` the
//! caller keeps (typically a packet buffer that already holds the RTP header), so once that buffer
//! has grown to a packet's size nothing allocates.

use audio_codec_algorithms::{
    convert_alaw_to_ulaw, convert_ulaw_to_alaw, decode_alaw, decode_ulaw, encode_alaw, encode_ulaw,
};

use crate::media::codec::Codec;

/// Appends the G.711 encoding of `pcm` (one byte per sample) to `out`.
pub fn encode(codec: Codec, pcm: &[i16], out: &mut Vec<u8>) {
    match codec {
        Codec::Pcmu => out.extend(pcm.iter().map(|&s| encode_ulaw(s))),
        Codec::Pcma => out.extend(pcm.iter().map(|&s| encode_alaw(s))),
    }
}

/// Appends the linear PCM samples of the G.711 `payload` (one sample per byte) to `out`.
pub fn decode(codec: Codec, payload: &[u8], out: &mut Vec<i16>) {
    match codec {
        Codec::Pcmu => out.extend(payload.iter().map(|&b| decode_ulaw(b))),
        Codec::Pcma => out.extend(payload.iter().map(|&b| decode_alaw(b))),
    }
}

/// Rewrites a G.711 payload from one law to the other in place (G.711 Tables 3 and 4); a no-op
/// when both are the same.
pub fn transcode_in_place(payload: &mut [u8], from: Codec, to: Codec) {
    let convert: fn(u8) -> u8 = match (from, to) {
        (Codec::Pcmu, Codec::Pcma) => convert_ulaw_to_alaw,
        (Codec::Pcma, Codec::Pcmu) => convert_alaw_to_ulaw,
        (Codec::Pcmu, Codec::Pcmu) | (Codec::Pcma, Codec::Pcma) => return,
    };
    for byte in payload {
        *byte = convert(*byte);
    }
}

/// The code of a zero sample, to fill gaps with silence.
#[cfg(test)]
pub(crate) const fn silence(codec: Codec) -> u8 {
    match codec {
        Codec::Pcmu => 0xFF,
        Codec::Pcma => 0xD5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(codec: Codec, code: u8) -> i16 {
        let mut out = Vec::new();
        decode(codec, &[code], &mut out);
        out[0]
    }

    fn encode_one(codec: Codec, sample: i16) -> u8 {
        let mut out = Vec::new();
        encode(codec, &[sample], &mut out);
        out[0]
    }

    /// Values from the Sun `g711.c` reference (`ulaw2linear`, `alaw2linear`) and G.711 itself.
    #[test]
    fn decodes_reference_values() {
        for (code, value) in [
            (0xFF, 0),
            (0x7F, 0),
            (0x00, -32124),
            (0x80, 32124),
            (0xFE, 8),
            (0x7E, -8),
            (0xEF, 132),
            (0x30, -3900),
            (0x70, -120),
        ] {
            assert_eq!(decode_one(Codec::Pcmu, code), value, "µ-law {code:#04x}");
        }
        for (code, value) in [
            (0xD5, 8),
            (0x55, -8),
            (0xAA, 32256),
            (0x2A, -32256),
            (0xD4, 24),
            (0xC5, 264),
            (0x80, 5504),
        ] {
            assert_eq!(decode_one(Codec::Pcma, code), value, "A-law {code:#04x}");
        }
    }

    #[test]
    fn encodes_reference_values() {
        for (sample, code) in [
            (0, 0xFF),
            (-1, 0x7F),
            (32767, 0x80),
            (-32768, 0x00),
            (8, 0xFE),
        ] {
            assert_eq!(encode_one(Codec::Pcmu, sample), code, "µ-law of {sample}");
        }
        for (sample, code) in [
            (0, 0xD5),
            (-1, 0x55),
            (32767, 0xAA),
            (-32768, 0x2A),
            (8, 0xD5),
        ] {
            assert_eq!(encode_one(Codec::Pcma, sample), code, "A-law of {sample}");
        }
        assert_eq!(encode_one(Codec::Pcmu, 0), silence(Codec::Pcmu));
        assert_eq!(encode_one(Codec::Pcma, 0), silence(Codec::Pcma));
    }

    /// Every code decodes to a level that encodes back to the same code, except µ-law's
    /// "negative zero" 0x7F, which decodes to 0 and so comes back as 0xFF.
    #[test]
    fn every_code_round_trips_through_linear() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let codes: Vec<u8> = (0..=255).collect();
            let mut pcm = Vec::new();
            decode(codec, &codes, &mut pcm);
            let mut again = Vec::new();
            encode(codec, &pcm, &mut again);
            for (&code, &back) in codes.iter().zip(&again) {
                let expected = if codec == Codec::Pcmu && code == 0x7F {
                    0xFF
                } else {
                    code
                };
                assert_eq!(back, expected, "{codec:?} {code:#04x}");
            }
        }
    }

    /// The encoder never skips a level: a sample decodes back to one of the two reconstruction
    /// levels around it (G.711 puts the decision values between them), or to the outermost level
    /// when it lies beyond.
    #[test]
    fn encoding_lands_on_an_adjacent_level() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let mut levels = Vec::new();
            decode(codec, &(0..=255).collect::<Vec<u8>>(), &mut levels);
            levels.sort_unstable();
            levels.dedup();
            for sample in i16::MIN..=i16::MAX {
                let got = decode_one(codec, encode_one(codec, sample));
                let above = levels.partition_point(|&l| l < sample);
                let below = levels.partition_point(|&l| l <= sample);
                let around = [below.checked_sub(1), Some(above)]
                    .into_iter()
                    .flatten()
                    .filter_map(|i| levels.get(i).copied())
                    .collect::<Vec<_>>();
                assert!(
                    around.contains(&got),
                    "{codec:?} {sample} → {got}, around {around:?}"
                );
            }
        }
    }

    #[test]
    fn buffers_are_appended_to() {
        let mut out = vec![0x80, 0x00];
        encode(Codec::Pcmu, &[0, 0], &mut out);
        assert_eq!(out, [0x80, 0x00, 0xFF, 0xFF]);
        let mut pcm = vec![1];
        decode(Codec::Pcma, &[0xD5, 0x55], &mut pcm);
        assert_eq!(pcm, [1, 8, -8]);
    }

    /// G.711 Table 3 note 2: µ→A→µ changes only the µ-law decoder output numbers 0, 2, …, 14,
    /// each increased by one (only the least significant bit changes). Table 4 note 2: A→µ→A
    /// changes only the A-law numbers 26, 28, 30, 32, 45, 47, 63 and 80, again in bit 8 only.
    #[test]
    fn double_conversion_is_transparent_where_g711_says_so() {
        // A µ-law code is the inverted decoder output number (0..=127) with its sign; an A-law
        // code is the number minus one (1..=128) with the even bits inverted (G.711 Tables 1, 2).
        let ulaw_number = |code: u8| !code & 0x7F;
        let alaw_number = |code: u8| ((code ^ 0x55) & 0x7F) + 1;

        let mut payload: Vec<u8> = (0..=255).collect();
        transcode_in_place(&mut payload, Codec::Pcmu, Codec::Pcma);
        transcode_in_place(&mut payload, Codec::Pcma, Codec::Pcmu);
        for (code, back) in (0..=255u8).zip(payload) {
            let n = ulaw_number(code);
            if n <= 14 && n % 2 == 0 {
                assert_eq!(ulaw_number(back), n + 1, "µ {code:#04x}");
                assert_eq!(back ^ code, 1, "µ {code:#04x}: only bit 8 changes");
            } else {
                assert_eq!(back, code, "µ {code:#04x}");
            }
        }

        let mut payload: Vec<u8> = (0..=255).collect();
        transcode_in_place(&mut payload, Codec::Pcma, Codec::Pcmu);
        transcode_in_place(&mut payload, Codec::Pcmu, Codec::Pcma);
        for (code, back) in (0..=255u8).zip(payload) {
            if [26, 28, 30, 32, 45, 47, 63, 80].contains(&alaw_number(code)) {
                assert_eq!(back ^ code, 1, "A {code:#04x}: only bit 8 changes");
            } else {
                assert_eq!(back, code, "A {code:#04x}");
            }
        }
    }

    #[test]
    fn conversion_keeps_the_level_close() {
        for code in 0..=255u8 {
            let mut converted = [code];
            transcode_in_place(&mut converted, Codec::Pcmu, Codec::Pcma);
            let before = i32::from(decode_one(Codec::Pcmu, code));
            let after = i32::from(decode_one(Codec::Pcma, converted[0]));
            // One A-law step at the level's magnitude, at most 1024 in the top segment.
            let step = (before.abs() / 16).max(16);
            assert!(
                (before - after).abs() <= step,
                "{code:#04x}: {before} → {after}"
            );
        }
    }

    #[test]
    fn same_law_is_left_alone() {
        let mut payload = [0x00, 0x7F, 0xD5];
        transcode_in_place(&mut payload, Codec::Pcma, Codec::Pcma);
        transcode_in_place(&mut payload, Codec::Pcmu, Codec::Pcmu);
        assert_eq!(payload, [0x00, 0x7F, 0xD5]);
    }
}
