//! A run's text: output capped (head and tail kept) and secrets redacted before any of it
//! leaves the runner.

use super::{MIN_SECRET_LEN, REDACTED};
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Replaces secrets in text with [`REDACTED`]. One pass over the text with all secrets
/// (longest first), so a secret that contains another is replaced whole.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
    regex: Option<regex::Regex>,
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Adds a secret (and its trimmed form); ignored when shorter than [`MIN_SECRET_LEN`].
    pub fn add(&mut self, secret: &str) {
        for s in [secret, secret.trim()] {
            if s.chars().count() >= MIN_SECRET_LEN && !self.needles.iter().any(|n| n == s) {
                self.needles.push(s.to_string());
            }
        }
        self.needles
            .sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        let pattern = self
            .needles
            .iter()
            .map(|n| regex::escape(n))
            .collect::<Vec<_>>()
            .join("|");
        self.regex = if self.needles.is_empty() {
            None
        } else {
            regex::RegexBuilder::new(&pattern)
                .size_limit(64 * 1024 * 1024)
                .build()
                .ok()
        };
    }

    /// Adds a sensitive output value: a string as is, a number by its text, and every
    /// string or number inside an array or object (plus the compact JSON of the whole).
    pub fn add_value(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s),
            serde_json::Value::Number(n) => self.add(&n.to_string()),
            serde_json::Value::Array(items) => {
                self.add(&value.to_string());
                for v in items {
                    self.add_value(v);
                }
            }
            serde_json::Value::Object(map) => {
                self.add(&value.to_string());
                for v in map.values() {
                    self.add_value(v);
                }
            }
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    pub fn redact(&self, text: &str) -> String {
        match &self.regex {
            Some(re) => re.replace_all(text, REDACTED).into_owned(),
            None if self.needles.is_empty() => text.to_string(),
            // The pattern failed to build (absurdly many secrets): replace one by one.
            None => {
                let mut t = text.to_string();
                for n in &self.needles {
                    t = t.replace(n.as_str(), REDACTED);
                }
                t
            }
        }
    }

    /// Redacts text on both sides of a cut (the head and the tail of a capped log): a
    /// secret split by the cut is redacted on each side as well.
    fn redact_around_cut(&self, head: &str, tail: &str) -> (String, String) {
        let mut head = self.redact(head);
        let mut tail = self.redact(tail);
        let mut head_cut = 0;
        let mut tail_cut = 0;
        for n in &self.needles {
            for k in (1..n.len()).rev() {
                if n.is_char_boundary(k) && head.ends_with(&n[..k]) {
                    head_cut = head_cut.max(k);
                    break;
                }
            }
            for k in 1..n.len() {
                if n.is_char_boundary(k) && tail.starts_with(&n[k..]) {
                    tail_cut = tail_cut.max(n.len() - k);
                    break;
                }
            }
        }
        if head_cut > 0 {
            head.truncate(head.len() - head_cut);
            head.push_str(REDACTED);
        }
        if tail_cut > 0 {
            tail.replace_range(..tail_cut, REDACTED);
        }
        (head, tail)
    }
}

/// A byte buffer that keeps the first and the last `limit / 2` bytes of a stream and
/// counts the rest, so a script printing gigabytes costs a bounded amount of memory and
/// the log still shows both how it started and how it ended.
#[derive(Debug, Clone)]
pub struct Capped {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
    last: Option<u8>,
}

impl Capped {
    pub fn new(limit: usize) -> Capped {
        let head_cap = limit / 2;
        Capped {
            head_cap,
            tail_cap: limit - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
            last: None,
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.last = data.last().copied();
        if self.head.len() < self.head_cap {
            let n = (self.head_cap - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            self.tail.extend(data);
            let excess = self.tail.len().saturating_sub(self.tail_cap);
            self.tail.drain(..excess);
        }
    }

    /// Appends a `[paved] …` line from the runner itself.
    pub fn note(&mut self, text: &str) {
        self.note_raw(&format!("[paved] {text}"));
    }

    pub(super) fn note_raw(&mut self, line: &str) {
        if self.last.is_some_and(|b| b != b'\n') {
            self.push(b"\n");
        }
        self.push(line.as_bytes());
        self.push(b"\n");
    }

    /// Bytes pushed in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes dropped between head and tail.
    pub fn omitted(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    pub(super) fn is_empty_text(&self) -> bool {
        self.head
            .iter()
            .chain(self.tail.iter())
            .all(u8::is_ascii_whitespace)
    }

    /// The kept bytes, as one contiguous buffer (only meaningful when nothing was omitted).
    pub fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.clone();
        v.extend(self.tail.iter());
        v
    }

    /// The text, with a "[… N bytes omitted …]" line where bytes were dropped, redacted.
    pub fn render(&self, redactor: &Redactor) -> String {
        let mut omitted = self.omitted();
        if omitted == 0 {
            return redactor.redact(&String::from_utf8_lossy(&self.bytes()));
        }
        // Do not cut a UTF-8 character in two at either side of the gap.
        let mut head: &[u8] = &self.head;
        if let Err(e) = std::str::from_utf8(head) {
            if e.error_len().is_none() {
                omitted += (head.len() - e.valid_up_to()) as u64;
                head = &head[..e.valid_up_to()];
            }
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        let skip = tail
            .iter()
            .take(3)
            .take_while(|b| (**b & 0xC0) == 0x80)
            .count();
        omitted += skip as u64;
        let (head, tail) = redactor.redact_around_cut(
            &String::from_utf8_lossy(head),
            &String::from_utf8_lossy(&tail[skip..]),
        );
        let sep = if head.is_empty() || head.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!("{head}{sep}[… {omitted} bytes omitted …]\n{tail}")
    }
}

/// Reads a file written by the script (`ADE_ERROR_LOG`) into a [`Capped`] buffer without
/// reading what would be dropped anyway.
pub(super) fn read_capped_file(path: &Path, limit: usize) -> Capped {
    let mut capped = Capped::new(limit);
    let Ok(mut file) = std::fs::File::open(path) else {
        return capped;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len <= limit as u64 {
        let mut bytes = Vec::new();
        let _ = (&mut file).take(limit as u64).read_to_end(&mut bytes);
        capped.push(&bytes);
        return capped;
    }
    let mut head = vec![0u8; capped.head_cap];
    if file.read_exact(&mut head).is_err() {
        return capped;
    }
    let mut tail = vec![0u8; capped.tail_cap];
    if file.seek(SeekFrom::End(-(capped.tail_cap as i64))).is_err()
        || file.read_exact(&mut tail).is_err()
    {
        capped.push(&head);
        return capped;
    }
    capped.head = head;
    capped.tail = tail.into_iter().collect();
    capped.total = len;
    capped
}
