//! Go's `time.Time` as sprig's date functions see it: an instant (Unix seconds and nanoseconds), a
//! location, and, for `now`, a monotonic clock reading. Formatting and parsing follow Go's
//! reference-time layouts (`2006-01-02 15:04:05.999999999 -0700 MST`), written here after Go's
//! `time/format.go` because no crate speaks them (`jiff` and `chrono` speak strftime). Time zones
//! come from `jiff`, which reads the IANA database of the system (`/usr/share/zoneinfo`), like
//! Go's `time.LoadLocation`; a zone that is not found is UTC, as sprig makes it.

use std::rc::Rc;
use std::sync::OnceLock;
use std::time::Instant;

pub(crate) const NANOS: i64 = 1_000_000_000;
/// Seconds from 0001-01-01 (Go's zero time) to the Unix epoch.
const ZERO_UNIX: i64 = -62_135_596_800;

/// A `*time.Location`.
#[derive(Clone, Debug)]
pub(crate) enum Loc {
    Utc,
    /// `time.Local`: the system's zone (`TZ`, `/etc/localtime`), UTC when there is none.
    Local,
    Zone(jiff::tz::TimeZone),
    /// `time.FixedZone(name, offset)`, made by parsing an offset or a zone abbreviation.
    Fixed(Rc<str>, i32),
}

impl Loc {
    /// Zone abbreviation and offset (seconds east of UTC) in force at Unix second `sec`.
    pub(crate) fn lookup(&self, sec: i64) -> (String, i32) {
        match self {
            Loc::Utc => ("UTC".into(), 0),
            Loc::Fixed(name, off) => (name.to_string(), *off),
            Loc::Local => zone_info(&jiff::tz::TimeZone::system(), sec),
            Loc::Zone(tz) => zone_info(tz, sec),
        }
    }

    fn same(&self, other: &Loc) -> bool {
        match (self, other) {
            (Loc::Utc, Loc::Utc) | (Loc::Local, Loc::Local) => true,
            (Loc::Zone(a), Loc::Zone(b)) => a.iana_name() == b.iana_name(),
            // Each parse makes a new `FixedZone`, and Go compares locations by pointer.
            (Loc::Fixed(a, _), Loc::Fixed(b, _)) => Rc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn zone_info(tz: &jiff::tz::TimeZone, sec: i64) -> (String, i32) {
    let min = jiff::Timestamp::MIN.as_second();
    let max = jiff::Timestamp::MAX.as_second();
    let ts =
        jiff::Timestamp::from_second(sec.clamp(min, max)).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let info = tz.to_offset_info(ts);
    (info.abbreviation().to_owned(), info.offset().seconds())
}

/// `time.LoadLocation`: `None` where Go fails.
pub(crate) fn load_location(name: &str) -> Option<Loc> {
    match name {
        "" | "UTC" => return Some(Loc::Utc),
        "Local" => return Some(Loc::Local),
        _ => {}
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return None;
    }
    let tz = jiff::tz::db().get(name).ok()?;
    // jiff matches names without regard to case; Go opens the file of that exact name.
    (tz.iana_name() == Some(name)).then_some(Loc::Zone(tz))
}

/// A `time.Time`.
#[derive(Clone, Debug)]
pub(crate) struct GoTime {
    pub(crate) sec: i64,
    pub(crate) nsec: u32,
    pub(crate) loc: Loc,
    /// Nanoseconds since this process's first clock reading (what `time.Now` carries).
    pub(crate) mono: Option<i64>,
}

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl GoTime {
    /// `time.Time{}`: January 1, year 1, 00:00:00 UTC.
    pub(crate) fn zero() -> GoTime {
        GoTime {
            sec: ZERO_UNIX,
            nsec: 0,
            loc: Loc::Utc,
            mono: None,
        }
    }

    /// `time.Now()` (in `time.Local`).
    pub(crate) fn now() -> GoTime {
        let start = process_start();
        let now = jiff::Timestamp::now();
        let mono = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
        GoTime {
            sec: now.as_second(),
            nsec: u32::try_from(now.subsec_nanosecond()).unwrap_or(0),
            loc: Loc::Local,
            mono: Some(mono.max(1)),
        }
    }

    /// `time.Unix(sec, 0)` (in `time.Local`).
    pub(crate) fn unix(sec: i64) -> GoTime {
        GoTime {
            sec,
            nsec: 0,
            loc: Loc::Local,
            mono: None,
        }
    }

    /// `t.In(loc)`.
    pub(crate) fn with_loc(&self, loc: Loc) -> GoTime {
        GoTime {
            loc,
            ..self.clone()
        }
    }

    /// `t.Add(d)`.
    pub(crate) fn add(&self, d: i64) -> GoTime {
        let total = i128::from(self.nsec) + i128::from(d % NANOS);
        let mut sec = self.sec.wrapping_add(d / NANOS);
        let mut nsec = total;
        if nsec >= i128::from(NANOS) {
            sec = sec.wrapping_add(1);
            nsec -= i128::from(NANOS);
        } else if nsec < 0 {
            sec = sec.wrapping_sub(1);
            nsec += i128::from(NANOS);
        }
        GoTime {
            sec,
            nsec: u32::try_from(nsec).unwrap_or(0),
            loc: self.loc.clone(),
            mono: self.mono.map(|m| m.wrapping_add(d)),
        }
    }

    /// `t.AddDate(years, months, days)`: the same wall clock, in the same location.
    pub(crate) fn add_date(&self, years: i64, months: i64, days: i64) -> GoTime {
        let (d, secs, ..) = self.civil();
        let (y, m, day) = civil_from_days(d);
        date(
            y.wrapping_add(years),
            i64::from(m).wrapping_add(months),
            i64::from(day).wrapping_add(days),
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            i64::from(self.nsec),
            self.loc.clone(),
        )
    }

    /// `t.Compare(u)` (by the monotonic clock when both have a reading, as Go does).
    pub(crate) fn compare(&self, u: &GoTime) -> std::cmp::Ordering {
        if let (Some(a), Some(b)) = (self.mono, u.mono) {
            return a.cmp(&b);
        }
        (self.sec, self.nsec).cmp(&(u.sec, u.nsec))
    }

    /// `reflect.DeepEqual` of two times: the same fields, locations compared by content.
    pub(crate) fn deep_equal(&self, u: &GoTime) -> bool {
        self.sec == u.sec
            && self.nsec == u.nsec
            && self.mono == u.mono
            && match (&self.loc, &u.loc) {
                (Loc::Fixed(a, x), Loc::Fixed(b, y)) => a == b && x == y,
                (a, b) => a.same(b),
            }
    }

    /// `time.Since(t)` in nanoseconds (saturating like Go's `Sub`).
    pub(crate) fn since(&self) -> i64 {
        let now = GoTime::now();
        if let (Some(a), Some(b)) = (now.mono, self.mono) {
            return a.saturating_sub(b);
        }
        let d = (i128::from(now.sec) - i128::from(self.sec)) * i128::from(NANOS)
            + (i128::from(now.nsec) - i128::from(self.nsec));
        i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX })
    }

    /// Go's `==` on two `time.Time` values (same instant, location and monotonic reading).
    pub(crate) fn identical(&self, other: &GoTime) -> bool {
        self.sec == other.sec
            && self.nsec == other.nsec
            && self.mono == other.mono
            && self.loc.same(&other.loc)
    }

    /// Local wall clock: (days since 1970-01-01, seconds into the day, zone name, offset).
    fn civil(&self) -> (i64, i64, String, i32) {
        let (name, off) = self.loc.lookup(self.sec);
        let local = i128::from(self.sec) + i128::from(off);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        (
            i64::try_from(days).unwrap_or(0),
            i64::try_from(secs).unwrap_or(0),
            name,
            off,
        )
    }

    /// `t.Format(layout)`.
    pub(crate) fn format(&self, layout: &str) -> String {
        let (days, secs, name, offset) = self.civil();
        let (year, month, day) = civil_from_days(days);
        let yday = days.wrapping_sub(days_from_civil(year, 1, 1)) + 1;
        let (hour, min, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut b = String::new();
        let mut layout = layout;
        loop {
            let (prefix, std, suffix) = next_std_chunk(layout);
            b.push_str(prefix);
            let Some(std) = std else { break };
            layout = suffix;
            match std {
                Std::Year => append_int(&mut b, (year.unsigned_abs() % 100) as i64, 2),
                Std::LongYear => append_int(&mut b, year, 4),
                Std::Month => b.push_str(&MONTHS[month as usize - 1][..3]),
                Std::LongMonth => b.push_str(MONTHS[month as usize - 1]),
                Std::NumMonth => append_int(&mut b, month.into(), 0),
                Std::ZeroMonth => append_int(&mut b, month.into(), 2),
                Std::WeekDay => b.push_str(&DAYS[weekday(days)][..3]),
                Std::LongWeekDay => b.push_str(DAYS[weekday(days)]),
                Std::Day => append_int(&mut b, day.into(), 0),
                Std::UnderDay => {
                    if day < 10 {
                        b.push(' ');
                    }
                    append_int(&mut b, day.into(), 0);
                }
                Std::ZeroDay => append_int(&mut b, day.into(), 2),
                Std::UnderYearDay => {
                    if yday < 100 {
                        b.push(' ');
                        if yday < 10 {
                            b.push(' ');
                        }
                    }
                    append_int(&mut b, yday, 0);
                }
                Std::ZeroYearDay => append_int(&mut b, yday, 3),
                Std::Hour => append_int(&mut b, hour, 2),
                Std::Hour12 | Std::ZeroHour12 => {
                    let hr = if hour % 12 == 0 { 12 } else { hour % 12 };
                    append_int(&mut b, hr, if std == Std::Hour12 { 0 } else { 2 });
                }
                Std::Minute => append_int(&mut b, min, 0),
                Std::ZeroMinute => append_int(&mut b, min, 2),
                Std::Second => append_int(&mut b, sec, 0),
                Std::ZeroSecond => append_int(&mut b, sec, 2),
                Std::PM => b.push_str(if hour >= 12 { "PM" } else { "AM" }),
                Std::Pm => b.push_str(if hour >= 12 { "pm" } else { "am" }),
                Std::Tz(tz) => {
                    if offset == 0 && tz.iso {
                        b.push('Z');
                        continue;
                    }
                    let mut zone = offset / 60;
                    let mut abs = offset;
                    if zone < 0 {
                        b.push('-');
                        zone = -zone;
                        abs = -abs;
                    } else {
                        b.push('+');
                    }
                    append_int(&mut b, (zone / 60).into(), 2);
                    if tz.colon {
                        b.push(':');
                    }
                    if !tz.short {
                        append_int(&mut b, (zone % 60).into(), 2);
                    }
                    if tz.seconds {
                        if tz.colon {
                            b.push(':');
                        }
                        append_int(&mut b, (abs % 60).into(), 2);
                    }
                }
                Std::TzName => {
                    if !name.is_empty() {
                        b.push_str(&name);
                        continue;
                    }
                    let mut zone = offset / 60;
                    if zone < 0 {
                        b.push('-');
                        zone = -zone;
                    } else {
                        b.push('+');
                    }
                    append_int(&mut b, (zone / 60).into(), 2);
                    append_int(&mut b, (zone % 60).into(), 2);
                }
                Std::Frac { trim, digits, sep } => {
                    append_nano(&mut b, self.nsec, trim, digits, sep);
                }
            }
        }
        b
    }

    /// `t.String()`.
    pub(crate) fn go_string(&self) -> String {
        let mut s = self.format("2006-01-02 15:04:05.999999999 -0700 MST");
        if let Some(m) = self.mono {
            let sign = if m < 0 { '-' } else { '+' };
            let m = m.unsigned_abs();
            let (m1, m2) = (m / 1_000_000_000, m % 1_000_000_000);
            s.push_str(&format!(" m={sign}{m1}.{m2:09}"));
        }
        s
    }

    /// `t.MarshalJSON()` without the quotes (RFC 3339 with nanoseconds); `None` where Go fails
    /// (years outside 0..=9999).
    pub(crate) fn rfc3339_nano(&self) -> Option<String> {
        let (days, ..) = self.civil();
        let (year, ..) = civil_from_days(days);
        (0..=9999)
            .contains(&year)
            .then(|| self.format("2006-01-02T15:04:05.999999999Z07:00"))
    }

    /// Year, day of the year, and so on, as the methods of `time.Time` give them.
    pub(crate) fn field(&self, name: &str) -> Option<i64> {
        let (days, secs, ..) = self.civil();
        let (year, month, day) = civil_from_days(days);
        Some(match name {
            "Year" => year,
            "Month" => month.into(),
            "Day" => day.into(),
            "YearDay" => days.wrapping_sub(days_from_civil(year, 1, 1)) + 1,
            "Hour" => secs / 3600,
            "Minute" => secs / 60 % 60,
            "Second" => secs % 60,
            "Nanosecond" => self.nsec.into(),
            "Unix" => self.sec,
            "UnixMilli" => self
                .sec
                .wrapping_mul(1000)
                .wrapping_add(i64::from(self.nsec / 1_000_000)),
            "UnixMicro" => self
                .sec
                .wrapping_mul(1_000_000)
                .wrapping_add(i64::from(self.nsec / 1000)),
            "UnixNano" => self
                .sec
                .wrapping_mul(NANOS)
                .wrapping_add(i64::from(self.nsec)),
            _ => return None,
        })
    }

    pub(crate) fn month_name(&self) -> &'static str {
        let (days, ..) = self.civil();
        MONTHS[civil_from_days(days).1 as usize - 1]
    }

    pub(crate) fn weekday_name(&self) -> &'static str {
        let (days, ..) = self.civil();
        DAYS[weekday(days)]
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.sec == ZERO_UNIX && self.nsec == 0
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn weekday(days: i64) -> usize {
    // 1970-01-01 was a Thursday.
    usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the era arithmetic of H. Hinnant's
/// `days_from_civil`).
/// Wraps where Go's arithmetic would (years beyond ±2.5e16).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y.wrapping_sub(1) } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.wrapping_mul(146_097)
        .wrapping_add(doe)
        .wrapping_sub(719_468)
}

/// The date of a day counted from 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z.wrapping_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe.wrapping_add(era.wrapping_mul(400));
    (if m <= 2 { y.wrapping_add(1) } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in(month: i64, year: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Go's `appendInt`: `x` in decimal, zero-padded to `width` digits.
fn append_int(b: &mut String, x: i64, width: usize) {
    if x < 0 {
        b.push('-');
    }
    b.push_str(&format!("{:0width$}", x.unsigned_abs()));
}

fn append_nano(b: &mut String, nsec: u32, trim: bool, digits: usize, sep: char) {
    if trim && (digits == 0 || nsec == 0) {
        return;
    }
    let mut s = format!("{sep}{nsec:09}");
    if digits < 9 {
        s.truncate(1 + digits);
    }
    if trim {
        while s.ends_with('0') {
            s.pop();
        }
        if s.len() == 1 {
            s.pop();
        }
    }
    b.push_str(&s);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TzStd {
    /// `Z07:00` and its kin print `Z` for UTC and accept `Z` when parsing.
    iso: bool,
    colon: bool,
    /// Hours only (`-07`).
    short: bool,
    /// With seconds (`-07:00:00`).
    seconds: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Std {
    LongMonth,
    Month,
    NumMonth,
    ZeroMonth,
    LongWeekDay,
    WeekDay,
    Day,
    UnderDay,
    ZeroDay,
    UnderYearDay,
    ZeroYearDay,
    Hour,
    Hour12,
    ZeroHour12,
    Minute,
    ZeroMinute,
    Second,
    ZeroSecond,
    LongYear,
    Year,
    PM,
    Pm,
    TzName,
    Tz(TzStd),
    Frac {
        trim: bool,
        digits: usize,
        sep: char,
    },
}

fn starts_lower(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// Go's `nextStdChunk`: the text before the first layout element, the element, the rest.
fn next_std_chunk(layout: &str) -> (&str, Option<Std>, &str) {
    let l = layout.as_bytes();
    let at = |i: usize, s: &str| layout.get(i..i + s.len()) == Some(s);
    let tz = |iso, colon, short, seconds| {
        Std::Tz(TzStd {
            iso,
            colon,
            short,
            seconds,
        })
    };
    for i in 0..l.len() {
        let found: Option<(Std, usize)> = match l[i] {
            b'J' if at(i, "Jan") => {
                if at(i, "January") {
                    Some((Std::LongMonth, 7))
                } else if !starts_lower(&layout[i + 3..]) {
                    Some((Std::Month, 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "Mon") => {
                if at(i, "Monday") {
                    Some((Std::LongWeekDay, 6))
                } else if !starts_lower(&layout[i + 3..]) {
                    Some((Std::WeekDay, 3))
                } else {
                    None
                }
            }
            b'M' if at(i, "MST") => Some((Std::TzName, 3)),
            b'0' if i + 1 < l.len() && (b'1'..=b'6').contains(&l[i + 1]) => {
                let std = [
                    Std::ZeroMonth,
                    Std::ZeroDay,
                    Std::ZeroHour12,
                    Std::ZeroMinute,
                    Std::ZeroSecond,
                    Std::Year,
                ][usize::from(l[i + 1] - b'1')];
                Some((std, 2))
            }
            b'0' if at(i, "002") => Some((Std::ZeroYearDay, 3)),
            b'1' if at(i, "15") => Some((Std::Hour, 2)),
            b'1' => Some((Std::NumMonth, 1)),
            b'2' if at(i, "2006") => Some((Std::LongYear, 4)),
            b'2' => Some((Std::Day, 1)),
            b'_' if at(i, "_2") => {
                if at(i + 1, "2006") {
                    // A literal `_`, then the year.
                    return (&layout[..i + 1], Some(Std::LongYear), &layout[i + 5..]);
                }
                Some((Std::UnderDay, 2))
            }
            b'_' if at(i, "__2") => Some((Std::UnderYearDay, 3)),
            b'3' => Some((Std::Hour12, 1)),
            b'4' => Some((Std::Minute, 1)),
            b'5' => Some((Std::Second, 1)),
            b'P' if at(i, "PM") => Some((Std::PM, 2)),
            b'p' if at(i, "pm") => Some((Std::Pm, 2)),
            b'-' if at(i, "-070000") => Some((tz(false, false, false, true), 7)),
            b'-' if at(i, "-07:00:00") => Some((tz(false, true, false, true), 9)),
            b'-' if at(i, "-0700") => Some((tz(false, false, false, false), 5)),
            b'-' if at(i, "-07:00") => Some((tz(false, true, false, false), 6)),
            b'-' if at(i, "-07") => Some((tz(false, false, true, false), 3)),
            b'Z' if at(i, "Z070000") => Some((tz(true, false, false, true), 7)),
            b'Z' if at(i, "Z07:00:00") => Some((tz(true, true, false, true), 9)),
            b'Z' if at(i, "Z0700") => Some((tz(true, false, false, false), 5)),
            b'Z' if at(i, "Z07:00") => Some((tz(true, true, false, false), 6)),
            b'Z' if at(i, "Z07") => Some((tz(true, false, true, false), 3)),
            c @ (b'.' | b',') if i + 1 < l.len() && matches!(l[i + 1], b'0' | b'9') => {
                let ch = l[i + 1];
                let mut j = i + 1;
                while j < l.len() && l[j] == ch {
                    j += 1;
                }
                if j < l.len() && l[j].is_ascii_digit() {
                    None
                } else {
                    let std = Std::Frac {
                        trim: ch == b'9',
                        digits: j - (i + 1),
                        sep: char::from(c),
                    };
                    Some((std, j - i))
                }
            }
            _ => None,
        };
        if let Some((std, len)) = found {
            return (&layout[..i], Some(std), &layout[i + len..]);
        }
    }
    (layout, None, "")
}

/// Go's `leadingInt`: the leading decimal digits of `s` (`None` on overflow).
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    for c in s[..n].bytes() {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, &s[n..]))
}

/// Go's `time.atoi`: an optionally signed decimal integer, all of `s`.
fn atoi(s: &str) -> Option<i64> {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (q, rem) = leading_int(s)?;
    if !rem.is_empty() {
        return None;
    }
    let x = q as i64;
    Some(if neg { x.wrapping_neg() } else { x })
}

fn getnum(s: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !digit(0) {
        return None;
    }
    if !digit(1) {
        if fixed {
            return None;
        }
        return Some((i64::from(b[0] - b'0'), &s[1..]));
    }
    Some((
        i64::from(b[0] - b'0') * 10 + i64::from(b[1] - b'0'),
        &s[2..],
    ))
}

fn getnum3(s: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let mut n = 0;
    let mut i = 0;
    while i < 3 && b.get(i).is_some_and(u8::is_ascii_digit) {
        n = n * 10 + i64::from(b[i] - b'0');
        i += 1;
    }
    if i == 0 || (fixed && i != 3) {
        return None;
    }
    Some((n, &s[i..]))
}

fn skip<'v>(mut value: &'v str, mut prefix: &str) -> Option<&'v str> {
    while let Some(&p) = prefix.as_bytes().first() {
        if p == b' ' {
            if value.as_bytes().first().is_some_and(|&c| c != b' ') {
                return None;
            }
            prefix = prefix.trim_start_matches(' ');
            value = value.trim_start_matches(' ');
            continue;
        }
        // Byte for byte up to the next space: a match ends where `prefix`'s text does, on a
        // character boundary of both.
        let n = prefix.find(' ').unwrap_or(prefix.len());
        if !value.starts_with(&prefix[..n]) {
            return None;
        }
        prefix = &prefix[n..];
        value = &value[n..];
    }
    Some(value)
}

/// Go's `lookup` over month and day names (case-insensitive prefix match).
fn lookup_name<'v>(tab: &[&str], value: &'v str, short: bool) -> Option<(usize, &'v str)> {
    for (i, name) in tab.iter().enumerate() {
        let name = if short { &name[..3] } else { name };
        if let Some(head) = value.get(..name.len())
            && head.eq_ignore_ascii_case(name)
        {
            return Some((i, &value[name.len()..]));
        }
    }
    None
}

fn parse_time_zone(value: &str) -> Option<usize> {
    let b = value.as_bytes();
    if b.len() < 3 {
        return None;
    }
    if value.starts_with("ChST") || value.starts_with("MeST") {
        return Some(4);
    }
    if let Some(rest) = value.strip_prefix("GMT") {
        return Some(3 + parse_signed_offset(rest));
    }
    if b[0] == b'+' || b[0] == b'-' {
        let n = parse_signed_offset(value);
        return (n > 0).then_some(n);
    }
    let upper = b
        .iter()
        .take(6)
        .take_while(|c| c.is_ascii_uppercase())
        .count();
    match upper {
        5 if b[4] == b'T' => Some(5),
        4 if b[3] == b'T' || value.starts_with("WITA") => Some(4),
        3 => Some(3),
        _ => None,
    }
}

fn parse_signed_offset(value: &str) -> usize {
    let Some(&sign) = value.as_bytes().first() else {
        return 0;
    };
    if sign != b'-' && sign != b'+' {
        return 0;
    }
    match leading_int(&value[1..]) {
        Some((x, rem)) if rem.len() < value.len() - 1 && x <= 23 => value.len() - rem.len(),
        _ => 0,
    }
}

fn parse_nanoseconds(value: &str, nbytes: usize) -> Result<i64, bool> {
    if !matches!(value.as_bytes().first(), Some(b'.' | b',')) {
        return Err(false);
    }
    let nbytes = nbytes.min(10);
    let ns = value.get(1..nbytes).and_then(atoi).ok_or(false)?;
    if ns < 0 {
        return Err(true);
    }
    Ok(ns * 10i64.pow(u32::try_from(10 - nbytes).unwrap_or(0)))
}

/// `time.Date(year, month, day, hour, min, sec, nsec, loc)` (with Go's normalisation).
#[expect(clippy::too_many_arguments, reason = "the arguments of Go's time.Date")]
fn date(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, ns: i64, loc: Loc) -> GoTime {
    let m0 = mo.wrapping_sub(1);
    let y = y.wrapping_add(m0.div_euclid(12));
    let mo = u32::try_from(m0.rem_euclid(12) + 1).unwrap_or(1);
    let s = s.wrapping_add(ns.div_euclid(NANOS));
    let nsec = u32::try_from(ns.rem_euclid(NANOS)).unwrap_or(0);
    let days = days_from_civil(y, mo, 1).wrapping_add(d).wrapping_sub(1);
    let mut unix = days
        .wrapping_mul(86_400)
        .wrapping_add(h.wrapping_mul(3600))
        .wrapping_add(mi.wrapping_mul(60))
        .wrapping_add(s);
    let (_, off) = loc.lookup(unix);
    if off != 0 {
        let (_, off2) = loc.lookup(unix.wrapping_sub(i64::from(off)));
        unix = unix.wrapping_sub(i64::from(off2));
    }
    GoTime {
        sec: unix,
        nsec,
        loc,
        mono: None,
    }
}

/// `time.ParseInLocation(layout, value, time.Local)`; `Err` (a short reason) where Go fails.
pub(crate) fn parse_local(layout: &str, value: &str) -> Result<GoTime, String> {
    let bad = |what: &str| Err(format!("parsing time {value:?} as {layout:?}: {what}"));
    let (mut layout_rest, mut v) = (layout, value);
    let (mut year, mut month, mut day, mut yday) = (0i64, -1i64, -1i64, -1i64);
    let (mut hour, mut min, mut sec, mut nsec) = (0i64, 0i64, 0i64, 0i64);
    let (mut am, mut pm) = (false, false);
    let mut utc = false;
    let mut zone_offset: Option<i64> = None;
    let mut zone_name = String::new();
    loop {
        let (prefix, std, suffix) = next_std_chunk(layout_rest);
        let Some(rest) = skip(v, prefix) else {
            return bad("cannot parse");
        };
        v = rest;
        let Some(std) = std else {
            if !v.is_empty() {
                return bad("extra text");
            }
            break;
        };
        layout_rest = suffix;
        let mut range_err = false;
        let ok: Option<()> = (|| {
            match std {
                Std::Year => {
                    let p = v.get(..2)?;
                    v = &v[2..];
                    year = atoi(p)?;
                    year += if year >= 69 { 1900 } else { 2000 };
                }
                Std::LongYear => {
                    if !v.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                        return None;
                    }
                    let p = v.get(..4)?;
                    v = &v[4..];
                    year = atoi(p)?;
                }
                Std::Month | Std::LongMonth => {
                    let (m, r) = lookup_name(&MONTHS, v, std == Std::Month)?;
                    month = m as i64 + 1;
                    v = r;
                }
                Std::NumMonth | Std::ZeroMonth => {
                    let (m, r) = getnum(v, std == Std::ZeroMonth)?;
                    month = m;
                    v = r;
                    if !(1..=12).contains(&month) {
                        range_err = true;
                    }
                }
                Std::WeekDay | Std::LongWeekDay => {
                    let (_, r) = lookup_name(&DAYS, v, std == Std::WeekDay)?;
                    v = r;
                }
                Std::Day | Std::UnderDay | Std::ZeroDay => {
                    if std == Std::UnderDay && v.starts_with(' ') {
                        v = &v[1..];
                    }
                    let (n, r) = getnum(v, std == Std::ZeroDay)?;
                    day = n;
                    v = r;
                }
                Std::UnderYearDay | Std::ZeroYearDay => {
                    for _ in 0..2 {
                        if std == Std::UnderYearDay && v.starts_with(' ') {
                            v = &v[1..];
                        }
                    }
                    let (n, r) = getnum3(v, std == Std::ZeroYearDay)?;
                    yday = n;
                    v = r;
                }
                Std::Hour => {
                    let (n, r) = getnum(v, false)?;
                    hour = n;
                    v = r;
                    if hour >= 24 {
                        range_err = true;
                    }
                }
                Std::Hour12 | Std::ZeroHour12 => {
                    let (n, r) = getnum(v, std == Std::ZeroHour12)?;
                    hour = n;
                    v = r;
                    if hour > 12 {
                        range_err = true;
                    }
                }
                Std::Minute | Std::ZeroMinute => {
                    let (n, r) = getnum(v, std == Std::ZeroMinute)?;
                    min = n;
                    v = r;
                    if min >= 60 {
                        range_err = true;
                    }
                }
                Std::Second | Std::ZeroSecond => {
                    let (n, r) = getnum(v, std == Std::ZeroSecond)?;
                    sec = n;
                    v = r;
                    if sec >= 60 {
                        range_err = true;
                        return Some(());
                    }
                    let b = v.as_bytes();
                    if b.len() >= 2 && matches!(b[0], b'.' | b',') && b[1].is_ascii_digit() {
                        if matches!(next_std_chunk(layout_rest).1, Some(Std::Frac { .. })) {
                            return Some(());
                        }
                        let n = 2 + b[2..].iter().take_while(|c| c.is_ascii_digit()).count();
                        match parse_nanoseconds(v, n) {
                            Ok(x) => nsec = x,
                            Err(true) => range_err = true,
                            Err(false) => return None,
                        }
                        v = &v[n..];
                    }
                }
                Std::PM | Std::Pm => {
                    let p = v.get(..2)?;
                    v = &v[2..];
                    let (up, down) = if std == Std::PM {
                        ("PM", "AM")
                    } else {
                        ("pm", "am")
                    };
                    if p == up {
                        pm = true;
                    } else if p == down {
                        am = true;
                    } else {
                        return None;
                    }
                }
                Std::Tz(tz) => {
                    if tz.iso && v.starts_with('Z') {
                        v = &v[1..];
                        utc = true;
                        return Some(());
                    }
                    let b = v.as_bytes();
                    let (sign, hh, mm, ss, n): (u8, &str, &str, &str, usize) =
                        if tz.colon && !tz.seconds {
                            if b.len() < 6 || b[3] != b':' {
                                return None;
                            }
                            (b[0], v.get(1..3)?, v.get(4..6)?, "00", 6)
                        } else if tz.short {
                            if b.len() < 3 {
                                return None;
                            }
                            (b[0], v.get(1..3)?, "00", "00", 3)
                        } else if tz.colon && tz.seconds {
                            if b.len() < 9 || b[3] != b':' || b[6] != b':' {
                                return None;
                            }
                            (b[0], v.get(1..3)?, v.get(4..6)?, v.get(7..9)?, 9)
                        } else if tz.seconds {
                            if b.len() < 7 {
                                return None;
                            }
                            (b[0], v.get(1..3)?, v.get(3..5)?, v.get(5..7)?, 7)
                        } else {
                            if b.len() < 5 {
                                return None;
                            }
                            (b[0], v.get(1..3)?, v.get(3..5)?, "00", 5)
                        };
                    v = v.get(n..)?;
                    let hr = getnum(hh, true)?.0;
                    let mi = getnum(mm, true)?.0;
                    let se = getnum(ss, true)?.0;
                    if hr > 24 || mi > 60 || se > 60 {
                        range_err = true;
                    }
                    let off = (hr * 60 + mi) * 60 + se;
                    zone_offset = Some(match sign {
                        b'+' => off,
                        b'-' => -off,
                        _ => return None,
                    });
                }
                Std::TzName => {
                    if v.starts_with("UTC") {
                        utc = true;
                        v = &v[3..];
                        return Some(());
                    }
                    let n = parse_time_zone(v)?;
                    zone_name = v.get(..n)?.to_owned();
                    v = &v[n..];
                }
                Std::Frac {
                    trim: false,
                    digits,
                    ..
                } => {
                    let n = 1 + digits;
                    if v.len() < n {
                        return None;
                    }
                    match parse_nanoseconds(v, n) {
                        Ok(x) => nsec = x,
                        Err(true) => range_err = true,
                        Err(false) => return None,
                    }
                    v = v.get(n..)?;
                }
                Std::Frac { .. } => {
                    let b = v.as_bytes();
                    if b.len() < 2 || !matches!(b[0], b'.' | b',') || !b[1].is_ascii_digit() {
                        return Some(());
                    }
                    let i = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    match parse_nanoseconds(v, 1 + i) {
                        Ok(x) => nsec = x,
                        Err(true) => range_err = true,
                        Err(false) => return None,
                    }
                    v = &v[1 + i..];
                }
            }
            Some(())
        })();
        if range_err {
            return bad("out of range");
        }
        if ok.is_none() {
            return bad("cannot parse");
        }
    }
    if pm && hour < 12 {
        hour += 12;
    } else if am && hour == 12 {
        hour = 0;
    }
    if yday >= 0 {
        let mut yd = yday;
        let mut m = 0;
        let mut d = 0;
        if is_leap(year) {
            if yd == 31 + 29 {
                m = 2;
                d = 29;
            } else if yd > 31 + 29 {
                yd -= 1;
            }
        }
        if !(1..=365).contains(&yd) {
            return bad("day-of-year out of range");
        }
        if m == 0 {
            // Days before each month in a common year.
            const BEFORE: [i64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
            m = (yd - 1) / 31 + 1;
            if BEFORE[usize::try_from(m).unwrap_or(0)] < yd {
                m += 1;
            }
            d = yd - BEFORE[usize::try_from(m - 1).unwrap_or(0)];
        }
        if month >= 0 && month != m {
            return bad("day-of-year does not match month");
        }
        month = m;
        if day >= 0 && day != d {
            return bad("day-of-year does not match day");
        }
        day = d;
    } else {
        if month < 0 {
            month = 1;
        }
        if day < 0 {
            day = 1;
        }
    }
    if day < 1 || day > days_in(month, year) {
        return bad("day out of range");
    }
    if utc {
        return Ok(date(year, month, day, hour, min, sec, nsec, Loc::Utc));
    }
    if let Some(zoff) = zone_offset {
        let mut t = date(year, month, day, hour, min, sec, nsec, Loc::Utc);
        t.sec -= zoff;
        let (name, off) = Loc::Local.lookup(t.sec);
        if i64::from(off) == zoff && (zone_name.is_empty() || name == zone_name) {
            t.loc = Loc::Local;
        } else {
            t.loc = Loc::Fixed(zone_name.into(), i32::try_from(zoff).unwrap_or(0));
        }
        return Ok(t);
    }
    if !zone_name.is_empty() {
        let mut t = date(year, month, day, hour, min, sec, nsec, Loc::Utc);
        let (name, off) = Loc::Local.lookup(t.sec);
        if name == zone_name {
            t.sec -= i64::from(off);
            t.loc = Loc::Local;
            return Ok(t);
        }
        let mut offset = 0;
        if zone_name.len() > 3 && zone_name.starts_with("GMT") {
            offset = atoi(&zone_name[3..]).unwrap_or(0) * 3600;
        }
        t.loc = Loc::Fixed(zone_name.into(), i32::try_from(offset).unwrap_or(0));
        return Ok(t);
    }
    Ok(date(year, month, day, hour, min, sec, nsec, Loc::Local))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random layouts and values made of layout elements, digits, signs and bytes of every kind:
    /// parsing and formatting never panic.
    #[test]
    fn random_layouts_never_panic() {
        const BITS: &[&str] = &[
            "2006",
            "06",
            "01",
            "1",
            "Jan",
            "January",
            "02",
            "2",
            "_2",
            "__2",
            "002",
            "15",
            "03",
            "3",
            "04",
            "4",
            "05",
            "5",
            "PM",
            "pm",
            "MST",
            "-0700",
            "-07:00",
            "-07",
            "-070000",
            "-07:00:00",
            "Z0700",
            "Z07:00",
            "Z07",
            "Z070000",
            "Z07:00:00",
            ".000",
            ".999",
            ",9",
            "Mon",
            "Monday",
            " ",
            "-",
            "+",
            ":",
            ".",
            ",",
            "Z",
            "GMT",
            "GMT+3",
            "UTC",
            "ChST",
            "é",
            "\u{0}",
            "9999999999999999999",
            "60",
            "366",
            "24",
            "12",
            "00",
            "AM",
            "T",
            "_",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..50_000 {
            let mut layout = String::new();
            let mut value = String::new();
            for _ in 0..next(6) {
                layout.push_str(BITS[next(BITS.len())]);
            }
            for _ in 0..next(8) {
                value.push_str(BITS[next(BITS.len())]);
            }
            if let Ok(t) = parse_local(&layout, &value) {
                let _ = t.format(&layout);
                let _ = t.add_date(1, -13, 40).go_string();
            }
            let t = GoTime::unix(i64::try_from(next(1 << 40)).unwrap_or(0) - (1 << 39));
            let _ = t.format(&value);
        }
    }

    #[test]
    fn extremes_do_not_panic() {
        let t = GoTime::unix(i64::MAX).add(i64::MAX);
        let _ = t.go_string();
        let _ = t.add_date(i64::MAX, i64::MIN, i64::MAX).go_string();
        let _ = GoTime::unix(i64::MIN).add_date(-1, -1, -1).rfc3339_nano();
        let _ = t.field("YearDay");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn formats_like_go() {
        let t = GoTime {
            sec: 1_709_210_096,
            nsec: 120_000_000,
            loc: Loc::Utc,
            mono: None,
        };
        assert_eq!(
            t.go_string(),
            "2024-02-29 12:34:56.12 +0000 UTC",
            "Time.String"
        );
        assert_eq!(
            t.format("Mon Jan _2 3:04PM 2006 .000 Z07:00 -0700 __2 002"),
            "Thu Feb 29 12:34PM 2024 .120 Z +0000  60 060"
        );
        assert_eq!(GoTime::zero().go_string(), "0001-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn parses_like_go() {
        let t =
            parse_local("2006-01-02 15:04:05 -0700", "2024-02-29 12:34:56 +0130").expect("parses");
        assert_eq!(t.sec, 1_709_210_096 - 5400);
        assert!(parse_local("2006-01-02", "2023-02-29").is_err());
        assert!(parse_local("2006-01-02", "2024-02-29x").is_err());
        let t = parse_local("Jan _2 2006 3PM", "feb  3 2020 4PM").expect("parses");
        assert_eq!(t.format("2006-01-02 15"), "2020-02-03 16");
    }
}
