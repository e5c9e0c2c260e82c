//! Settings an agent changes at the desktop: the mobile chat settings of a mobile-chat product
//! (their own mobile number, and whether they take chats by SMS: on, off, or on a weekly
//! schedule in their time zone).
//!
//! The `[[agents]]` entry of the configuration is the default; a change is validated, stored
//! (it survives a restart) and takes effect at once: routing texts the agent or stops, calls on
//! the device `mobile` ring the new number.

use serde::{Deserialize, Serialize};

use super::router::MobileDuty;
use crate::chat::store::AgentSettingsRecord;
use crate::config::{AgentConfig, DAYS, MobileMode, WeeklySchedule, parse_hhmm};

/// An agent's mobile chat settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileSettings {
    /// E.164 number of the agent's mobile: SMS offers and calls on the device `mobile`.
    pub mobile: Option<String>,
    pub mobile_mode: MobileMode,
    /// The weekly hours of `schedule`, in an IANA time zone.
    pub mobile_schedule: Option<WeeklySchedule>,
}

/// Why settings were refused, each with the stable code the agent API shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The mobile number is not in E.164 form (`+` and 8 to 15 digits): it is dialled
    /// through the trunk and texted, so nothing else may reach the carrier.
    #[error("{0:?} is not a phone number in E.164 form (+ and 8 to 15 digits)")]
    InvalidNumber(String),
    /// Mobile chat on (or on schedule) without a number to text.
    #[error("mobile chat needs a mobile number")]
    NumberRequired,
    /// `schedule` without hours, or hours that do not parse.
    #[error("{0}")]
    InvalidHours(String),
    /// The schedule's time zone is not a known IANA name.
    #[error("unknown time zone {0:?}")]
    InvalidTimeZone(String),
}

impl SettingsError {
    pub fn code(&self) -> &'static str {
        match self {
            SettingsError::InvalidNumber(_) => "invalid_number",
            SettingsError::NumberRequired => "number_required",
            SettingsError::InvalidHours(_) => "invalid_hours",
            SettingsError::InvalidTimeZone(_) => "invalid_time_zone",
        }
    }
}

/// The most hour ranges one schedule may hold (a range per day and a few split shifts).
const MAX_RANGES: usize = 32;

impl MobileSettings {
    /// The configuration's settings for an agent.
    pub fn from_config(agent: &AgentConfig) -> MobileSettings {
        MobileSettings {
            mobile: agent.mobile.clone(),
            mobile_mode: agent.mobile_mode,
            mobile_schedule: agent.mobile_schedule.clone(),
        }
    }

    /// Checks the settings as the configuration's are checked; an empty number is none.
    pub fn validated(mut self) -> Result<MobileSettings, SettingsError> {
        self.mobile = self
            .mobile
            .map(|n| n.trim().replace([' ', '-', '(', ')', '.'], ""))
            .filter(|n| !n.is_empty());
        if let Some(number) = &self.mobile
            && crate::bridge::E164::parse(number).is_err()
        {
            return Err(SettingsError::InvalidNumber(number.clone()));
        }
        if self.mobile_mode != MobileMode::Off && self.mobile.is_none() {
            return Err(SettingsError::NumberRequired);
        }
        match (&self.mobile_schedule, self.mobile_mode) {
            (None, MobileMode::Schedule) => {
                return Err(SettingsError::InvalidHours(
                    "on schedule needs hours".into(),
                ));
            }
            (Some(schedule), _) => check_schedule(schedule)?,
            (None, _) => {}
        }
        Ok(self)
    }

    /// When routing may text the agent.
    pub fn duty(&self) -> MobileDuty {
        match (self.mobile_mode, &self.mobile_schedule) {
            (MobileMode::On, _) => MobileDuty::Always,
            (MobileMode::Schedule, Some(s)) => MobileDuty::Schedule(s.clone()),
            _ => MobileDuty::Never,
        }
    }

    /// The settings as stored.
    pub fn to_record(&self, agent: &str, now_ms: u64) -> AgentSettingsRecord {
        AgentSettingsRecord {
            agent: agent.to_string(),
            mobile: self.mobile.clone(),
            mobile_mode: match self.mobile_mode {
                MobileMode::On => "on",
                MobileMode::Off => "off",
                MobileMode::Schedule => "schedule",
            }
            .into(),
            mobile_schedule: self
                .mobile_schedule
                .as_ref()
                .map(|s| serde_json::to_string(s).expect("a schedule serializes")),
            updated_at: now_ms,
        }
    }

    /// Stored settings, if they still make sense (a row written by another version that does
    /// not is ignored, and the configuration's stand).
    pub fn from_record(record: &AgentSettingsRecord) -> Option<MobileSettings> {
        let mobile_mode =
            serde_json::from_value(serde_json::Value::String(record.mobile_mode.clone())).ok()?;
        let mobile_schedule = match &record.mobile_schedule {
            Some(json) => Some(serde_json::from_str(json).ok()?),
            None => None,
        };
        MobileSettings {
            mobile: record.mobile.clone(),
            mobile_mode,
            mobile_schedule,
        }
        .validated()
        .ok()
    }
}

fn check_schedule(schedule: &WeeklySchedule) -> Result<(), SettingsError> {
    if jiff::tz::TimeZone::get(&schedule.time_zone).is_err() {
        return Err(SettingsError::InvalidTimeZone(schedule.time_zone.clone()));
    }
    if schedule.hours.is_empty() || schedule.hours.len() > MAX_RANGES {
        return Err(SettingsError::InvalidHours(format!(
            "a schedule has 1 to {MAX_RANGES} ranges of hours"
        )));
    }
    for range in &schedule.hours {
        if range.days.is_empty() || range.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
            return Err(SettingsError::InvalidHours(
                "days are \"mon\" … \"sun\"".into(),
            ));
        }
        match (parse_hhmm(&range.from), parse_hhmm(&range.to)) {
            (Some(from), Some(to)) if from != to => {}
            _ => {
                return Err(SettingsError::InvalidHours(format!(
                    "{:?} to {:?}: from and to are different times HH:MM",
                    range.from, range.to
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HoursRange;

    fn schedule(tz: &str, from: &str, to: &str) -> WeeklySchedule {
        WeeklySchedule {
            time_zone: tz.into(),
            hours: vec![HoursRange {
                days: vec!["mon".into()],
                from: from.into(),
                to: to.into(),
            }],
        }
    }

    fn settings(
        mobile: Option<&str>,
        mode: MobileMode,
        s: Option<WeeklySchedule>,
    ) -> MobileSettings {
        MobileSettings {
            mobile: mobile.map(str::to_string),
            mobile_mode: mode,
            mobile_schedule: s,
        }
    }

    #[test]
    fn numbers_are_checked_and_tidied() {
        let ok = settings(Some(" +1 555-0199 "), MobileMode::On, None).validated();
        assert_eq!(ok.unwrap().mobile.as_deref(), Some("+15550199"));
        let bad = settings(Some("call me"), MobileMode::On, None).validated();
        assert_eq!(bad.unwrap_err().code(), "invalid_number");
        for bad in [
            "15550199",
            "+1555*0199",
            "*67%23",
            "sip:+15550199@x",
            "+1234567890123456",
        ] {
            let refused = settings(Some(bad), MobileMode::On, None).validated();
            assert_eq!(refused.unwrap_err().code(), "invalid_number", "{bad}");
        }
        let none = settings(Some(""), MobileMode::On, None).validated();
        assert_eq!(none.unwrap_err().code(), "number_required");
        assert!(settings(None, MobileMode::Off, None).validated().is_ok());
    }

    #[test]
    fn hours_and_time_zones_are_checked() {
        let on_schedule = |s| settings(Some("+15550199"), MobileMode::Schedule, s).validated();
        assert_eq!(on_schedule(None).unwrap_err().code(), "invalid_hours");
        let bad_hours = on_schedule(Some(schedule("Europe/Paris", "25:00", "08:00")));
        assert_eq!(bad_hours.unwrap_err().code(), "invalid_hours");
        let same = on_schedule(Some(schedule("Europe/Paris", "08:00", "08:00")));
        assert_eq!(same.unwrap_err().code(), "invalid_hours");
        let tz = on_schedule(Some(schedule("Mars/Olympus", "18:00", "08:00")));
        assert_eq!(tz.unwrap_err().code(), "invalid_time_zone");
        let night = on_schedule(Some(schedule("Europe/Paris", "18:00", "08:00"))).unwrap();
        assert!(matches!(night.duty(), MobileDuty::Schedule(_)));
    }

    #[test]
    fn a_record_round_trips() {
        let s = settings(
            Some("+15550199"),
            MobileMode::Schedule,
            Some(schedule("America/New_York", "18:00", "08:00")),
        );
        let record = s.to_record("bob", 1);
        assert_eq!(record.mobile_mode, "schedule");
        assert_eq!(MobileSettings::from_record(&record), Some(s));
        let mut broken = record;
        broken.mobile_mode = "sometimes".into();
        assert_eq!(MobileSettings::from_record(&broken), None);
    }
}
