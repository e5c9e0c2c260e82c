//! Phone numbers and the dial plan: which numbers a service may dial through its trunk.
//!
//! Every number Tandem dials reaches a carrier in the Request-URI of an INVITE, and every call
//! costs money. So a number is accepted in exactly one shape, E.164 (ITU-T E.164: `+`, a
//! country code, 8 to 15 digits in all), or in the national form a service configures, which
//! is turned into E.164 at once. Nothing else (`*67`, `#`, `%23`, `;`, `?`, `@`, a SIP URI)
//! can be written into a Request-URI because nothing else survives [`E164::parse`].
//!
//! A syntactically good number is then checked against the service's [`DialPlan`]: the
//! allowed prefixes (countries, ranges) and the blocked ones (premium rates such as `+1900`,
//! international premium `+979`, satellite networks), with the international dialling forms
//! (`00…`, `011…`) refused outright, since they would leave the country the plan describes.
//! The plan is part of the Interaction's [`super::Rules`], so `call_customer`, an accepted
//! phone-call request and the auto-dial all obey the same rule; the customer API checks the
//! chat's number against it when the chat is opened.
//!
//! Pure functions, no IO.

use serde::Deserialize;

/// Characters people type inside a number that carry no meaning: `+1 (555) 010-0100`.
const SEPARATORS: [char; 5] = [' ', '-', '.', '(', ')'];

/// The fewest and most digits of an E.164 number (country code included).
const MIN_DIGITS: usize = 8;
const MAX_DIGITS: usize = 15;

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not an E.164 number (nor the service's national form of one).
    #[error("not an E.164 phone number")]
    Invalid,
    /// A number the service's dial plan does not allow (another country, a premium range, an
    /// international dialling prefix).
    #[error("the dial plan does not allow this number")]
    NotAllowed,
}

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not `0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// Parses a number in E.164 form; separators (spaces, `-`, `.`, brackets) are dropped.
    pub(crate) fn parse(number: &str) -> Result<E164, NumberError> {
        let compact = compact(number);
        let digits = compact.strip_prefix('+').ok_or(NumberError::Invalid)?;
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(NumberError::Invalid);
        }
        Ok(E164(compact))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn compact(number: &str) -> String {
    number.chars().filter(|c| !SEPARATORS.contains(c)).collect()
}

/// A service's dial plan (`[services.dial_plan]`). The defaults allow every country and block
/// the well-known premium and special ranges that toll fraud goes for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialPlan {
    /// E.164 prefixes that may be dialled (`"+1"`, `"+44"`, `"+4420"`); empty: any.
    pub allowed_prefixes: Vec<String>,
    /// E.164 prefixes never dialled, even inside an allowed one.
    pub blocked_prefixes: Vec<String>,
    /// The country code of numbers written in national form (`"+44"`); absent: only E.164 is
    /// accepted.
    pub country_code: Option<String>,
    /// What starts a number in national form (`"0"` in most of Europe, `""` in North America,
    /// where a bare ten-digit number is national); dropped before the country code is added.
    pub national_prefix: String,
    /// International dialling prefixes (`"00"`, `"011"`): a number written with one is refused
    /// (`number_not_allowed`) rather than read as national; write it in E.164 instead.
    pub international_prefixes: Vec<String>,
}

impl Default for DialPlan {
    fn default() -> Self {
        DialPlan {
            allowed_prefixes: Vec::new(),
            blocked_prefixes: DEFAULT_BLOCKED.map(String::from).to_vec(),
            country_code: None,
            national_prefix: "0".into(),
            international_prefixes: ["00", "011"].map(String::from).to_vec(),
        }
    }
}

/// Premium and special ranges blocked unless a plan says otherwise: North American 900 and 976,
/// UK 09 premium, Turkey's 900 premium (and `+900`, which is no subscriber's number), International
/// Premium Rate (+979), Inmarsat (+870) and the international networks (+881 satellite,
/// +882/+883), the usual targets of toll fraud.
pub const DEFAULT_BLOCKED: [&str; 12] = [
    "+1900", "+1976", "+4490", "+4491", "+4498", "+900", "+90900", "+979", "+870", "+881", "+882",
    "+883",
];

impl DialPlan {
    /// Reads `number` (E.164, or the plan's national form) as E.164, without checking whether
    /// it may be dialled: for numbers that are only compared or stored.
    pub(crate) fn normalize(&self, number: &str) -> Result<E164, NumberError> {
        let compact = compact(number);
        if compact.starts_with('+') {
            return E164::parse(&compact);
        }
        if !compact.bytes().all(|b| b.is_ascii_digit()) || compact.is_empty() {
            return Err(NumberError::Invalid);
        }
        if self
            .international_prefixes
            .iter()
            .any(|p| !p.is_empty() && compact.starts_with(p.as_str()))
        {
            return Err(NumberError::NotAllowed);
        }
        let Some(country) = &self.country_code else {
            return Err(NumberError::Invalid);
        };
        let national = compact
            .strip_prefix(self.national_prefix.as_str())
            .ok_or(NumberError::Invalid)?;
        E164::parse(&format!("{}{national}", country_form(country)))
    }

    /// Whether an E.164 number may be dialled under this plan.
    pub(crate) fn allows(&self, number: &E164) -> bool {
        let n = number.as_str();
        let matches = |p: &String| n.starts_with(country_form(p).as_str());
        (self.allowed_prefixes.is_empty() || self.allowed_prefixes.iter().any(matches))
            && !self.blocked_prefixes.iter().any(matches)
    }

    /// `number` as E.164 if it is one (or the plan's national form) and the plan allows it.
    pub(crate) fn check(&self, number: &str) -> Result<E164, NumberError> {
        let e164 = self.normalize(number)?;
        if !self.allows(&e164) {
            return Err(NumberError::NotAllowed);
        }
        Ok(e164)
    }

    /// A reason the plan itself is wrong (for config validation).
    pub(crate) fn problem(&self) -> Option<String> {
        let prefixes = self.allowed_prefixes.iter().chain(&self.blocked_prefixes);
        for p in prefixes.chain(self.country_code.iter()) {
            let digits = country_form(p);
            let digits = &digits[1..];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Some(format!(
                    "{p:?} is not a prefix of E.164 numbers (+ and digits)"
                ));
            }
        }
        if !self.national_prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Some("national_prefix holds digits only".into());
        }
        None
    }
}

/// `"44"` or `"+44"` as `"+44"`.
fn country_form(prefix: &str) -> String {
    let compact = compact(prefix);
    if compact.starts_with('+') {
        compact
    } else {
        format!("+{compact}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_takes_digits_after_a_plus_and_nothing_else() {
        assert_eq!(
            E164::parse("+1 (555) 010-0100").unwrap().as_str(),
            "+15550100100"
        );
        for bad in [
            "",
            "+",
            "+1555",
            "+1234567890123456",
            "15550100",
            "+0155501000",
            "*67%23",
            "+1555*0100",
            "+15550100#",
            "sip:+15550100@evil",
            "+15550100;user=phone",
            "+15550100?X-Evil=1",
            "+15550100\r\nVia: x",
        ] {
            assert_eq!(E164::parse(bad), Err(NumberError::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn the_default_plan_blocks_premium_ranges_and_international_forms() {
        let plan = DialPlan::default();
        assert!(plan.check("+15550100100").is_ok());
        assert!(plan.check("+442079460000").is_ok());
        for premium in [
            "+9001234567",
            "+19005550100",
            "+979123456789",
            "+909001234567",
            "+8816123456",
        ] {
            assert_eq!(
                plan.check(premium),
                Err(NumberError::NotAllowed),
                "{premium}"
            );
        }
        assert_eq!(plan.check("011442079460000"), Err(NumberError::NotAllowed));
        assert_eq!(plan.check("00442079460000"), Err(NumberError::NotAllowed));
        // Without a country, national forms are not numbers at all.
        assert_eq!(plan.check("02079460000"), Err(NumberError::Invalid));
    }

    #[test]
    fn a_national_form_becomes_e164_and_allowed_prefixes_bound_the_countries() {
        let plan = DialPlan {
            allowed_prefixes: vec!["+44".into()],
            country_code: Some("44".into()),
            ..DialPlan::default()
        };
        assert_eq!(
            plan.check("020 7946 0000").unwrap().as_str(),
            "+442079460000"
        );
        assert_eq!(plan.check("+15550100100"), Err(NumberError::NotAllowed));
        assert_eq!(plan.check("09098790000"), Err(NumberError::NotAllowed));
        assert_eq!(plan.check("2079460000"), Err(NumberError::Invalid));

        let nanp = DialPlan {
            country_code: Some("+1".into()),
            national_prefix: String::new(),
            ..DialPlan::default()
        };
        assert_eq!(nanp.check("555-010-0100").unwrap().as_str(), "+15550100100");
        assert_eq!(nanp.check("9005550100"), Err(NumberError::NotAllowed));
        assert_eq!(nanp.check("011442079460000"), Err(NumberError::NotAllowed));
    }

    #[test]
    fn a_plan_with_a_prefix_that_is_not_digits_is_reported() {
        let plan = DialPlan {
            blocked_prefixes: vec!["+1900x".into()],
            ..DialPlan::default()
        };
        assert!(plan.problem().is_some());
        assert!(DialPlan::default().problem().is_none());
    }
}
