//! A record's text read once for its structure, and checked on the way.
//!
//! The read answers three questions at once: whether the text is JSON
//! (RFC 8259, strictly: the grammar, UTF-8 checked by the caller, no
//! control character in a string, nesting of at most 127), whether some
//! object repeats a key (repeated keys are resolved before judging, see
//! [`crate::core::decision`]), and where each object's entries lie. A text
//! that passes all three ([`Scan::Unique`]) is judged from the text alone:
//! its fields are read through the outline ([`crate::core::view`]) and
//! [`crate::core::rewrite`] copies what stripping leaves untouched from the
//! record as it was sent (issue 11: "work that does not need the whole
//! document should not pay for building it; bytes untouched by stripping
//! are copied, not re-serialised"). Any other text goes to the parser,
//! which decides.
//!
//! The text is read 64 bytes at a time: each block becomes bit masks of its
//! quotes, structural bytes and white space (sixteen bytes to a compare:
//! SSE2 on x86-64, through `wide`), the bits inside strings are the running
//! XOR of the quote bits, and only the tokens are visited: structural bytes
//! outside strings, quotes, and the first byte of each literal (a number,
//! `true`, `false`, `null`). A small automaton checks the order of the
//! tokens, and each literal is checked whole. Text holding a backslash is
//! not read here ([`Scan::Escaped`]): an escaped quote would need more than
//! one XOR to place, and an escaped key may spell another differently.
//!
//! Soundness is what matters: a text this read accepts must be one the
//! parser accepts, with the same keys and values (property-tested below
//! against sonic-rs on hostile text). A text it refuses is only slower.

use wide::u8x16;

/// No entry (an index into [`Outline::entries`]).
pub const NONE: u32 = u32::MAX;

/// Above this many keys an object is not checked pair by pair here: it is
/// reported as [`Scan::MayRepeat`], for the hashed check on the document.
const MANY: usize = 32;

/// serde_json's nesting limit: the 128th open array or object is refused
/// (by the parser's path, which names the place).
const MAX_DEPTH: usize = 127;

/// What one read of a text found.
#[derive(Debug)]
pub enum Scan {
    /// Valid JSON, no object repeats a key; where each entry lies.
    Unique(Outline),
    /// Some object repeats a key, or has more than [`MANY`] of them.
    MayRepeat,
    /// The text holds a backslash: not read here.
    Escaped,
    /// Not JSON as this read takes it: the parser decides (and names the
    /// place of the error).
    Unread,
}

/// A span of the text, `start..end`.
pub type Span = (u32, u32);

/// One entry of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The key's text, inside its quotes (free of escapes).
    pub key: Span,
    /// The value's text, from after the `:` to the `,` or `}` that ends
    /// it: white space around the value included (it is valid JSON there).
    /// The key's opening quote is at `key.0 - 1`: `key.0 - 1..value.1` is
    /// the whole entry.
    pub value: Span,
    /// The next entry of the same object, or [`NONE`].
    pub next: u32,
    /// When the value is an object with entries: its first entry.
    pub child: u32,
}

/// Buffers larger than this many items are not kept for the next read.
const KEPT: usize = 4096;

thread_local! {
    /// A thread's frame stack, kept between reads.
    static FRAMES: std::cell::Cell<Vec<Frame>> = const { std::cell::Cell::new(Vec::new()) };
    /// The entries of the thread's last outline dropped, kept for its next
    /// read: a judge thread reads and drops one outline per record, and the
    /// allocator's round trip for each was a tenth of the read.
    static ENTRIES: std::cell::Cell<Vec<Entry>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty entry list for a text of `len` bytes: the thread's kept one,
/// or a new one (about one entry per 16 bytes in a decision).
fn reused_entries(len: usize) -> Vec<Entry> {
    let mut entries = ENTRIES.take();
    entries.clear();
    if entries.capacity() == 0 {
        entries.reserve(len / 12 + 8);
    }
    entries
}

impl Drop for Outline {
    fn drop(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        if (1..=KEPT).contains(&entries.capacity()) {
            // The larger of the kept and the dropped list stays; a thread
            // being torn down keeps nothing.
            let _ = ENTRIES.try_with(|kept| {
                let old = kept.take();
                kept.set(if old.capacity() >= entries.capacity() {
                    old
                } else {
                    entries
                });
            });
        }
    }
}

/// Where each object's entries lie in a text.
#[derive(Debug, Clone, Default)]
pub struct Outline {
    /// Every entry, in text order.
    entries: Vec<Entry>,
    /// Whether the text is an object, and its first entry ([`NONE`] for `{}`).
    root: Option<u32>,
}

/// An open object, while the text is read (arrays need no frame: their
/// elements are reached by reading their text, see [`crate::core::view`]).
#[derive(Clone, Copy)]
struct Frame {
    /// Its first entry, or [`NONE`].
    first: u32,
    /// How many keys it has so far.
    count: u32,
    /// One bit per key read so far, at the key's [`fingerprint`] hashed
    /// to 0..64: a key whose bit is clear is new without a compare.
    seen: u64,
    /// Its last entry so far, or [`NONE`].
    last: u32,
    /// The entry whose value it is, or [`NONE`] (the root, or an object in
    /// an array).
    parent: u32,
}

/// What the automaton expects next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// A value (the text's, after `:`, or after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    FirstValue,
    /// After `,` in an object: a key.
    Key,
    /// After `{`: a key or `}`.
    FirstKey,
    /// Inside a key's quotes, or a string value's.
    KeyEnd,
    StringEnd,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the container's close.
    Next,
    /// The text's value is complete: only white space may follow.
    Done,
}

/// The state of one [`scan`]: the outline so far, and the open containers.
struct Reader<'t> {
    json: &'t [u8],
    outline: Outline,
    /// The open objects, innermost last.
    frames: &'t mut Vec<Frame>,
    /// The open containers, innermost at bit 0: 1 for an object.
    kinds: u128,
    depth: usize,
    expect: Expect,
    /// The opening quote of the string being read.
    open_quote: u32,
    /// The last key read, inside its quotes.
    key: Span,
}

/// Why reading stops early.
enum Stop {
    Repeat,
    Unread,
}

impl<'t> Reader<'t> {
    fn new(json: &'t [u8], frames: &'t mut Vec<Frame>) -> Reader<'t> {
        frames.clear();
        Reader {
            json,
            outline: Outline {
                entries: reused_entries(json.len()),
                root: None,
            },
            frames,
            kinds: 0,
            depth: 0,
            expect: Expect::Value,
            open_quote: 0,
            key: (0, 0),
        }
    }

    fn in_object(&self) -> bool {
        self.kinds & 1 == 1
    }

    /// A value is complete: the container's next, or the text's end.
    fn value_done(&mut self) {
        self.expect = if self.depth == 0 {
            Expect::Done
        } else {
            Expect::Next
        };
    }

    /// A `{` or `[`, where a value may start.
    fn open(&mut self, object: bool) -> Result<(), Stop> {
        if !matches!(self.expect, Expect::Value | Expect::FirstValue) || self.depth >= MAX_DEPTH {
            return Err(Stop::Unread);
        }
        // An object is a child of the open entry when it is that entry's
        // value (not an object inside an array there).
        let entry_value = self.depth > 0 && self.in_object();
        self.kinds = self.kinds << 1 | u128::from(object);
        self.depth += 1;
        if !object {
            self.expect = Expect::FirstValue;
            return Ok(());
        }
        self.expect = Expect::FirstKey;
        let parent = match self.frames.last() {
            Some(f) if entry_value => f.last,
            _ => NONE,
        };
        if self.depth == 1 {
            self.outline.root = Some(NONE);
        }
        self.frames.push(Frame {
            first: NONE,
            count: 0,
            seen: 0,
            last: NONE,
            parent,
        });
        Ok(())
    }

    /// A `}` or `]` at `at`.
    fn close(&mut self, at: u32, object: bool) -> Result<(), Stop> {
        let first = if object {
            Expect::FirstKey
        } else {
            Expect::FirstValue
        };
        if self.depth == 0
            || self.in_object() != object
            || !(self.expect == Expect::Next || self.expect == first)
        {
            return Err(Stop::Unread);
        }
        self.kinds >>= 1;
        self.depth -= 1;
        if object
            && let Some(f) = self.frames.pop()
            && f.last != NONE
        {
            self.outline.entries[f.last as usize].value.1 = at;
        }
        self.value_done();
        Ok(())
    }

    /// A `:` at `at` after the key just read.
    fn colon(&mut self, at: u32) -> Result<(), Stop> {
        if self.expect != Expect::Colon {
            return Err(Stop::Unread);
        }
        self.expect = Expect::Value;
        let (start, end) = self.key;
        let key = &self.json[start as usize..end as usize];
        let Some(&f) = self.frames.last() else {
            return Err(Stop::Unread);
        };
        let bit = 1u64 << (fingerprint(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58);
        if f.count as usize >= MANY || (f.seen & bit != 0 && self.repeats(f.first, key)) {
            return Err(Stop::Repeat);
        }
        let entries = &mut self.outline.entries;
        let id = entries.len() as u32;
        entries.push(Entry {
            key: (start, end),
            value: (at + 1, at + 1),
            next: NONE,
            child: NONE,
        });
        if f.last != NONE {
            // The previous entry ends at the `,` before this key.
            let prev = &mut entries[f.last as usize];
            prev.value.1 = skip_space_back(self.json, start - 1);
            prev.next = id;
        } else if f.parent != NONE {
            entries[f.parent as usize].child = id;
        } else if self.depth == 1 {
            self.outline.root = Some(id);
        }
        if let Some(f) = self.frames.last_mut() {
            if f.last == NONE {
                f.first = id;
            }
            f.last = id;
            f.count += 1;
            f.seen |= bit;
        }
        Ok(())
    }

    /// Whether an object whose first entry is `first` has the key `key`.
    fn repeats(&self, first: u32, key: &[u8]) -> bool {
        let mut id = first;
        while let Some(e) = self.outline.entries.get(id as usize) {
            if &self.json[e.key.0 as usize..e.key.1 as usize] == key {
                return true;
            }
            id = e.next;
        }
        false
    }

    /// A `,` between values.
    fn comma(&mut self) -> Result<(), Stop> {
        if self.expect != Expect::Next {
            return Err(Stop::Unread);
        }
        self.expect = if self.in_object() {
            Expect::Key
        } else {
            Expect::Value
        };
        Ok(())
    }

    /// A quote at `at`: `opening` when it starts a string.
    fn quote(&mut self, at: u32, opening: bool) -> Result<(), Stop> {
        self.expect = match (self.expect, opening) {
            (Expect::Value | Expect::FirstValue, true) => Expect::StringEnd,
            (Expect::Key | Expect::FirstKey, true) => Expect::KeyEnd,
            (Expect::StringEnd, false) => {
                self.value_done();
                return Ok(());
            }
            (Expect::KeyEnd, false) => {
                self.key = (self.open_quote + 1, at);
                Expect::Colon
            }
            _ => return Err(Stop::Unread),
        };
        self.open_quote = at;
        Ok(())
    }

    /// A literal (a number, `true`, `false`, `null`) starting at `at`,
    /// `len` bytes long when its block says so.
    fn literal(&mut self, at: u32, len: Option<u32>) -> Result<(), Stop> {
        if !matches!(self.expect, Expect::Value | Expect::FirstValue) {
            return Err(Stop::Unread);
        }
        let rest = &self.json[at as usize..];
        let len = len.map_or_else(
            || {
                rest.iter()
                    .position(|&b| {
                        is_space(b) || matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"')
                    })
                    .unwrap_or(rest.len())
            },
            |n| n as usize,
        );
        if !is_literal(&rest[..len]) {
            return Err(Stop::Unread);
        }
        self.value_done();
        Ok(())
    }
}

/// Whether `t` is exactly `true`, `false`, `null` or a JSON number
/// (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
fn is_literal(t: &[u8]) -> bool {
    if matches!(t, b"true" | b"false" | b"null") {
        return true;
    }
    let digits = |t: &[u8], at: usize| t[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(t, i),
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        let n = digits(t, i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(t, i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == t.len()
}

/// Read `json` (its UTF-8 already checked by the caller; see the module doc).
pub fn scan(json: &[u8]) -> Scan {
    let mut frames = FRAMES.take();
    let read = read(json, &mut frames);
    if frames.capacity() <= KEPT {
        FRAMES.set(frames);
    }
    match read {
        Ok(outline) => Scan::Unique(outline),
        Err(Stop::Repeat) => Scan::MayRepeat,
        Err(Stop::Unread) if json.contains(&b'\\') => Scan::Escaped,
        Err(Stop::Unread) => Scan::Unread,
    }
}

fn read(json: &[u8], frames: &mut Vec<Frame>) -> Result<Outline, Stop> {
    if u32::try_from(json.len()).is_err() {
        return Err(Stop::Unread);
    }
    let mut r = Reader::new(json, frames);
    // All ones when the previous block ended inside a string; bit 63 set
    // when it ended on a literal's byte.
    let (mut carry, mut literal_carry) = (0u64, 0u64);
    for (n, chunk) in json.chunks(64).enumerate() {
        let base = (n * 64) as u32;
        // The last, short block padded with spaces.
        let mut padded = [b' '; 64];
        let block = if chunk.len() == 64 {
            chunk
        } else {
            padded[..chunk.len()].copy_from_slice(chunk);
            &padded
        };
        let Masks {
            quote,
            backslash,
            structural,
            space,
            control,
        } = masks(block);
        if backslash != 0 {
            return Err(Stop::Unread);
        }
        let mut inside = quote;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        inside ^= carry;
        carry = 0u64.wrapping_sub(inside >> 63);
        // A control character inside a string (white space included:
        // a raw tab or line break there is not JSON).
        if control & inside != 0 {
            return Err(Stop::Unread);
        }
        let literal = !(quote | inside | structural | space);
        let literal_starts = literal & !(literal << 1 | literal_carry >> 63);
        literal_carry = literal;
        let mut tokens = (structural & !inside) | quote | literal_starts;
        while tokens != 0 {
            let i = tokens.trailing_zeros();
            tokens &= tokens - 1;
            let at = base + i;
            match block[i as usize] {
                // A string whose closing quote is in this block: nothing
                // inside it is a token, so that quote is the next one.
                b'"' if inside >> i & 1 == 1 && tokens != 0 => {
                    let close = base + tokens.trailing_zeros();
                    tokens &= tokens - 1;
                    r.quote(at, true)?;
                    r.quote(close, false)?;
                }
                b'"' => r.quote(at, inside >> i & 1 == 1)?,
                b'{' => r.open(true)?,
                b'[' => r.open(false)?,
                b'}' => r.close(at, true)?,
                b']' => r.close(at, false)?,
                b':' => r.colon(at)?,
                b',' => r.comma()?,
                _ => {
                    // The literal's run of bytes, when it ends in this block.
                    let run = (!literal >> i).trailing_zeros();
                    r.literal(at, (i + run < 64).then_some(run))?;
                }
            }
        }
    }
    if r.expect != Expect::Done {
        return Err(Stop::Unread);
    }
    Ok(r.outline)
}

/// One block's bit masks (bit `i` for `block[i]`).
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{`, `}`, `[`, `]`, `:` and `,`.
    structural: u64,
    /// JSON white space: space, tab, line feed, carriage return.
    space: u64,
    /// Bytes below 0x20 (white space included).
    control: u64,
}

fn masks(block: &[u8]) -> Masks {
    let mut m = [0u64; 5];
    for (i, lane) in block.chunks_exact(16).enumerate() {
        let v = u8x16::from(<[u8; 16]>::try_from(lane).expect("16 bytes"));
        let is = |c: u8| v.simd_eq(u8x16::splat(c));
        // `[`/`{` and `]`/`}` differ only in bit 0x20.
        let folded = v | u8x16::splat(0x20);
        let structural = folded.simd_eq(u8x16::splat(b'{'))
            | folded.simd_eq(u8x16::splat(b'}'))
            | is(b':')
            | is(b',');
        let space = is(b' ') | is(b'\t') | is(b'\n') | is(b'\r');
        let control = v.min(u8x16::splat(0x1f)).simd_eq(v);
        for (m, bits) in m
            .iter_mut()
            .zip([is(b'"'), is(b'\\'), structural, space, control])
        {
            *m |= u64::from(bits.to_bitmask()) << (16 * i);
        }
    }
    Masks {
        quote: m[0],
        backslash: m[1],
        structural: m[2],
        space: m[3],
        control: m[4],
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first place at or after `at` that is not JSON white space.
pub fn skip_space(json: &[u8], mut at: u32) -> u32 {
    while json.get(at as usize).is_some_and(|&b| is_space(b)) {
        at += 1;
    }
    at
}

/// The `,` before a key whose opening quote is at `quote` (only white
/// space lies between them in valid JSON).
fn skip_space_back(json: &[u8], quote: u32) -> u32 {
    let mut at = quote.saturating_sub(1);
    while at > 0 && is_space(json[at as usize]) {
        at -= 1;
    }
    at
}

/// A key's length and its first, middle and last bytes in one word:
/// different keys of one object almost always differ here, so their bytes
/// need no compare.
fn fingerprint(key: &[u8]) -> u64 {
    match key {
        [] => 0,
        [first, .., last] | [first @ last] => {
            (key.len() as u64) << 24
                | u64::from(*first) << 16
                | u64::from(key[key.len() / 2]) << 8
                | u64::from(*last)
        }
    }
}

impl Outline {
    /// The root object's first entry ([`NONE`] for `{}`); `None` when the
    /// text is not an object.
    pub fn root(&self) -> Option<u32> {
        self.root
    }

    /// An entry by its index; `None` for [`NONE`].
    pub fn entry(&self, id: u32) -> Option<&Entry> {
        self.entries.get(id as usize)
    }

    /// The first entry of the object whose `{` is at `open` in `json`, the
    /// text outlined ([`NONE`] for `{}`): entries are in text order, and
    /// the object's first key is the first thing after its `{`.
    ///
    /// No entry before `hint` is inside the object (0 when nothing is
    /// known): the few entries from there are looked at before the rest is
    /// searched.
    pub fn first_inside(&self, json: &[u8], open: u32, hint: u32) -> u32 {
        let rest = &self.entries[(hint as usize).min(self.entries.len())..];
        let at = match rest.iter().take(4).position(|e| e.key.0 > open) {
            Some(n) => n,
            None => rest.partition_point(|e| e.key.0 <= open),
        };
        let i = self.entries.len() - rest.len() + at;
        match self.entries.get(i) {
            Some(e) if e.key.0 - 1 == skip_space(json, open + 1) => i as u32,
            _ => NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonic_rs::{JsonContainerTrait, Value};

    /// The outline's entries of the object starting at `first`, checked
    /// against the parsed object `o`, all the way down.
    fn agree(json: &str, o: &sonic_rs::Object, outline: &Outline, first: u32) {
        let text = |(a, b): Span| &json[a as usize..b as usize];
        let mut id = first;
        for (k, v) in o.iter() {
            let e = outline
                .entry(id)
                .unwrap_or_else(|| panic!("{json}: {k} missing"));
            assert_eq!(text(e.key), k, "{json}");
            let parsed: Value = sonic_rs::from_str(text(e.value)).expect("a value's text parses");
            assert_eq!(&parsed, v, "{json}: {k}");
            match v.as_object() {
                Some(inner) if !inner.is_empty() => agree(json, inner, outline, e.child),
                _ => assert_eq!(e.child, NONE, "{json}: {k}"),
            }
            id = e.next;
        }
        assert_eq!(id, NONE, "{json}: more entries than the document");
    }

    /// The scan of `json`, checked against its parse when it says unique.
    fn check(json: &str) -> Scan {
        let doc: Value = sonic_rs::from_str(json).expect("test JSON parses");
        let s = scan(json.as_bytes());
        if let Scan::Unique(outline) = &s {
            match doc.as_object() {
                Some(o) => {
                    let root = outline.root().expect("an object");
                    if o.is_empty() {
                        assert_eq!(root, NONE, "{json}");
                    } else {
                        agree(json, o, outline, root);
                    }
                }
                None => assert_eq!(outline.root(), None, "{json}"),
            }
        }
        s
    }

    #[test]
    fn each_object_s_entries_are_found_with_their_text() {
        for json in [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{"a":{"b":[1,{"c":"}],{:,"},[]],"d":{}},"e":"x","f":null}"#,
            " { \"a\" : { \"b\" : [ 1 , 2 ] , \"c\" : true } ,\n\t\"d\" : \"{ :\" ,\"e\":\r\n{ } } ",
            r#"[{"a":1},{"b":[{"c":2}]},3]"#,
            r#"{"":{"":""},"é":"ü€","k":[[],[{}],{"x":[{"y":{}}]}]}"#,
            r#""a string""#,
            "7",
        ] {
            assert!(matches!(check(json), Scan::Unique(_)), "{json}");
        }
    }

    #[test]
    fn repeats_and_escapes_are_told_apart() {
        assert!(matches!(check(r#"{"a":1,"a":2}"#), Scan::MayRepeat));
        assert!(matches!(check(r#"{"a":{"b":1,"b":2}}"#), Scan::MayRepeat));
        assert!(matches!(check(r#"{"a":"\""}"#), Scan::Escaped));
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(matches!(
            check(&format!("{{{many}\"z\":0}}")),
            Scan::MayRepeat
        ));
    }

    #[test]
    fn long_strings_and_objects_that_cross_blocks() {
        let long = "x".repeat(200);
        let mut json = format!(r#"{{"s":"{long}","o":{{"#);
        for i in 0..30 {
            json.push_str(&format!(r#""k{i}":[{i},"{{{long}:,"],"#));
        }
        json.push_str(r#""end":{"in":"}"}}}"#);
        assert!(matches!(check(&json), Scan::Unique(_)));
        for cut in [62, 63, 64, 65, 127, 128, 129] {
            let pad = "p".repeat(cut);
            let json = format!(r#"{{"{pad}":{{"a":"{pad}"}},"b":[{{"c":1}}],"c":{{"d":{{}}}}}}"#);
            assert!(matches!(check(&json), Scan::Unique(_)), "{json}");
        }
    }

    #[test]
    fn the_synthetic_records_are_outlined() {
        let mut s = crate::tools::synth::Synth::new(7, 50, 5, 1_795_000_000_000);
        for i in 0..300 {
            let (_, rec) = s.next(1_795_000_000_000 + i);
            let json = std::str::from_utf8(&rec).expect("UTF-8");
            assert!(matches!(check(json), Scan::Unique(_) | Scan::Escaped));
        }
    }

    /// What a bent text may have put in it.
    const BENDS: &[u8] = b"{}[]:,\"\"0123456789-+.eEtrufalsn \t\n\r\\x\x01\x7f\xc3";

    /// Small valid JSON texts with every kind of literal, number shape and
    /// white space.
    fn small_json() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = proptest::sample::select(
            &[
                "true",
                "false",
                "null",
                "0",
                "-0",
                "7",
                "-12",
                "1.5",
                "-0.25",
                "1e5",
                "2E-3",
                "-1.5e+10",
                "\"\"",
                "\"a\"",
                "\"x:{}[],\"",
                "\"é\"",
                "[]",
                "{}",
            ][..],
        )
        .prop_map(str::to_string);
        // Long strings and numbers, so that tokens cross 64-byte blocks.
        let leaf = prop_oneof![
            4 => leaf,
            1 => "[a-z{}:,\\[\\] ]{30,130}".prop_map(|s| format!("\"{s}\"")),
            1 => "-?[1-9][0-9]{15,70}(\\.[0-9]{1,40})?([eE][+-]?[0-9]{1,3})?",
        ];
        let ws = proptest::sample::select(&["", " ", "\n", "\t "][..]);
        leaf.prop_recursive(3, 16, 4, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                (proptest::collection::vec(inner.clone(), 0..4), ws.clone())
                    .prop_map(|(v, w)| format!("[{w}{}{w}]", v.join(&format!("{w},")))),
                (
                    proptest::collection::vec(("[a-c]|k[a-z]{10,64}", inner), 0..4),
                    ws
                )
                    .prop_map(|(f, w)| {
                        let f: Vec<String> = f
                            .into_iter()
                            .map(|(k, v)| format!("{w}\"{k}\"{w}:{w}{v}"))
                            .collect();
                        format!("{{{}{w}}}", f.join(","))
                    }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        /// Small JSON texts of every kind of value, each bent at one to
        /// three places (a byte cut, put in or replaced by one of JSON's
        /// characters, white space, a control or non-ASCII byte): what the
        /// read accepts, the parser accepts, with the same entries.
        #[test]
        fn what_the_read_accepts_of_bent_json_parses(
            json in small_json(),
            pad in 0usize..70,
            bends in proptest::collection::vec((0usize..600, 0u8..3, proptest::sample::select(BENDS)), 1..4),
        ) {
            // Leading white space moves every token across the blocks.
            let mut bytes = format!("{}{json}", " ".repeat(pad)).into_bytes();
            for (at, how, b) in bends {
                let at = at % (bytes.len() + 1);
                match how {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => bytes[at] = b,
                    _ => bytes.insert(at, b),
                }
            }
            if let Scan::Unique(_) = scan(&bytes)
                && let Ok(json) = std::str::from_utf8(&bytes)
            {
                proptest::prop_assert!(sonic_rs::from_str::<Value>(json).is_ok(), "{:?}", json);
                check(json);
            }
        }

        /// Any text at all (JSON's characters, white space, escapes,
        /// control and non-ASCII bytes, in any order): what the read
        /// accepts, the parser accepts, with the same entries.
        #[test]
        fn what_the_read_accepts_parses(bytes in proptest::collection::vec(
            proptest::sample::select(&b"{}[]:,\"\"\"0123-+.eEtrufalsn \t\n\\x\x01\x7f\xc3\xa9"[..]), 0..300)
        ) {
            if let Scan::Unique(_) = scan(&bytes)
                && let Ok(json) = std::str::from_utf8(&bytes)
            {
                proptest::prop_assert!(sonic_rs::from_str::<Value>(json).is_ok(), "{:?}", json);
                check(json);
            }
        }

        /// Whatever the text, an outline it gives matches the parse.
        #[test]
        fn outlines_match_the_parse(json in crate::core::decision::tests::repeating_json()) {
            proptest::prop_assume!(sonic_rs::from_str::<Value>(&json).is_ok());
            check(&json);
        }
    }
}
