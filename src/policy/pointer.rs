//! JSON pointers and what is built from them: removal plans grouped by
//! parent, and the matcher of sensitive segment ids.
//!
//! # How the input is matched
//!
//! Stripping must hold against spellings a downstream reader treats as the
//! same field or the same segment, so matching here is looser than RFC 6901
//! on purpose:
//!
//! * **Keys** ([`key_matches`]) are compared without regard to ASCII case,
//!   and the four non-ASCII letters whose simple case mapping lands on an
//!   ASCII letter (`İ` and `ı` on `i`, `ſ` on `s`, the Kelvin sign `K` on
//!   `k`) count as that letter: Java's `equalsIgnoreCase` and .NET's
//!   `OrdinalIgnoreCase` read `user.ID`, `user.ıd` and `user.id` as one
//!   field. Every key that matches is acted on, not only the first.
//! * **Segment ids** ([`normalise_segment_id`]) are trimmed of Unicode
//!   whitespace, ASCII-lowercased, and every run of separators (ASCII
//!   whitespace and control characters, `-`, `_`, `.`, `:`, `/`) becomes one
//!   `-`, with none at either end. An id that still holds a character outside
//!   ASCII (a lookalike letter, a zero-width or full-width character) cannot
//!   be shown harmless and is treated as sensitive.
//! * **Patterns** are normalised the same way when the policy is compiled.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use memchr::memmem::Finder;
use wildmatch::WildMatch;

/// A parsed RFC 6901 JSON pointer, split into unescaped tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub text: String,
    pub tokens: Vec<String>,
}

impl Pointer {
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Err("the whole document cannot be a target".into());
        }
        if !text.starts_with('/') {
            return Err(format!(
                "{text:?} is not a JSON pointer (it must start with '/')"
            ));
        }
        let mut tokens = Vec::new();
        for raw in text[1..].split('/') {
            if raw.is_empty() {
                return Err(format!("{text:?} has an empty segment"));
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(format!("{text:?} has a bad escape (only ~0 and ~1)")),
                    }
                } else {
                    out.push(c);
                }
            }
            tokens.push(out);
        }
        Ok(Pointer {
            text: text.to_string(),
            tokens,
        })
    }
}

/// One character of a key as compared: ASCII letters in lower case, and the
/// non-ASCII letters whose simple case mapping is an ASCII letter as that letter.
fn fold_key_char(c: char) -> char {
    match c {
        '\u{130}' | '\u{131}' => 'i',
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    }
}

/// A key as [`key_matches`] compares it: two keys match exactly when their
/// folded forms are equal (for a hashed lookup among many tokens).
pub fn fold_key(key: &str) -> String {
    key.chars().map(fold_key_char).collect()
}

/// Whether an object key in the input names the pointer token `token`
/// (see the module doc: case does not matter).
pub fn key_matches(key: &str, token: &str) -> bool {
    let (k, t) = (key.as_bytes(), token.as_bytes());
    // Fast answers first (this runs for every key stripping looks at). Bytes
    // equal but for ASCII case: the chars are too (UTF-8 sequences hold no
    // ASCII bytes), so they fold equal.
    if k.len() == t.len() && k.eq_ignore_ascii_case(t) {
        return true;
    }
    // Folding maps one char to one char: an empty key matches an empty token
    // only; two ASCII first chars fold to themselves, lowercased.
    match (k.first(), t.first()) {
        (None, _) | (_, None) => return false,
        (Some(a), Some(b)) if a.is_ascii() && b.is_ascii() && !a.eq_ignore_ascii_case(b) => {
            return false;
        }
        _ => {}
    }
    if key.is_ascii() && token.is_ascii() {
        return false;
    }
    key.chars()
        .map(fold_key_char)
        .eq(token.chars().map(fold_key_char))
}

/// Characters that separate the words of a segment id; any run of them is
/// read as one `-`.
const fn is_separator(b: u8) -> bool {
    b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/')
}

/// How [`is_normal`] sees a byte: kept as it is, a dash, or a byte that
/// normalising changes (an upper-case letter, another separator, anything
/// outside ASCII).
const KEEP: u8 = 0;
const DASH: u8 = 1;
const CHANGED: u8 = 2;

const fn byte_classes() -> [u8; 256] {
    let mut t = [KEEP; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c == b'-' {
            DASH
        } else if !c.is_ascii() || c.is_ascii_uppercase() || is_separator(c) {
            CHANGED
        } else {
            KEEP
        };
        b += 1;
    }
    t
}

static BYTE_CLASS: [u8; 256] = byte_classes();

/// Whether an ASCII id is already in normal form (no copy needed): no
/// upper case, no separator but single dashes inside. One table lookup a
/// byte (this runs for every segment id of every decision).
fn is_normal(id: &[u8]) -> bool {
    if id.first() == Some(&b'-') || id.last() == Some(&b'-') {
        return false;
    }
    let mut prev = KEEP;
    for &b in id {
        let class = BYTE_CLASS[b as usize];
        // Changed, or a dash after a dash (DASH & DASH == DASH; KEEP is 0).
        if class == CHANGED || class & prev == DASH {
            return false;
        }
        prev = class;
    }
    true
}

/// A segment id as it is matched (see the module doc), or `None` when it
/// holds a character outside ASCII and so cannot be shown harmless.
pub fn normalise_segment_id(id: &str) -> Option<Cow<'_, str>> {
    // Trimming decodes characters from both ends: only when an end is not
    // a visible ASCII character (one that is cannot be whitespace).
    let id = match (id.as_bytes().first(), id.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => id,
        _ => id.trim_matches(char::is_whitespace),
    };
    if !id.is_ascii() {
        return None;
    }
    if is_normal(id.as_bytes()) {
        return Some(Cow::Borrowed(id));
    }
    Some(Cow::Owned(normalised(id)))
}

/// An ASCII id in normal form: lower case, each run of separators one dash,
/// none at either end.
fn normalised(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if is_separator(b) {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(b.to_ascii_lowercase() as char);
        }
    }
    if out.ends_with('-') {
        out.pop();
    }
    out
}

/// Sensitive segment ids, compiled. Patterns are normalised like ids (see
/// the module doc); those of the form `literal*` (most of them) are matched
/// as prefixes, `*literal*` as substrings, the rest by `wildmatch`.
///
/// Immutable once built: its verdicts are remembered per judge thread under
/// its `id` (see [`Verdicts`]), so nothing may change what it matches.
#[derive(Debug, Clone)]
pub struct SegmentMatcher {
    pub pointer: Pointer,
    prefixes: Vec<String>,
    /// Patterns of the form `*literal*`, matched as substrings (searchers
    /// built once, not at every id).
    infixes: Vec<Finder<'static>>,
    patterns: Vec<WildMatch>,
    pub source: Vec<String>,
    /// This matcher's number, unique in the process (a clone matches the
    /// same ids, so it keeps it).
    id: u64,
}

/// Matchers built so far: the next one's `id`.
static MATCHERS: AtomicU64 = AtomicU64::new(0);

/// The verdicts a judge thread has reached, per matcher: a decision's
/// segment ids mostly come from a taxonomy of a few thousand, so most are
/// seen again, and a lookup is several times cheaper than normalising and
/// matching. Keyed by the matcher's `id`, which no other matcher (a policy
/// reloaded, a shadow candidate) ever has, so a verdict cannot outlive the
/// policy it was reached under. Bounded: a few matchers per thread (the
/// live policy and a candidate, and a reload's overlap), each up to
/// [`Verdicts::IDS`] ids of at most [`Verdicts::ID_BYTES`] bytes, cleared
/// when full (a sender of ever-new ids costs a miss each, no memory).
#[derive(Default)]
struct Verdicts {
    /// Most recently used last.
    matchers: Vec<(u64, foldhash::HashMap<Box<str>, bool>)>,
}

impl Verdicts {
    const MATCHERS: usize = 4;
    const IDS: usize = 4096;
    const ID_BYTES: usize = 64;

    fn get_or(&mut self, matcher: u64, raw_id: &str, decide: impl FnOnce() -> bool) -> bool {
        let at = match self.matchers.iter().rposition(|(m, _)| *m == matcher) {
            Some(at) => at,
            None => {
                if self.matchers.len() == Self::MATCHERS {
                    self.matchers.remove(0);
                }
                self.matchers.push((matcher, foldhash::HashMap::default()));
                self.matchers.len() - 1
            }
        };
        let last = self.matchers.len() - 1;
        if at != last {
            let m = self.matchers.remove(at);
            self.matchers.push(m);
        }
        let ids = &mut self.matchers[last].1;
        if let Some(&v) = ids.get(raw_id) {
            return v;
        }
        let v = decide();
        if ids.len() == Self::IDS {
            ids.clear();
        }
        ids.insert(raw_id.into(), v);
        v
    }
}

thread_local! {
    static VERDICTS: RefCell<Verdicts> = RefCell::default();
}

impl SegmentMatcher {
    pub fn new(pointer: Pointer, patterns: &[String]) -> SegmentMatcher {
        let mut prefixes = Vec::new();
        let mut infixes = Vec::new();
        let mut wild = Vec::new();
        for p in patterns {
            // `*` and `?` are not separators: they pass through unchanged.
            // A pattern outside ASCII is refused by the policy check.
            let p = normalise_segment_id(p).map_or_else(|| p.to_lowercase(), Cow::into_owned);
            let literal = |l: &str| !l.is_empty() && !l.contains(['*', '?']);
            match p.strip_suffix('*') {
                Some(lit) if literal(lit) => prefixes.push(lit.to_string()),
                Some(lit) if lit.strip_prefix('*').is_some_and(literal) => {
                    infixes.push(Finder::new(&lit[1..]).into_owned())
                }
                _ => wild.push(WildMatch::new(&p)),
            }
        }
        SegmentMatcher {
            pointer,
            prefixes,
            infixes,
            patterns: wild,
            source: patterns.to_vec(),
            id: MATCHERS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Patterns matched as prefixes (for tests of how patterns compile).
    #[cfg(test)]
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Whether a segment id, already normalised, matches a sensitive pattern.
    pub fn matches(&self, id: &str) -> bool {
        // Ids and prefixes are non-empty and normalised: a first byte that
        // differs settles most prefixes without a compare of the rest.
        let first = id.as_bytes().first();
        self.prefixes
            .iter()
            .any(|p| p.as_bytes().first() == first && id.starts_with(p.as_str()))
            || self.infixes.iter().any(|f| f.find(id.as_bytes()).is_some())
            || self.patterns.iter().any(|w| w.matches(id))
    }

    /// Whether a segment id as found in the input must be removed: it
    /// matches a sensitive pattern once normalised, or cannot be normalised.
    /// Remembered per thread (see [`Verdicts`]); [`Self::decide`] is the rule.
    pub fn is_sensitive(&self, raw_id: &str) -> bool {
        if raw_id.len() > Verdicts::ID_BYTES {
            return self.decide(raw_id);
        }
        VERDICTS.with_borrow_mut(|v| v.get_or(self.id, raw_id, || self.decide(raw_id)))
    }

    /// [`Self::is_sensitive`] worked out.
    pub fn decide(&self, raw_id: &str) -> bool {
        normalise_segment_id(raw_id).is_none_or(|id| self.matches(&id))
    }
}

/// Pointers that share a parent: the parent is looked up once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalGroup {
    /// Tokens of the parent.
    pub parent: Vec<String>,
    /// `(last token, full pointer text)` of each child.
    pub children: Vec<(String, String)>,
}

impl RemovalGroup {
    /// Group pointers by parent, keeping first-seen order.
    pub fn plan(pointers: &[Pointer]) -> Vec<RemovalGroup> {
        let mut out: Vec<RemovalGroup> = Vec::new();
        for p in pointers {
            let Some((last, parent)) = p.tokens.split_last() else {
                continue;
            };
            let child = (last.clone(), p.text.clone());
            match out.iter_mut().find(|g| g.parent == parent) {
                Some(g) => g.children.push(child),
                None => out.push(RemovalGroup {
                    parent: parent.to_vec(),
                    children: vec![child],
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// `is_normal` (the table) says exactly when normalising changes
    /// nothing, over every ASCII id of up to four bytes from an alphabet of
    /// kept letters and digits, upper case and each kind of separator.
    #[test]
    fn an_id_is_normal_exactly_when_normalising_keeps_it() {
        let alphabet = b"a7Z-_. \t/:\x01";
        let mut ids: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last = ids.clone();
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|id| {
                    alphabet.iter().map(move |&b| {
                        let mut next = id.clone();
                        next.push(b);
                        next
                    })
                })
                .collect();
            ids.extend(last.iter().cloned());
        }
        for id in ids {
            let text = std::str::from_utf8(&id).unwrap();
            assert_eq!(
                super::is_normal(&id),
                super::normalised(text) == text,
                "{text:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn pointers_parse_and_unescape() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.tokens, vec!["a/b", "c~d"]);
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("/a//b").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }

    #[test]
    fn keys_match_without_regard_to_case() {
        for (key, token) in [
            ("id", "id"),
            ("ID", "id"),
            ("Id", "iD"),
            ("\u{131}d", "id"),
            ("\u{130}D", "id"),
            ("\u{17f}egment", "segment"),
            ("\u{212a}ey", "key"),
            ("IFA", "ifa"),
            ("a/b", "A/B"),
            ("", ""),
            ("SEGMENT", "segment"),
            // ASCII first, a folded char later: lengths differ.
            ("i\u{17f}", "IS"),
            ("a\u{212a}", "ak"),
        ] {
            assert!(key_matches(key, token), "{key:?} {token:?}");
        }
        for (key, token) in [
            ("id ", "id"),
            ("i", "id"),
            ("ids", "id"),
            ("\u{e9}", "e"),
            ("\u{c9}", "\u{e9}"),
            ("", "id"),
            ("id", ""),
            ("xd", "id"),
            ("\u{131}x", "id"),
        ] {
            assert!(!key_matches(key, token), "{key:?} {token:?}");
        }
    }

    #[test]
    fn segment_ids_are_normalised() {
        let n = |s: &str| normalise_segment_id(s).map(|c| c.into_owned());
        for (raw, want) in [
            ("health-x", "health-x"),
            ("HEALTH-X", "health-x"),
            ("  Health-diabetes\u{a0}", "health-diabetes"),
            ("\u{3000}health-x\n", "health-x"),
            ("health_x", "health-x"),
            ("health  x", "health-x"),
            ("health.:/x", "health-x"),
            ("--health--x--", "health-x"),
            ("health\tx\u{0}", "health-x"),
            ("r?ce*", "r?ce*"),
            ("*-Health-*", "*-health-*"),
            ("a&b", "a&b"),
            ("", ""),
            ("---", ""),
        ] {
            assert_eq!(n(raw).as_deref(), Some(want), "{raw:?}");
        }
        for raw in [
            "h\u{435}alth",
            "heal\u{200b}th",
            "\u{ff48}ealth",
            "caf\u{e9}",
            "a\u{a0}b",
        ] {
            assert_eq!(n(raw), None, "{raw:?}");
        }
        // Already normal: borrowed, not copied.
        assert!(matches!(
            normalise_segment_id("health-x"),
            Some(Cow::Borrowed("health-x"))
        ));
    }

    #[test]
    fn patterns_are_normalised_like_ids() {
        let p = Pointer::parse("/user/data").unwrap();
        let pats: Vec<String> = ["Health-*", " religion_* ", "*-HEALTH-*", "R?CE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = SegmentMatcher::new(p, &pats);
        assert_eq!(m.prefixes, vec!["health-", "religion-"]);
        let infixes: Vec<&[u8]> = m.infixes.iter().map(Finder::needle).collect();
        assert_eq!(infixes, vec![b"-health-".as_slice()]);
        for id in [
            "health-x",
            "HEALTH_x",
            " Religion.Catholic",
            "women-health-y",
            "Race",
        ] {
            assert!(m.is_sensitive(id), "{id}");
        }
        for id in ["healthy", "my-health", "sports"] {
            assert!(!m.is_sensitive(id), "{id}");
        }
        assert!(m.is_sensitive("sp\u{f6}rts"), "outside ASCII: unverifiable");
    }

    /// Remembered verdicts answer as the rule does, for each matcher apart:
    /// two matchers with different patterns, asked in turn about the same
    /// ids (each matcher's verdicts must never answer for the other), with
    /// more distinct ids than a thread keeps (cleared when full), ids too
    /// long to keep, and more matchers than a thread keeps at once.
    #[test]
    fn remembered_verdicts_answer_as_the_rule_for_each_matcher_apart() {
        use super::{Pointer, SegmentMatcher, Verdicts};
        let p = Pointer::parse("/user/data").unwrap();
        let a = SegmentMatcher::new(p.clone(), &["health*".into(), "*religion*".into()]);
        let b = SegmentMatcher::new(p.clone(), &["health-a*".into(), "x?z".into()]);
        let others: Vec<SegmentMatcher> = (0..Verdicts::MATCHERS)
            .map(|i| SegmentMatcher::new(p.clone(), &[format!("id-{i}*")]))
            .collect();
        let mut rng = fastrand::Rng::with_seed(7);
        let parts = [
            "health", "HEALTH_a", "religion", "xyz", "x z", "id-1", "id-2", "é", " ",
        ];
        for round in 0..3 * Verdicts::IDS {
            let mut id: String = (0..rng.usize(1..4))
                .map(|_| parts[rng.usize(..parts.len())])
                .collect::<Vec<_>>()
                .join(["-", "_", "."][rng.usize(..3)]);
            if round % 3 == 0 {
                id.push_str(&round.to_string());
            }
            if round % 97 == 0 {
                id = id.repeat(Verdicts::ID_BYTES);
            }
            for m in [&a, &b, &a] {
                assert_eq!(m.is_sensitive(&id), m.decide(&id), "{id:?}");
            }
            if round % 50 == 0 {
                for m in &others {
                    assert_eq!(m.is_sensitive(&id), m.decide(&id), "{id:?}");
                }
            }
        }
        // The two really disagree on some ids, so a shared answer would show.
        assert_ne!(a.is_sensitive("health"), b.is_sensitive("health"));
        assert_ne!(a.is_sensitive("x-religion"), b.is_sensitive("x-religion"));
    }
}
