//! A record's text read once for its structure: whether some object repeats
//! a key (repeated keys are resolved before judging, see
//! [`crate::core::decision`]), and where each object's entries lie, so that
//! [`crate::core::rewrite`] copies what stripping leaves untouched from the
//! record as it was sent instead of serialising it again from the parsed
//! document (issue 11: "bytes untouched by stripping are copied, not
//! re-serialised").
//!
//! The text must be valid JSON (it has parsed). It is read 64 bytes at a
//! time: each block becomes bit masks of its quotes and structural bytes
//! (sixteen bytes to a compare: SSE2 on x86-64, through `wide`), the bits
//! inside strings are the running XOR of the quote bits, and only the
//! structural bytes outside strings are visited. A `:` ends a key, and the
//! last two quotes before it enclose it. Text holding a backslash is not
//! read here ([`Scan::Escaped`]): an escaped quote would need more than one
//! XOR to place, and an escaped key may spell another differently.
//!
//! An outline never decides what is written: the walk decides on the parsed
//! document, and takes from the outline only the text of a value it would
//! have written whole, after checking each entry's key against the
//! document's ([`crate::core::rewrite`]).

use wide::u8x16;

/// No entry (an index into [`Outline::entries`]).
pub const NONE: u32 = u32::MAX;

/// Above this many keys an object is not checked pair by pair here: it is
/// reported as [`Scan::MayRepeat`], for the hashed check on the document.
const MANY: usize = 32;

/// What one read of a text found.
#[derive(Debug)]
pub enum Scan {
    /// No object repeats a key; where each entry lies.
    Unique(Outline),
    /// Some object repeats a key, or has more than [`MANY`] of them.
    MayRepeat,
    /// The text holds a backslash: not read here.
    Escaped,
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

/// Where each object's entries lie in a text.
#[derive(Debug, Clone, Default)]
pub struct Outline {
    /// Every entry, in text order.
    entries: Vec<Entry>,
    /// Whether the text is an object, and its first entry ([`NONE`] for `{}`).
    root: Option<u32>,
}

/// An open object, while the text is read (arrays need no frame: their
/// elements are reached through the document, not the outline).
#[derive(Clone, Copy)]
struct Frame {
    /// Where its keys start in the key list.
    keys: usize,
    /// Its last entry so far, or [`NONE`].
    last: u32,
    /// The entry whose value it is, or [`NONE`] (the root, or an object in
    /// an array).
    parent: u32,
}

/// The state of one [`scan`]: the outline so far, and the open objects.
struct Reader<'t> {
    json: &'t [u8],
    outline: Outline,
    /// The keys of the open objects, innermost last, with their fingerprints.
    keys: Vec<(u64, &'t [u8])>,
    frames: Vec<Frame>,
}

impl<'t> Reader<'t> {
    /// A `{` at `at`: a child of the open entry when it opens that entry's
    /// value (not an object inside an array there).
    fn open(&mut self, at: u32) {
        let parent = match self.frames.last() {
            Some(f) if f.last != NONE => {
                let e = &self.outline.entries[f.last as usize];
                if skip_space(self.json, e.value.0) == at {
                    f.last
                } else {
                    NONE
                }
            }
            _ => NONE,
        };
        if self.frames.is_empty() && skip_space(self.json, 0) == at {
            self.outline.root = Some(NONE);
        }
        self.frames.push(Frame {
            keys: self.keys.len(),
            last: NONE,
            parent,
        });
    }

    /// A `:` at `at` after the key whose quotes are at `open_q` and
    /// `close_q`; `false` when the key repeats (or may: see [`MANY`]).
    fn key(&mut self, open_q: u32, close_q: u32, at: u32) -> bool {
        let key = self
            .json
            .get(open_q as usize + 1..close_q as usize)
            .unwrap_or_default();
        let Some(&f) = self.frames.last() else {
            return false;
        };
        let print = fingerprint(key);
        if self.keys.len() - f.keys >= MANY
            || self.keys[f.keys..]
                .iter()
                .any(|&(q, k)| q == print && k == key)
        {
            return false;
        }
        self.keys.push((print, key));
        let entries = &mut self.outline.entries;
        let id = entries.len() as u32;
        entries.push(Entry {
            key: (open_q + 1, close_q),
            value: (at + 1, at + 1),
            next: NONE,
            child: NONE,
        });
        if f.last != NONE {
            // The previous entry ends at the `,` before this key.
            let prev = &mut entries[f.last as usize];
            prev.value.1 = skip_space_back(self.json, open_q);
            prev.next = id;
        } else if f.parent != NONE {
            entries[f.parent as usize].child = id;
        } else if self.frames.len() == 1 && self.outline.root.is_some() {
            self.outline.root = Some(id);
        }
        if let Some(f) = self.frames.last_mut() {
            f.last = id;
        }
        true
    }

    /// A `}` at `at`: the object's last entry ends here.
    fn close(&mut self, at: u32) {
        if let Some(f) = self.frames.pop() {
            if f.last != NONE {
                self.outline.entries[f.last as usize].value.1 = at;
            }
            self.keys.truncate(f.keys);
        }
    }
}

/// Read `json`, valid JSON text (see the module doc).
pub fn scan(json: &[u8]) -> Scan {
    if u32::try_from(json.len()).is_err() {
        return Scan::MayRepeat;
    }
    let mut r = Reader {
        json,
        outline: Outline {
            entries: Vec::with_capacity(64),
            root: None,
        },
        keys: Vec::with_capacity(64),
        frames: Vec::with_capacity(16),
    };
    // The last two quotes before the current block (opening, closing).
    let (mut open_q, mut close_q) = (0u32, 0u32);
    // All ones when the previous block ended inside a string.
    let mut carry = 0u64;
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
        let [quote, backslash, structural] = masks(block);
        if backslash != 0 {
            return Scan::Escaped;
        }
        let mut inside = quote;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        inside ^= carry;
        carry = 0u64.wrapping_sub(inside >> 63);
        let mut events = structural & !inside;
        while events != 0 {
            let i = events.trailing_zeros();
            events &= events - 1;
            let at = base + i;
            match block[i as usize] {
                b'{' => r.open(at),
                b':' => {
                    let (o, c) = last_two(quote & ((1u64 << i) - 1), base, open_q, close_q);
                    if !r.key(o, c, at) {
                        return Scan::MayRepeat;
                    }
                }
                _ => r.close(at),
            }
        }
        (open_q, close_q) = last_two(quote, base, open_q, close_q);
    }
    Scan::Unique(r.outline)
}

/// The bits of `"`, `\\` and of `{`, `}` and `:` in a block of 64 (bit
/// `i` for `block[i]`).
fn masks(block: &[u8]) -> [u64; 3] {
    let mut out = [0u64; 3];
    for (i, lane) in block.chunks_exact(16).enumerate() {
        let v = u8x16::from(<[u8; 16]>::try_from(lane).expect("16 bytes"));
        let is = |c: u8| v.simd_eq(u8x16::splat(c));
        let structural = is(b'{') | is(b'}') | is(b':');
        for (m, bits) in out.iter_mut().zip([is(b'"'), is(b'\\'), structural]) {
            *m |= u64::from(bits.to_bitmask()) << (16 * i);
        }
    }
    out
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first place at or after `at` that is not JSON white space.
fn skip_space(json: &[u8], mut at: u32) -> u32 {
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

/// The positions of the last two quotes: those among `bits` (offset by
/// `base`), then the ones carried from before.
fn last_two(bits: u64, base: u32, open_q: u32, close_q: u32) -> (u32, u32) {
    if bits == 0 {
        return (open_q, close_q);
    }
    let last = 63 - bits.leading_zeros();
    let rest = bits & !(1u64 << last);
    if rest == 0 {
        (close_q, base + last)
    } else {
        (base + 63 - rest.leading_zeros(), base + last)
    }
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

        /// Whatever the text, an outline it gives matches the parse.
        #[test]
        fn outlines_match_the_parse(json in crate::core::decision::tests::repeating_json()) {
            proptest::prop_assume!(sonic_rs::from_str::<Value>(&json).is_ok());
            check(&json);
        }
    }
}
