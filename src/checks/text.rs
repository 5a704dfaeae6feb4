//! Text limits shared by the checks' messages.

/// GitHub keeps at most this many characters of a status description.
pub(super) const DESCRIPTION_MAX: usize = 140;

pub(super) fn truncate(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `s` as one status description line (at most [`DESCRIPTION_MAX`] characters).
pub fn truncate_line(s: &str) -> String {
    truncate(s, DESCRIPTION_MAX)
}
