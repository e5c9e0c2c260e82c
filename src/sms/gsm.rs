//! How a text travels as SMS: the GSM 03.38 default alphabet or UCS-2, and its segments.
//!
//! A single SMS carries 140 octets: 160 septets of GSM-7 or 70 UTF-16 code units of UCS-2.
//! A concatenated message spends 6 octets of each part on the user data header (3GPP TS 23.040
//! §9.2.3.24.1), leaving 153 septets or 67 code units per part. Characters of the GSM-7
//! extension table (`^ { } \ [ ~ ] | €` and form feed) cost two septets (an escape, then the
//! character; TS 23.038 §6.2.1.1), and an escape pair is never split across parts; nor is a
//! UTF-16 surrogate pair.
//!
//! A single character outside GSM-7 turns the whole text into UCS-2 and cuts a segment from 160
//! to 70 characters, so texts we write ourselves (offers to mobile operators) go through
//! [`to_gsm7`] first: curly quotes become straight ones, dashes a hyphen, accented letters
//! their base letter, and what has no near equivalent a `?`.

use std::fmt;

/// Septets in one GSM-7 SMS.
pub const GSM7_SINGLE: usize = 160;
/// Septets in each part of a concatenated GSM-7 SMS.
pub const GSM7_PART: usize = 153;
/// UTF-16 code units in one UCS-2 SMS.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 code units in each part of a concatenated UCS-2 SMS.
pub const UCS2_PART: usize = 67;

/// The GSM 03.38 basic character set, in code order (0x1B, the escape, is a space here and
/// never matched).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table, each sent as escape + character.
const EXTENSION: &str = "\u{0c}^{}\\[~]|€";

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        })
    }
}

/// Septets the character takes in GSM-7: 1, 2 (extension table), or `None` when it has none.
pub fn gsm7_septets(c: char) -> Option<usize> {
    if c != '\u{1b}' && BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding a text needs.
pub fn encoding(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_septets(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// The cost of one character in its text's encoding.
fn units(c: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7_septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Septets (GSM-7) or UTF-16 code units (UCS-2) the whole text takes.
pub fn length(text: &str) -> (Encoding, usize) {
    let encoding = encoding(text);
    (encoding, text.chars().map(|c| units(c, encoding)).sum())
}

fn limits(encoding: Encoding) -> (usize, usize) {
    match encoding {
        Encoding::Gsm7 => (GSM7_SINGLE, GSM7_PART),
        Encoding::Ucs2 => (UCS2_SINGLE, UCS2_PART),
    }
}

/// A text cut into the parts it travels as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// One part when the text fits a single SMS, else the parts of a concatenated one.
    pub parts: Vec<String>,
}

impl Segments {
    pub fn count(&self) -> usize {
        self.parts.len()
    }
}

/// Splits a text into SMS parts (an empty text is one empty part).
pub fn split(text: &str) -> Segments {
    let (encoding, total) = length(text);
    let (single, part) = limits(encoding);
    if total <= single {
        return Segments {
            encoding,
            parts: vec![text.to_string()],
        };
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for c in text.chars() {
        let cost = units(c, encoding);
        if used + cost > part {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += cost;
    }
    parts.push(current);
    Segments { encoding, parts }
}

/// The near GSM-7 equivalent of a character that has none, if there is one.
fn near_equivalent(c: char) -> Option<&'static str> {
    Some(match c {
        '‘' | '’' | '‚' | '‛' | '′' | '`' | '´' => "'",
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => "\"",
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => "-",
        '…' => "...",
        '\u{a0}' | '\u{2002}'..='\u{200a}' | '\u{202f}' | '\t' => " ",
        '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{ad}' => "",
        '•' | '·' => "*",
        '×' => "x",
        '÷' => "/",
        '¢' => "c",
        '©' => "(c)",
        '®' => "(R)",
        '™' => "TM",
        '‹' => "<",
        '›' => ">",
        'á' | 'â' | 'ã' | 'ā' | 'ă' | 'ą' => "a",
        'Á' | 'À' | 'Â' | 'Ã' | 'Ā' | 'Ă' | 'Ą' => "A",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'Ć' | 'Ĉ' | 'Ċ' | 'Č' => "C",
        'ď' | 'đ' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'Ê' | 'Ë' | 'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => "G",
        'ĥ' | 'ħ' => "h",
        'Ĥ' | 'Ħ' => "H",
        'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'Í' | 'Ì' | 'Î' | 'Ï' | 'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => "I",
        'ĵ' => "j",
        'Ĵ' => "J",
        'ķ' => "k",
        'Ķ' => "K",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => "L",
        'ń' | 'ņ' | 'ň' => "n",
        'Ń' | 'Ņ' | 'Ň' => "N",
        'ó' | 'ô' | 'õ' | 'ō' | 'ŏ' | 'ő' => "o",
        'Ó' | 'Ò' | 'Ô' | 'Õ' | 'Ō' | 'Ŏ' | 'Ő' => "O",
        'œ' => "oe",
        'Œ' => "OE",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'Ŕ' | 'Ŗ' | 'Ř' => "R",
        'ś' | 'ŝ' | 'ş' | 'š' => "s",
        'Ś' | 'Ŝ' | 'Ş' | 'Š' => "S",
        'ţ' | 'ť' | 'ŧ' => "t",
        'Ţ' | 'Ť' | 'Ŧ' => "T",
        'ú' | 'û' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'Ú' | 'Ù' | 'Û' | 'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ŵ' => "w",
        'Ŵ' => "W",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'Ý' | 'Ŷ' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'þ' => "th",
        'Þ' => "TH",
        _ => return None,
    })
}

/// The text in GSM-7 only: characters outside it become their near equivalent, or `?`.
pub fn to_gsm7(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if gsm7_septets(c).is_some() {
            out.push(c);
        } else if let Some(near) = near_equivalent(c) {
            out.push_str(near);
        } else {
            out.push('?');
        }
    }
    out
}

/// `head` then `tail` in one GSM-7 segment: both are made GSM-7, and `head` is shortened
/// (ending in `...`) when the two do not fit. The tail (a link, say) is kept whole; if the tail
/// alone is too long it is returned as it is, and the text takes several parts.
pub fn one_segment(head: &str, tail: &str) -> String {
    let (head, tail) = (to_gsm7(head), to_gsm7(tail));
    let (_, tail_len) = length(&tail);
    let (_, head_len) = length(&head);
    if head_len + tail_len <= GSM7_SINGLE {
        return head + &tail;
    }
    let Some(room) = GSM7_SINGLE.checked_sub(tail_len + 3) else {
        return tail;
    };
    let mut cut = String::new();
    let mut used = 0;
    for c in head.chars() {
        let cost = units(c, Encoding::Gsm7);
        if used + cost > room {
            break;
        }
        cut.push(c);
        used += cost;
    }
    cut.truncate(cut.trim_end().len());
    cut + "..." + &tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_has_128_basic_and_10_extension_characters() {
        assert_eq!(BASIC.chars().count(), 128);
        assert_eq!(EXTENSION.chars().count(), 10);
        assert_eq!(gsm7_septets('@'), Some(1));
        assert_eq!(gsm7_septets('à'), Some(1));
        assert_eq!(gsm7_septets('€'), Some(2));
        assert_eq!(gsm7_septets('{'), Some(2));
        assert_eq!(gsm7_septets('\u{1b}'), None);
        assert_eq!(gsm7_septets('á'), None);
        assert_eq!(gsm7_septets('’'), None);
    }

    #[test]
    fn texts_are_measured_in_septets_or_code_units() {
        assert_eq!(length("hello"), (Encoding::Gsm7, 5));
        // Each extension character costs two septets.
        assert_eq!(length("[1€]"), (Encoding::Gsm7, 7));
        // One character outside GSM-7 makes the whole text UCS-2.
        assert_eq!(length("don’t"), (Encoding::Ucs2, 5));
        // An emoji is a surrogate pair: two code units.
        assert_eq!(length("ok 👍"), (Encoding::Ucs2, 5));
    }

    #[test]
    fn gsm7_fits_160_in_one_and_153_per_part() {
        let one = "a".repeat(160);
        assert_eq!(split(&one).count(), 1);
        let two = "a".repeat(161);
        let s = split(&two);
        assert_eq!((s.encoding, s.count()), (Encoding::Gsm7, 2));
        assert_eq!(s.parts[0].len(), 153);
        assert_eq!(s.parts[1].len(), 8);
        assert_eq!(split(&"a".repeat(306)).count(), 2);
        assert_eq!(split(&"a".repeat(307)).count(), 3);
        assert_eq!(s.parts.concat(), two);
    }

    #[test]
    fn extension_characters_count_twice_and_stay_whole() {
        // 80 euro signs are 160 septets: one SMS.
        assert_eq!(split(&"€".repeat(80)).count(), 1);
        // 81 are 162: two parts, 76 (152 septets, the 77th would not fit) then 5.
        let s = split(&"€".repeat(81));
        assert_eq!(s.count(), 2);
        assert_eq!(s.parts[0].chars().count(), 76);
        assert_eq!(s.parts[1].chars().count(), 5);
        // 152 plain septets then an escape pair: the pair moves to the next part.
        let text = format!("{}{{", "a".repeat(152)) + &"b".repeat(10);
        let s = split(&text);
        assert_eq!(s.parts[0], "a".repeat(152));
        assert!(s.parts[1].starts_with('{'));
    }

    #[test]
    fn ucs2_fits_70_in_one_and_67_per_part() {
        assert_eq!(split(&"я".repeat(70)).count(), 1);
        let s = split(&"я".repeat(71));
        assert_eq!((s.encoding, s.count()), (Encoding::Ucs2, 2));
        assert_eq!(s.parts[0].chars().count(), 67);
        assert_eq!(split(&"я".repeat(134)).count(), 2);
        assert_eq!(split(&"я".repeat(135)).count(), 3);
        // A surrogate pair is never cut: 66 letters then an emoji leave the emoji for part 2.
        let text = format!("{}👍{}", "я".repeat(66), "я".repeat(10));
        let s = split(&text);
        assert_eq!(s.parts[0], "я".repeat(66));
        assert!(s.parts[1].starts_with('👍'));
    }

    #[test]
    fn near_equivalents_keep_a_text_in_gsm7() {
        let text = "“Don’t” – call Zoë — Łukasz…\u{a0}çá 👍";
        let plain = to_gsm7(text);
        assert_eq!(plain, "\"Don't\" - call Zoe - Lukasz... ca ?");
        assert_eq!(encoding(&plain), Encoding::Gsm7);
        // Letters GSM-7 has stay as they are.
        assert_eq!(to_gsm7("é è ñ Ü ß Ç"), "é è ñ Ü ß Ç");
    }

    #[test]
    fn one_segment_shortens_the_head_and_keeps_the_tail() {
        let tail = " http://127.0.0.1:8080/m/0123456789abcdef01234567";
        let short = one_segment("New chat from Zoë", tail);
        assert_eq!(short, format!("New chat from Zoe{tail}"));
        let long = one_segment(&format!("New chat from {}", "Ω".repeat(200)), tail);
        assert_eq!(length(&long), (Encoding::Gsm7, 160));
        assert!(long.ends_with(&format!("...{tail}")), "{long}");
        // Extension characters in the head count twice while cutting.
        let euros = one_segment(&"€".repeat(100), tail);
        assert!(length(&euros).1 <= 160, "{euros}");
    }
}
