//! Strict YAML reading for governance and manifest files.
//!
//! Every file goes through three steps, each of which turns a failure into a
//! [`Diagnostic`] naming the file, the field path and the line:
//!
//! 1. a line scanner ([`scan`]) refuses anchors and aliases before any parser sees them,
//!    so a "billion laughs" file fails at once with a clear message;
//! 2. `serde_yaml` parses the text into a generic value (syntax errors carry line and
//!    column; duplicate keys are errors);
//! 3. the generic value is converted to JSON (keys must be strings, no tags) and
//!    deserialized into the typed struct with `serde_path_to_error`, so an unknown field or
//!    a wrong type names its field path; the line comes from [`locate`].
//!
//! Semantic checks done after parsing use [`locate`] too: it finds the line of a field path
//! in block-style YAML by indentation, and inside a flow mapping (`tags: { a: b }`) the
//! line of the key itself or at least of its parent.

use crate::diag::Diagnostic;
use serde::de::DeserializeOwned;
use std::fmt;

/// The message for a file that uses YAML anchors or aliases.
pub const ANCHORS_NOT_ALLOWED: &str = "YAML anchors and aliases are not allowed in manifests";

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `spec.parameters.size` or `parameters[2].allowed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// Parse the dotted form (`a.b[0].c`). Keys that contain dots cannot be expressed;
    /// use [`FieldPath::key`] to build such paths.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            let key_end = rest.find('[').unwrap_or(rest.len());
            if key_end > 0 {
                segs.push(Seg::Key(rest[..key_end].to_string()));
            }
            rest = &rest[key_end..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    segs.push(Seg::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        }
        FieldPath(segs)
    }

    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.0.push(Seg::Key(k.into()));
        self
    }

    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

impl From<&serde_path_to_error::Path> for FieldPath {
    fn from(p: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut segs = Vec::new();
        for s in p.iter() {
            match s {
                Segment::Seq { index } => segs.push(Seg::Index(*index)),
                Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                Segment::Enum { variant } => segs.push(Seg::Key(variant.clone())),
                Segment::Unknown => break,
            }
        }
        FieldPath(segs)
    }
}

/// A parsed YAML file: the text (kept for locating fields later) and its JSON form.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    pub file: String,
    pub text: String,
    pub json: serde_json::Value,
}

impl YamlDoc {
    /// A diagnostic about `path` in this file, with the line of that field when found.
    pub fn diag(&self, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
        diag_at(&self.file, &self.text, path, message)
    }

    /// Deserialize the JSON form into `T`, naming the field path and line on error.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize(&self.json).map_err(|e| {
            let path = FieldPath::from(e.path());
            let message = e.inner().to_string();
            self.diag(&path, message)
        })
    }
}

/// A diagnostic about `path` in `file`, located in `text`.
pub fn diag_at(file: &str, text: &str, path: &FieldPath, message: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::new(file, message);
    if !path.is_root() {
        d = d.field(path.to_string());
    }
    if let Some((line, col)) = locate(text, path) {
        d = d.at(line, col);
    }
    d
}

/// Parse `text` (the contents of `file`) strictly into a JSON value.
pub fn parse(file: &str, text: &str) -> Result<YamlDoc, Diagnostic> {
    scan(file, text)?;
    if is_blank(text) {
        return Err(Diagnostic::new(file, "file is empty"));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let value: serde_yaml::Value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = FieldPath::from(e.path());
        let inner = e.inner();
        let mut message = inner.to_string();
        let mut d = Diagnostic::new(file, "");
        if let Some(loc) = inner.location() {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            message = message.replacen(&suffix, "", 1);
            d = d.at(loc.line(), loc.column());
        }
        // serde_yaml prefixes its own path ("spec.tags: ..."); we keep the path apart.
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(char::is_whitespace) && path.to_string().starts_with(prefix) {
                message = rest.to_string();
            }
        }
        if message.contains("recursion limit exceeded") {
            message = "YAML nesting is too deep".to_string();
        } else if message.contains("repetition limit exceeded") {
            message = ANCHORS_NOT_ALLOWED.to_string();
        }
        d.message = message;
        if !path.is_root() {
            d = d.field(path.to_string());
        }
        d
    })?;
    let json = to_json(&value, &mut FieldPath::root())
        .map_err(|(path, msg)| diag_at(file, text, &path, msg))?;
    Ok(YamlDoc {
        file: file.to_string(),
        text: text.to_string(),
        json,
    })
}

/// Parse and deserialize in one go.
pub fn parse_typed<T: DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<(YamlDoc, T), Diagnostic> {
    let doc = parse(file, text)?;
    let value = doc.typed()?;
    Ok((doc, value))
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn to_json(
    v: &serde_yaml::Value,
    path: &mut FieldPath,
) -> Result<serde_json::Value, (FieldPath, String)> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => serde_json::Value::Null,
        Y::Bool(b) => serde_json::Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                match serde_json::Number::from_f64(f) {
                    Some(num) => serde_json::Value::Number(num),
                    None => return Err((path.clone(), format!("{n} is not a finite number"))),
                }
            }
        }
        Y::String(s) => serde_json::Value::String(s.clone()),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                out.push(to_json(item, path)?);
                path.0.pop();
            }
            serde_json::Value::Array(out)
        }
        Y::Mapping(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, val) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => {
                        return Err((
                            path.clone(),
                            "mapping keys must be plain strings".to_string(),
                        ))
                    }
                };
                path.0.push(Seg::Key(key.clone()));
                let jv = to_json(val, path)?;
                path.0.pop();
                out.insert(key, jv);
            }
            serde_json::Value::Object(out)
        }
        Y::Tagged(t) => {
            return Err((
                path.clone(),
                format!("YAML tags ({}) are not allowed", t.tag),
            ))
        }
    })
}

// ---------------------------------------------------------------------------------------
// The line scanner: anchors/aliases and the key-path locator.
// ---------------------------------------------------------------------------------------

/// One physical line, with the comment removed.
struct Line<'a> {
    /// 1-based line number.
    no: usize,
    indent: usize,
    /// The content after the indentation, comment stripped, trailing space trimmed.
    content: &'a str,
}

/// What a line's structure tells us.
#[derive(Debug, Default)]
struct LineInfo {
    /// Columns (0-based, in the line) of the `- ` sequence indicators.
    dashes: Vec<usize>,
    /// The mapping key and its column, if the line holds `key: ...`.
    key: Option<(String, usize)>,
    /// Column where the value starts, if any on this line.
    value_col: Option<usize>,
}

fn strip_comment(s: &str) -> &str {
    // A '#' starts a comment at the start or after whitespace, outside quotes. Quotes only
    // open a scalar at a node start; inside plain scalars they are ordinary characters.
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let mut node_start = true;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if q == b'"' && b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                }
            }
            None => {
                if b == b'#' && (i == 0 || bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
                    return s[..i].trim_end();
                }
                if node_start && (b == b'"' || b == b'\'') {
                    quote = Some(b);
                } else if b == b' ' || b == b'\t' {
                    // whitespace keeps the node-start state
                    i += 1;
                    continue;
                }
                node_start = matches!(b, b'[' | b'{' | b',')
                    || (matches!(b, b':' | b'-' | b'?')
                        && matches!(bytes.get(i + 1), None | Some(b' ') | Some(b'\t')));
            }
        }
        i += 1;
    }
    s.trim_end()
}

fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    text.lines().enumerate().map(|(i, raw)| {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        Line {
            no: i + 1,
            indent,
            content: strip_comment(&raw[indent..]),
        }
    })
}

/// Split a line's content into sequence indicators, key and value start.
fn line_info(content: &str, indent: usize) -> LineInfo {
    let mut info = LineInfo::default();
    let bytes = content.as_bytes();
    let mut p = 0;
    // leading "- " indicators
    while p < bytes.len() && bytes[p] == b'-' && matches!(bytes.get(p + 1), None | Some(b' ')) {
        info.dashes.push(indent + p);
        p += 1;
        while p < bytes.len() && bytes[p] == b' ' {
            p += 1;
        }
    }
    if p >= bytes.len() {
        return info;
    }
    let rest = &content[p..];
    // A key, quoted or plain.
    let (key, after_key) = match bytes[p] {
        b'"' | b'\'' => {
            let q = bytes[p];
            let mut j = p + 1;
            let mut key = String::new();
            let mut closed = false;
            while j < bytes.len() {
                if q == b'"' && bytes[j] == b'\\' && j + 1 < bytes.len() {
                    // The escaped character may be several bytes long: step over all of
                    // them, never into the middle of one.
                    if let Some(c) = content[j + 1..].chars().next() {
                        key.push(c);
                        j += 1 + c.len_utf8();
                        continue;
                    }
                }
                if bytes[j] == q {
                    if q == b'\'' && bytes.get(j + 1) == Some(&b'\'') {
                        key.push('\'');
                        j += 2;
                        continue;
                    }
                    closed = true;
                    break;
                }
                // keep multi-byte characters intact
                let ch_len = content[j..].chars().next().map(char::len_utf8).unwrap_or(1);
                key.push_str(&content[j..j + ch_len]);
                j += ch_len;
            }
            if !closed {
                (None, p)
            } else {
                let mut k = j + 1;
                while k < bytes.len() && bytes[k] == b' ' {
                    k += 1;
                }
                if k < bytes.len()
                    && bytes[k] == b':'
                    && matches!(bytes.get(k + 1), None | Some(b' '))
                {
                    (Some(key), k + 1)
                } else {
                    (None, p)
                }
            }
        }
        b'[' | b'{' | b'&' | b'*' | b'!' | b'|' | b'>' | b'?' => (None, p),
        _ => {
            let mut found = None;
            let rb = rest.as_bytes();
            for j in 0..rb.len() {
                if rb[j] == b':' && matches!(rb.get(j + 1), None | Some(b' ')) {
                    found = Some(j);
                    break;
                }
            }
            match found {
                Some(j) => (Some(rest[..j].trim_end().to_string()), p + j + 1),
                None => (None, p),
            }
        }
    };
    let mut v = after_key;
    if let Some(k) = key {
        info.key = Some((k, indent + p));
        while v < bytes.len() && bytes[v] == b' ' {
            v += 1;
        }
    }
    if v < bytes.len() {
        info.value_col = Some(v);
    }
    info
}

/// Whether `s` starts with an anchor (`&name`) or an alias (`*name`), possibly after a tag.
fn anchor_at(s: &str) -> Option<&'static str> {
    let mut s = s;
    if s.starts_with('!') {
        // skip a tag
        let end = s.find(' ').unwrap_or(s.len());
        s = s[end..].trim_start();
    }
    let mut chars = s.chars();
    let first = chars.next()?;
    let second = chars.next();
    let named = matches!(second, Some(c) if !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'));
    match first {
        '&' if named => Some("anchor"),
        '*' if named => Some("alias"),
        _ => None,
    }
}

/// Look for anchors and aliases, line by line, skipping block scalars, quoted text and
/// comments. Fails with [`ANCHORS_NOT_ALLOWED`] at the first one found.
pub fn scan(file: &str, text: &str) -> Result<(), Diagnostic> {
    let mut block_scalar_indent: Option<usize> = None;
    let mut expect_node = false; // previous line ended with an empty value
    let mut flow_depth: i32 = 0;
    for line in lines(text) {
        if let Some(bi) = block_scalar_indent {
            if line.content.is_empty() || line.indent > bi {
                continue;
            }
            block_scalar_indent = None;
        }
        if line.content.is_empty() {
            continue;
        }
        let fail = |col: usize, what: &str| {
            Diagnostic::new(file, format!("{ANCHORS_NOT_ALLOWED} (found an {what})"))
                .at(line.no, col + 1)
        };
        if flow_depth > 0 {
            flow_depth = scan_flow(line.content, flow_depth)
                .map_err(|c| fail(line.indent + c, "alias or anchor"))?;
            continue;
        }
        let info = line_info(line.content, line.indent);
        let value_col = match info.value_col {
            Some(c) => c,
            None => {
                expect_node = true;
                continue;
            }
        };
        let value = &line.content[value_col..];
        // A line without key or dash is a node start only after an empty value.
        let node_start = info.key.is_some() || !info.dashes.is_empty() || expect_node;
        expect_node = false;
        if node_start {
            if let Some(what) = anchor_at(value) {
                return Err(fail(line.indent + value_col, what));
            }
        }
        let first = value.as_bytes()[0];
        match first {
            b'|' | b'>' if node_start => {
                block_scalar_indent = Some(
                    info.dashes
                        .last()
                        .copied()
                        .or(info.key.as_ref().map(|(_, c)| *c))
                        .unwrap_or(line.indent),
                );
            }
            b'[' | b'{' if node_start => {
                flow_depth = scan_flow(value, 0)
                    .map_err(|c| fail(line.indent + value_col + c, "alias or anchor"))?;
            }
            _ => {
                // Anchored values after a tag, e.g. `key: !!str &a x`.
                if value.starts_with('!') {
                    if let Some(what) = anchor_at(value) {
                        return Err(fail(line.indent + value_col, what));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Scan flow-collection text starting at `depth`; returns the depth at the end of the text,
/// or the column of an anchor/alias.
fn scan_flow(s: &str, mut depth: i32) -> Result<i32, usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut node_start = depth > 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if q == b'"' && b == b'\\' {
                i += 2;
                continue;
            }
            if b == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                node_start = true;
            }
            b']' | b'}' => {
                depth -= 1;
                node_start = false;
                if depth <= 0 {
                    return Ok(0);
                }
            }
            b',' => node_start = true,
            b':' => node_start = true,
            b' ' | b'\t' => {}
            b'"' | b'\'' if node_start => {
                quote = Some(b);
                node_start = false;
            }
            b'&' | b'*' if node_start => {
                if anchor_at(&s[i..]).is_some() {
                    return Err(i);
                }
                node_start = false;
            }
            _ => node_start = false,
        }
        i += 1;
    }
    Ok(depth.max(0))
}

#[derive(Debug)]
enum FrameKind {
    Key(String),
    Item(usize),
}

#[derive(Debug)]
struct Frame {
    indent: usize,
    kind: FrameKind,
    items: usize,
    line: usize,
    col: usize,
}

/// The (1-based) line and column of the field at `path` in `text`, or of its deepest
/// ancestor found. `None` for the root path or when nothing matches.
pub fn locate(text: &str, path: &FieldPath) -> Option<(usize, usize)> {
    if path.is_root() {
        return None;
    }
    let target = &path.0;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_items = 0usize;
    let mut best: Option<(usize, (usize, usize))> = None; // (depth matched, position)
    let mut block_scalar_indent: Option<usize> = None;
    let all: Vec<Line<'_>> = lines(text).collect();
    let mut idx = 0;
    while idx < all.len() {
        let line = &all[idx];
        idx += 1;
        if let Some(bi) = block_scalar_indent {
            if line.content.is_empty() || line.indent > bi {
                continue;
            }
            block_scalar_indent = None;
        }
        if line.content.is_empty() || line.content.starts_with('%') {
            continue;
        }
        if line.content == "---" || line.content == "..." {
            stack.clear();
            root_items = 0;
            continue;
        }
        let info = line_info(line.content, line.indent);
        for &dc in &info.dashes {
            while let Some(top) = stack.last() {
                if top.indent > dc || (top.indent == dc && matches!(top.kind, FrameKind::Item(_))) {
                    stack.pop();
                } else {
                    break;
                }
            }
            let index = match stack.last_mut() {
                Some(parent) => {
                    parent.items += 1;
                    parent.items - 1
                }
                None => {
                    root_items += 1;
                    root_items - 1
                }
            };
            stack.push(Frame {
                indent: dc,
                kind: FrameKind::Item(index),
                items: 0,
                line: line.no,
                col: dc + 1,
            });
            check_match(&stack, target, &mut best);
        }
        if let Some((key, kc)) = &info.key {
            while let Some(top) = stack.last() {
                if top.indent >= *kc {
                    stack.pop();
                } else {
                    break;
                }
            }
            stack.push(Frame {
                indent: *kc,
                kind: FrameKind::Key(key.clone()),
                items: 0,
                line: line.no,
                col: kc + 1,
            });
            check_match(&stack, target, &mut best);
        }
        if let Some(vc) = info.value_col {
            let value = &line.content[vc..];
            let first = value.as_bytes()[0];
            if (first == b'|' || first == b'>') && (info.key.is_some() || !info.dashes.is_empty()) {
                block_scalar_indent = Some(stack.last().map(|f| f.indent).unwrap_or(line.indent));
            } else if first == b'{' || first == b'[' {
                // A flow collection: look for the rest of the path inside it.
                let depth = stack.len();
                if depth < target.len() && prefix_matches(&stack, target) {
                    let mut flow_text = Vec::new();
                    flow_text.push((line.no, line.indent + vc, value));
                    let mut d = scan_flow(value, 0).unwrap_or(0);
                    while d > 0 && idx < all.len() {
                        let l = &all[idx];
                        idx += 1;
                        flow_text.push((l.no, l.indent, l.content));
                        d = scan_flow(l.content, d).unwrap_or(0);
                    }
                    if let Some(pos) = find_in_flow(&flow_text, &target[depth..]) {
                        return Some(pos);
                    }
                } else {
                    // skip the remaining lines of a multi-line flow collection
                    let mut d = scan_flow(value, 0).unwrap_or(0);
                    while d > 0 && idx < all.len() {
                        d = scan_flow(all[idx].content, d).unwrap_or(0);
                        idx += 1;
                    }
                }
            }
        }
        if let Some((depth, pos)) = best {
            if depth == target.len() {
                return Some(pos);
            }
        }
    }
    best.map(|(_, pos)| pos)
}

fn prefix_matches(stack: &[Frame], target: &[Seg]) -> bool {
    stack.len() <= target.len()
        && stack.iter().zip(target).all(|(f, s)| match (&f.kind, s) {
            (FrameKind::Key(k), Seg::Key(t)) => k == t,
            (FrameKind::Item(i), Seg::Index(t)) => i == t,
            _ => false,
        })
}

fn check_match(stack: &[Frame], target: &[Seg], best: &mut Option<(usize, (usize, usize))>) {
    if prefix_matches(stack, target) {
        let depth = stack.len();
        if best.map(|(d, _)| depth > d).unwrap_or(true) {
            if let Some(top) = stack.last() {
                *best = Some((depth, (top.line, top.col)));
            }
        }
    }
}

/// Find the first remaining key of the path inside flow text (a best effort: the key's
/// name followed by `:` at a node start).
fn find_in_flow(parts: &[(usize, usize, &str)], rest: &[Seg]) -> Option<(usize, usize)> {
    let Some(Seg::Key(key)) = rest.first() else {
        return None;
    };
    for (no, col0, text) in parts {
        let mut search = 0;
        while let Some(off) = text[search..].find(key.as_str()) {
            let at = search + off;
            let before = text[..at].trim_end_matches([' ', '"', '\'']);
            let after = text[at + key.len()..]
                .trim_start_matches(['"', '\''])
                .trim_start();
            if (before.is_empty() || before.ends_with(['{', ',', '['])) && after.starts_with(':') {
                let quoted = at > 0 && matches!(text.as_bytes()[at - 1], b'"' | b'\'');
                return Some((*no, col0 + at + 1 - usize::from(quoted)));
            }
            search = at + key.len();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: paved/v1   # comment
kind: Environment
metadata:
  name: checkout-preview
  team: payments
spec:
  type: dev
  description: |
    size: not a key
    *not an alias*
  parameters:
    size: small
    list:
      - a
      - name: x
        value: y
  tags: { cost-center: cc-1234, \"team x\": y }
  other:
  - one
  - two: 2
";

    #[test]
    fn locates_block_keys() {
        assert_eq!(
            locate(DOC, &FieldPath::parse("metadata.team")),
            Some((5, 3))
        );
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.parameters.size")),
            Some((12, 5))
        );
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.parameters.list[1].value")),
            Some((16, 9))
        );
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.parameters.list[0]")),
            Some((14, 7))
        );
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.other[1].two")),
            Some((20, 5))
        );
        assert_eq!(locate(DOC, &FieldPath::parse("apiVersion")), Some((1, 1)));
    }

    #[test]
    fn locates_in_flow_mappings_or_parent() {
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.tags.cost-center")),
            Some((17, 11))
        );
        assert_eq!(
            locate(
                DOC,
                &FieldPath::root().key("spec").key("tags").key("team x")
            ),
            Some((17, 33))
        );
        // unknown key inside the flow mapping: the parent's line
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.tags.nope")),
            Some((17, 3))
        );
        // a missing field: deepest ancestor
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.expiresAt")),
            Some((6, 1))
        );
    }

    #[test]
    fn block_scalars_are_not_scanned() {
        assert!(scan("f", DOC).is_ok());
        assert_eq!(
            locate(DOC, &FieldPath::parse("spec.description.size")),
            Some((8, 3))
        );
    }

    #[test]
    fn anchors_and_aliases_are_refused() {
        for (text, line) in [
            ("a: &x 1\nb: *x\n", 1),
            ("a:\n  - &x [1]\n", 2),
            ("a: [1, *x]\n", 1),
            ("a:\n  *x\n", 2),
            ("a: {b: &c d}\n", 1),
            ("a: !!str &x y\n", 1),
            ("base: &b\n  k: v\nother:\n  <<: *b\n", 1),
        ] {
            let d = scan("f.yaml", text).expect_err(text);
            assert!(d.message.starts_with(ANCHORS_NOT_ALLOWED), "{d}");
            assert_eq!(d.line, Some(line), "{text}");
        }
        for ok in [
            "a: b & c\n",
            "a: \"*x\"\n",
            "a: '&x'\n",
            "a: x # &y\n",
            "a: |\n  *x\n  &y\n",
            "a: 2 * 3\n",
            "a: [\"*x\", '&y']\n",
        ] {
            assert!(scan("f.yaml", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 0..9 {
            let prev = (b'a' + i) as char;
            let next = (b'a' + i + 1) as char;
            text.push_str(&format!("{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        let start = std::time::Instant::now();
        let d = parse("bomb.yaml", &text).expect_err("bomb");
        assert!(d.message.contains(ANCHORS_NOT_ALLOWED));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let d = parse("f.yaml", "a:\n  b: [1, 2\nc: 3\n").expect_err("bad");
        assert!(d.line.is_some() && d.column.is_some(), "{d}");
        let d = parse("f.yaml", "a: 1\na: 2\n").expect_err("dup");
        assert!(d.message.contains("duplicate"), "{d}");
        assert_eq!(
            parse("f.yaml", "# nothing\n").expect_err("empty").message,
            "file is empty"
        );
    }

    #[test]
    fn tags_and_complex_keys_are_refused() {
        assert!(parse("f.yaml", "a: !foo 1\n").is_err());
        assert!(parse("f.yaml", "? [a]\n: 1\n").is_err());
    }

    #[test]
    fn field_paths_print_and_parse() {
        let p = FieldPath::parse("parameters[2].allowed");
        assert_eq!(
            p.0,
            vec![
                Seg::Key("parameters".into()),
                Seg::Index(2),
                Seg::Key("allowed".into())
            ]
        );
        assert_eq!(p.to_string(), "parameters[2].allowed");
    }
}
