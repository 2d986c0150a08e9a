//! Rows valid over a time interval (`valid_from` / `valid_to` columns): the
//! bounds as written in a CRM export (ISO 8601 dates or date-times), read
//! into epoch milliseconds without a clock.

/// A row's interval, closed-open: `from <= t < to`; `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Interval {
    pub const ALWAYS: Interval = Interval { from: None, to: None };

    /// Whether the interval holds `t` (epoch milliseconds).
    #[inline]
    pub fn holds(&self, t: i64) -> bool {
        self.from.is_none_or(|from| from <= t) && self.to.is_none_or(|to| t < to)
    }

    /// Whether two intervals share an instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        let start = self.from.unwrap_or(i64::MIN).max(other.from.unwrap_or(i64::MIN));
        let end = self.to.unwrap_or(i64::MAX).min(other.to.unwrap_or(i64::MAX));
        start < end
    }

    /// The start, for ordering (an open start first).
    pub fn start(&self) -> i64 {
        self.from.unwrap_or(i64::MIN)
    }
}

/// Why a bound cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an ISO 8601 date (2026-01-30) or date-time (2026-01-30T12:34:56Z)")]
pub struct BadInstant {
    pub value: String,
}

/// Reads an interval bound: empty is open (`None`); a date is its midnight
/// UTC; a date-time is UTC unless it carries an offset (`Z`, `+02:00`,
/// `+0200`); a space may stand for the `T`; seconds and fractions are
/// optional.
pub fn parse_bound(cell: &str) -> Result<Option<i64>, BadInstant> {
    let text = cell.trim();
    if text.is_empty() {
        return Ok(None);
    }
    parse_instant(text).map(Some).ok_or_else(|| BadInstant {
        value: text.chars().take(80).collect(),
    })
}

fn parse_instant(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
        return None;
    }
    let (hour, minute) = (num(11..13)?, num(14..16)?);
    if hour > 23 || minute > 59 {
        return None;
    }
    ms += (hour * 60 + minute) * 60_000;
    let mut pos = 16;
    if b.get(pos) == Some(&b':') {
        let second = num(pos + 1..pos + 3)?;
        if second > 60 {
            return None;
        }
        ms += second.min(59) * 1000;
        pos += 3;
        if b.get(pos) == Some(&b'.') || b.get(pos) == Some(&b',') {
            let start = pos + 1;
            let mut end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start {
                return None;
            }
            let digits = &text[start..end.min(start + 3)];
            let frac: i64 = digits.parse().ok()?;
            ms += frac * 10i64.pow(3 - digits.len() as u32);
            pos = end;
        }
    }
    match &text[pos..] {
        "" | "Z" | "z" => Some(ms),
        offset => {
            let ob = offset.as_bytes();
            let sign = match ob[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = match ob.len() {
                3 => (num(pos + 1..pos + 3)?, 0),
                5 => (num(pos + 1..pos + 3)?, num(pos + 3..pos + 5)?),
                6 if ob[3] == b':' => (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?),
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            Some(ms - sign * (h * 60 + m) * 60_000)
        }
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let p = |s| parse_bound(s).map_err(|e| e.to_string());
        assert_eq!(p(""), Ok(None));
        assert_eq!(p(" 1970-01-01 "), Ok(Some(0)));
        assert_eq!(p("2026-01-30"), Ok(Some(1_769_731_200_000)));
        assert_eq!(p("2026-01-30T12:34:56Z"), Ok(Some(1_769_776_496_000)));
        assert_eq!(p("2026-01-30 12:34:56"), Ok(Some(1_769_776_496_000)));
        assert_eq!(p("2026-01-30T12:34"), Ok(Some(1_769_776_440_000)));
        assert_eq!(p("2026-01-30T14:34:56.5+02:00"), Ok(Some(1_769_776_496_500)));
        assert_eq!(p("2026-01-30T10:34:56-0200"), Ok(Some(1_769_776_496_000)));
        assert_eq!(p("2024-02-29"), Ok(Some(1_709_164_800_000)));
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "30/01/2026",
            "2026-01-30T25:00",
            "2026-01-30X",
            "tomorrow",
            "2026-01-30T12:34:56+2",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_are_closed_open() {
        let i = Interval {
            from: Some(10),
            to: Some(20),
        };
        assert!(!i.holds(9) && i.holds(10) && i.holds(19) && !i.holds(20));
        assert!(Interval::ALWAYS.holds(i64::MIN));
        let j = Interval {
            from: Some(20),
            to: None,
        };
        assert!(!i.overlaps(&j));
        assert!(
            Interval {
                from: None,
                to: Some(11)
            }
            .overlaps(&i)
        );
        assert!(Interval::ALWAYS.overlaps(&j));
    }
}
