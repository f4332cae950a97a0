//! What validation, consent and counting read of a decision, read the same
//! way from a parsed document or from the text itself.
//!
//! A record whose text the outline read accepts ([`outline::Scan::Unique`]:
//! valid JSON, no escapes, no repeated key) is never parsed into a
//! document: its fields are read through its outline ([`TextValue`]).
//! Every other record is parsed by sonic-rs (repeated keys resolved) and
//! read through the document. [`View`] is the one set of reads both give,
//! so the rules in [`crate::core::decision`] are written once and read
//! both alike (property-tested there: the same decision, or the same
//! rejection, either way).

use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, Value};

use crate::core::outline::{self, Outline};

/// A JSON value as the rules read it.
pub trait View<'a>: Copy + Sized {
    type Entries: Iterator<Item = (&'a str, Self)>;
    type Elements: Iterator<Item = Self>;

    fn json_type(self) -> JsonType;
    fn as_str(self) -> Option<&'a str>;
    fn as_bool(self) -> Option<bool>;
    /// A number's text, as it was sent.
    fn with_number<R>(self, f: impl FnOnce(&str) -> R) -> Option<R>;
    /// An object's entries, in order.
    fn entries(self) -> Option<Self::Entries>;
    /// An array's elements, in order.
    fn elements(self) -> Option<Self::Elements>;

    fn is_null(self) -> bool {
        self.json_type() == JsonType::Null
    }

    /// The value of `key` in an object.
    fn get(self, key: &str) -> Option<Self> {
        self.entries()?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The number as an `i64`, read from its text (`-0` is 0, `1.0` and
    /// `1e3` are not integers), as serde_json's `arbitrary_precision` read it.
    fn as_i64(self) -> Option<i64> {
        self.with_number(|t| t.parse().ok()).flatten()
    }

    /// Whether the value is a number written as an integer that fits an
    /// `i64` or a `u64`.
    fn is_integer(self) -> bool {
        self.with_number(|t| t.parse::<i64>().is_ok() || t.parse::<u64>().is_ok())
            .unwrap_or(false)
    }

    /// The value's type, for an error message (never the value itself).
    fn type_name(self) -> &'static str {
        match self.json_type() {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean",
            JsonType::Number if self.is_integer() => "an integer",
            JsonType::Number => "a number",
            JsonType::String => "a string",
            JsonType::Array => "an array",
            JsonType::Object => "an object",
        }
    }
}

/// Follow unescaped pointer tokens (a token of digits indexes an array).
pub fn lookup<'a, V: View<'a>>(v: V, tokens: &[String]) -> Option<V> {
    let mut cur = v;
    for t in tokens {
        cur = match cur.json_type() {
            JsonType::Object => cur.get(t)?,
            JsonType::Array => cur.elements()?.nth(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

impl<'a> View<'a> for &'a Value {
    type Entries = sonic_rs::value::object::Iter<'a>;
    type Elements = std::slice::Iter<'a, Value>;

    fn json_type(self) -> JsonType {
        self.get_type()
    }

    fn as_str(self) -> Option<&'a str> {
        JsonValueTrait::as_str(self)
    }

    fn as_bool(self) -> Option<bool> {
        JsonValueTrait::as_bool(self)
    }

    fn with_number<R>(self, f: impl FnOnce(&str) -> R) -> Option<R> {
        match self.as_raw_number() {
            Some(raw) => Some(f(raw.as_str())),
            // Numbers are kept as their text (`arbitrary_precision`); a
            // document built otherwise is read through its value.
            None => self.as_number().map(|n| f(&n.to_string())),
        }
    }

    fn entries(self) -> Option<Self::Entries> {
        self.as_object().map(|o| o.iter())
    }

    fn elements(self) -> Option<Self::Elements> {
        self.as_array().map(|a| a.iter())
    }

    fn get(self, key: &str) -> Option<Self> {
        self.as_object()?.get(&key)
    }
}

/// A value read from a text the outline read accepted: `span` is the
/// value's own text, white space trimmed.
#[derive(Debug, Clone, Copy)]
pub struct TextValue<'a> {
    text: &'a str,
    outline: &'a Outline,
    span: outline::Span,
    /// An object's first entry, when known ([`UNKNOWN`]: looked up in the
    /// outline when its entries are read).
    first: u32,
    /// No entry before this one lies inside the value (where a search for
    /// the entries of objects inside it starts).
    after: u32,
}

/// An object's first entry not known yet ([`TextValue::first`]).
const UNKNOWN: u32 = u32::MAX - 1;

impl<'a> TextValue<'a> {
    /// The whole text's value. `outline` must be [`outline::scan`]'s of
    /// `text` (which accepted it).
    pub fn root(text: &'a str, outline: &'a Outline) -> TextValue<'a> {
        TextValue {
            first: outline.root().unwrap_or(UNKNOWN),
            ..TextValue::of(text, outline, (0, text.len() as u32))
        }
    }

    /// The value of a span (white space around it included).
    fn of(text: &'a str, outline: &'a Outline, (start, end): outline::Span) -> TextValue<'a> {
        let bytes = text.as_bytes();
        let start = outline::skip_space(bytes, start);
        let mut end = end;
        while end > start && matches!(bytes[end as usize - 1], b' ' | b'\t' | b'\n' | b'\r') {
            end -= 1;
        }
        TextValue {
            text,
            outline,
            span: (start, end),
            first: UNKNOWN,
            after: 0,
        }
    }

    /// The value of the outline entry `id` (which must be one).
    pub fn of_entry(text: &'a str, outline: &'a Outline, id: u32) -> TextValue<'a> {
        let e = outline.entry(id).expect("an entry of the outline");
        TextValue {
            first: e.child,
            after: id + 1,
            ..TextValue::of(text, outline, e.value)
        }
    }

    /// An object's first entry ([`outline::NONE`] when empty).
    fn first_entry(self) -> u32 {
        if self.first == UNKNOWN {
            self.outline
                .first_inside(self.text.as_bytes(), self.span.0, self.after)
        } else {
            self.first
        }
    }

    /// The value's text.
    pub fn raw(self) -> &'a str {
        &self.text[self.span.0 as usize..self.span.1 as usize]
    }

    fn first_byte(self) -> u8 {
        self.text.as_bytes()[self.span.0 as usize]
    }
}

impl<'a> View<'a> for TextValue<'a> {
    type Entries = TextEntries<'a>;
    type Elements = TextElements<'a>;

    fn json_type(self) -> JsonType {
        match self.first_byte() {
            b'{' => JsonType::Object,
            b'[' => JsonType::Array,
            b'"' => JsonType::String,
            b't' | b'f' => JsonType::Boolean,
            b'n' => JsonType::Null,
            _ => JsonType::Number,
        }
    }

    fn as_str(self) -> Option<&'a str> {
        // No escapes in an accepted text: the string is its text.
        let raw = self.raw();
        (self.first_byte() == b'"').then(|| &raw[1..raw.len() - 1])
    }

    fn as_bool(self) -> Option<bool> {
        match self.raw() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    fn with_number<R>(self, f: impl FnOnce(&str) -> R) -> Option<R> {
        (self.json_type() == JsonType::Number).then(|| f(self.raw()))
    }

    fn entries(self) -> Option<TextEntries<'a>> {
        (self.first_byte() == b'{').then(|| TextEntries {
            text: self.text,
            outline: self.outline,
            next: self.first_entry(),
        })
    }

    /// Keys compared on the outline's spans: a value is made for the
    /// entry found only.
    fn get(self, key: &str) -> Option<TextValue<'a>> {
        if self.first_byte() != b'{' {
            return None;
        }
        let mut id = self.first_entry();
        while let Some(e) = self.outline.entry(id) {
            if self.text.as_bytes()[e.key.0 as usize..e.key.1 as usize] == *key.as_bytes() {
                return Some(TextValue::of_entry(self.text, self.outline, id));
            }
            id = e.next;
        }
        None
    }

    fn elements(self) -> Option<TextElements<'a>> {
        (self.first_byte() == b'[').then(|| TextElements {
            value: self,
            at: self.span.0 + 1,
            hint: self.after,
        })
    }
}

/// An object's entries, read from the outline.
pub struct TextEntries<'a> {
    text: &'a str,
    outline: &'a Outline,
    next: u32,
}

impl<'a> Iterator for TextEntries<'a> {
    type Item = (&'a str, TextValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let id = self.next;
        let e = self.outline.entry(id)?;
        self.next = e.next;
        let key = &self.text[e.key.0 as usize..e.key.1 as usize];
        Some((key, TextValue::of_entry(self.text, self.outline, id)))
    }
}

/// An array's elements, read from its text: each ends at the first `,` or
/// `]` outside strings and nested containers (no escapes in an accepted
/// text, so a quote always opens or closes a string).
pub struct TextElements<'a> {
    value: TextValue<'a>,
    /// Where the next element's text begins.
    at: u32,
    /// No entry before this one is inside the next object element.
    hint: u32,
}

impl<'a> Iterator for TextElements<'a> {
    type Item = TextValue<'a>;

    fn next(&mut self) -> Option<TextValue<'a>> {
        let bytes = self.value.text.as_bytes();
        let end = self.value.span.1 - 1;
        let start = outline::skip_space(bytes, self.at);
        if start >= end {
            return None;
        }
        let (stop, first) = self.value.element_end(start, end, self.hint);
        // The `,` after the element (or the array's `]`).
        self.at = outline::skip_space(bytes, stop) + 1;
        if first < UNKNOWN {
            self.hint = first + 1;
        }
        Some(TextValue {
            first,
            after: self.hint,
            ..TextValue::of(self.value.text, self.value.outline, (start, stop))
        })
    }
}

impl TextValue<'_> {
    /// Where the element starting at `start` ends (exclusive), in an array
    /// whose `]` is at `end`, and its first entry when it is an object
    /// ([`UNKNOWN`] when it is not; no entry before `hint` is inside it).
    /// An object ends after its last entry's value (the outline has it),
    /// a string at its closing quote (no escapes), anything else at the
    /// first `,` or `]` outside strings and nested containers (white space
    /// before it included: [`TextValue::of`] trims it).
    fn element_end(self, start: u32, end: u32, hint: u32) -> (u32, u32) {
        let bytes = self.text.as_bytes();
        match bytes[start as usize] {
            b'{' => {
                let first = self.outline.first_inside(bytes, start, hint);
                let mut id = first;
                let mut last = None;
                while let Some(e) = self.outline.entry(id) {
                    last = Some(e.value.1);
                    id = e.next;
                }
                let stop = match last {
                    Some(close) => close + 1,
                    None => outline::skip_space(bytes, start + 1) + 1,
                };
                (stop, first)
            }
            b'"' => {
                let from = start as usize + 1;
                let stop =
                    memchr::memchr(b'"', &bytes[from..]).map_or(end, |i| (from + i + 1) as u32);
                (stop, UNKNOWN)
            }
            _ => {
                let (mut depth, mut in_string) = (0u32, false);
                let mut i = start;
                while i < end {
                    match bytes[i as usize] {
                        b'"' => in_string = !in_string,
                        _ if in_string => {}
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => depth -= 1,
                        b',' if depth == 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                (i, UNKNOWN)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both views of `json` read alike, all the way down.
    fn same<'a, 'b>(a: &'a Value, b: TextValue<'b>) {
        assert_eq!(a.json_type(), b.json_type(), "{}", b.raw());
        assert_eq!(View::as_str(a), b.as_str());
        assert_eq!(View::as_bool(a), b.as_bool());
        assert_eq!(View::as_i64(a), b.as_i64());
        assert_eq!(a.type_name(), b.type_name());
        match (a.entries(), b.entries()) {
            (Some(x), Some(y)) => {
                let x: Vec<_> = x.collect();
                let y: Vec<_> = y.collect();
                assert_eq!(x.len(), y.len(), "{}", b.raw());
                for ((ka, va), (kb, vb)) in x.into_iter().zip(y) {
                    assert_eq!(ka, kb);
                    same(va, vb);
                }
            }
            (None, None) => {}
            _ => panic!("object in one view only: {}", b.raw()),
        }
        match (a.elements(), b.elements()) {
            (Some(x), Some(y)) => {
                let x: Vec<_> = x.collect();
                let y: Vec<_> = y.collect();
                assert_eq!(x.len(), y.len(), "{}", b.raw());
                for (va, vb) in x.into_iter().zip(y) {
                    same(va, vb);
                }
            }
            (None, None) => {}
            _ => panic!("array in one view only: {}", b.raw()),
        }
    }

    fn check(json: &str) {
        let doc: Value = sonic_rs::from_str(json).expect("test JSON parses");
        let outline::Scan::Unique(o) = outline::scan(json.as_bytes()) else {
            panic!("not read: {json}");
        };
        same(&doc, TextValue::root(json, &o));
    }

    #[test]
    fn the_text_reads_as_the_document() {
        for json in [
            r#"{}"#,
            r#" { "a" : [ 1 , -0 , 2.5e3 , "x,]" , [ ] , { } , { "b" : null } ] , "c" : true } "#,
            r#"[{"a":{"b":[{"c":"}"}]}},[[1],[2,[3]]],"[",false]"#,
            r#"{"k":18446744073709551615,"n":-9223372036854775808,"f":1.0,"e":"é€"}"#,
            "\"s\"",
            " 7 ",
            "null",
        ] {
            check(json);
        }
    }

    #[test]
    fn pointers_reach_into_objects_and_arrays() {
        let json = r#"{"user":{"data":[{"id":"a"},{"id":"b","segment":[{"id":"s"}]}]}}"#;
        let doc: Value = sonic_rs::from_str(json).unwrap();
        let outline::Scan::Unique(o) = outline::scan(json.as_bytes()) else {
            panic!()
        };
        let text = TextValue::root(json, &o);
        for path in [
            "/user/data/1/segment/0/id",
            "/user/data/0/id",
            "/user/data/2",
            "/user/x",
        ] {
            let tokens: Vec<String> = path[1..].split('/').map(String::from).collect();
            let a = lookup(&doc, &tokens).and_then(View::as_str);
            let b = lookup(text, &tokens).and_then(|v| v.as_str());
            assert_eq!(a, b, "{path}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        #[test]
        fn any_accepted_text_reads_as_its_document(json in crate::core::decision::tests::repeating_json()) {
            if let outline::Scan::Unique(o) = outline::scan(json.as_bytes()) {
                let doc: Value = sonic_rs::from_str(&json).expect("an accepted text parses");
                same(&doc, TextValue::root(&json, &o));
            }
        }
    }
}
