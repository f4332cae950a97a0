//! Copy-on-write editing of a parsed decision, for stripping.
//!
//! A parsed `sonic_rs::Value` is not edited in place: its mutable objects are
//! hash maps, which would lose the input's field order. Instead a [`Node`]
//! starts as a borrow of the parsed document and opens an object or array
//! into an ordered `Vec` only where an edit reaches it. Everything the policy
//! does not touch is written straight from the document, numbers as their
//! source text.
//!
//! The document must already be normalised ([`crate::core::decision::normalise`]):
//! one entry per key. Keys that differ only in case are different entries;
//! the editing calls that stripping uses ([`Node::for_each_at`],
//! [`Node::retain_at`], [`Node::remove_keys`], [`Node::visit_fields`]) reach
//! every one of them ([`key_matches`]).

use sonic_rs::{JsonContainerTrait, JsonValueTrait, Value};

use crate::core::decision;
use crate::core::view::{self, TextValue};
use crate::policy::key_matches;

/// An array index token (RFC 6901: digits only).
fn index(token: &str) -> Option<usize> {
    if token.bytes().all(|b| b.is_ascii_digit()) {
        token.parse().ok()
    } else {
        None
    }
}

/// A JSON value being edited.
#[derive(Debug)]
pub enum Node<'a> {
    /// Unchanged, borrowed from the parsed document.
    Doc(&'a Value),
    /// An opened object, fields in input order.
    Object(Vec<(&'a str, Node<'a>)>),
    /// An opened array.
    Array(Vec<Node<'a>>),
    /// A replaced string.
    String(String),
    /// A replaced number: its JSON text.
    Number(String),
    /// Unchanged, borrowed from a text the outline read accepted (the
    /// one-walk strip of a record read from its text: see
    /// [`crate::core::rewrite`]).
    Text(TextValue<'a>),
}

impl<'a> Node<'a> {
    /// Turn a borrowed object or array into an editable one (children stay borrowed).
    fn open(&mut self) {
        if let Node::Doc(v) = *self {
            if let Some(o) = v.as_object() {
                *self = Node::Object(o.iter().map(|(k, x)| (k, Node::Doc(x))).collect());
            } else if let Some(a) = v.as_array() {
                *self = Node::Array(a.iter().map(Node::Doc).collect());
            }
        } else if let Node::Text(v) = *self {
            if let Some(o) = view::View::entries(v) {
                *self = Node::Object(o.map(|(k, x)| (k, Node::Text(x))).collect());
            } else if let Some(a) = view::View::elements(v) {
                *self = Node::Array(a.map(Node::Text).collect());
            }
        }
    }

    /// The fields, opened for editing; `None` if this is not an object.
    pub fn as_object_mut(&mut self) -> Option<&mut Vec<(&'a str, Node<'a>)>> {
        self.open();
        match self {
            Node::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The elements, opened for editing; `None` if this is not an array.
    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Node<'a>>> {
        self.open();
        match self {
            Node::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The field `key` of an object, opened for editing.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node<'a>> {
        let m = self.as_object_mut()?;
        m.iter_mut().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Follow unescaped pointer tokens, opening the containers on the way.
    pub fn pointer_mut(&mut self, tokens: &[String]) -> Option<&mut Node<'a>> {
        let mut cur = self;
        for t in tokens {
            cur.open();
            cur = match cur {
                Node::Object(m) => m
                    .iter_mut()
                    .find(|(k, _)| *k == t.as_str())
                    .map(|(_, v)| v)?,
                Node::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// Remove field `key` of an object; whether it was there. An object
    /// without the key is left borrowed.
    pub fn remove_key(&mut self, key: &str) -> bool {
        if let Node::Doc(v) = self
            && v.as_object().is_some_and(|o| !o.contains_key(&key))
        {
            return false;
        }
        let Some(m) = self.as_object_mut() else {
            return false;
        };
        match m.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                m.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether following `token` from here reaches a value: a key matching
    /// it, or an index inside the array. Reads without opening anything.
    fn has_child(&self, token: &str) -> bool {
        match self {
            Node::Doc(v) => {
                if let Some(o) = v.as_object() {
                    o.iter().any(|(k, _)| key_matches(k, token))
                } else if let Some(a) = v.as_array() {
                    index(token).is_some_and(|i| i < a.len())
                } else {
                    false
                }
            }
            Node::Text(v) => {
                if let Some(mut o) = view::View::entries(*v) {
                    o.any(|(k, _)| key_matches(k, token))
                } else if let Some(a) = view::View::elements(*v) {
                    index(token).is_some_and(|i| i < a.count())
                } else {
                    false
                }
            }
            Node::Object(m) => m.iter().any(|(k, _)| key_matches(k, token)),
            Node::Array(a) => index(token).is_some_and(|i| i < a.len()),
            _ => false,
        }
    }

    /// Call `f` on every value the pointer tokens reach: at each object, every
    /// key matching the token (case does not matter, see [`key_matches`]);
    /// at each array, the element at the index. Containers are opened only
    /// on the way to a match.
    pub fn for_each_at<F: FnMut(&mut Node<'a>)>(&mut self, tokens: &[String], f: &mut F) {
        let Some((t, rest)) = tokens.split_first() else {
            f(self);
            return;
        };
        if !self.has_child(t) {
            return;
        }
        self.open();
        match self {
            Node::Object(m) => {
                for (_, v) in m.iter_mut().filter(|(k, _)| key_matches(k, t)) {
                    v.for_each_at(rest, f);
                }
            }
            Node::Array(a) => {
                if let Some(v) = index(t).and_then(|i| a.get_mut(i)) {
                    v.for_each_at(rest, f);
                }
            }
            _ => {}
        }
    }

    /// Call `keep` on every value the pointer reaches (as
    /// [`Node::for_each_at`] does) and remove those for which it returns
    /// false. Returns how many values were removed.
    pub fn retain_at<F: FnMut(&mut Node<'a>) -> bool>(
        &mut self,
        tokens: &[String],
        keep: &mut F,
    ) -> usize {
        let Some((last, parent)) = tokens.split_last() else {
            return 0;
        };
        let mut removed = 0;
        self.for_each_at(parent, &mut |p: &mut Node<'a>| {
            if !p.has_child(last) {
                return;
            }
            p.open();
            match p {
                Node::Object(m) => m.retain_mut(|(k, v)| {
                    let keep = !key_matches(k, last) || keep(v);
                    removed += usize::from(!keep);
                    keep
                }),
                Node::Array(a) => {
                    if let Some(i) = index(last).filter(|&i| i < a.len())
                        && !keep(&mut a[i])
                    {
                        a.remove(i);
                        removed += 1;
                    }
                }
                _ => {}
            }
        });
        removed
    }

    /// Remove every field of an object whose key matches `token` (case does
    /// not matter); how many were removed. An object without one is left borrowed.
    pub fn remove_keys(&mut self, token: &str) -> usize {
        if matches!(self, Node::Doc(_) | Node::Text(_)) && !self.has_child(token) {
            return 0;
        }
        let Some(m) = self.as_object_mut() else {
            return 0;
        };
        let before = m.len();
        m.retain(|(k, _)| !key_matches(k, token));
        before - m.len()
    }

    /// Call `f` with every field of an object whose key matches `key` (case
    /// does not matter): the string, or `None` when the value is not one.
    /// Returns how many fields were visited (0 when this is not an object).
    pub fn visit_fields(&self, key: &str, mut f: impl FnMut(Option<&str>)) -> usize {
        let mut n = 0;
        match self {
            Node::Doc(v) => {
                for (k, x) in v.as_object().into_iter().flat_map(|o| o.iter()) {
                    if key_matches(k, key) {
                        n += 1;
                        f(x.as_str());
                    }
                }
            }
            Node::Text(v) => {
                for (k, x) in view::View::entries(*v).into_iter().flatten() {
                    if key_matches(k, key) {
                        n += 1;
                        f(view::View::as_str(x));
                    }
                }
            }
            Node::Object(m) => {
                for (k, x) in m.iter() {
                    if key_matches(k, key) {
                        n += 1;
                        f(x.as_str());
                    }
                }
            }
            _ => {}
        }
        n
    }

    /// Whether this is JSON `null`.
    pub fn is_null(&self) -> bool {
        match self {
            Node::Doc(v) => v.is_null(),
            Node::Text(v) => view::View::is_null(*v),
            _ => false,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Doc(v) => v.as_str(),
            Node::Text(v) => view::View::as_str(*v),
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as a finite `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Node::Doc(v) if v.is_number() => decision::as_f64(v),
            Node::Text(v) => {
                view::View::with_number(*v, |t| t.parse::<f64>().ok().filter(|x| x.is_finite()))
                    .flatten()
            }
            Node::Number(t) => t.parse::<f64>().ok().filter(|x| x.is_finite()),
            _ => None,
        }
    }

    /// The string field `key` of an object, if there is one.
    pub fn field_str(&self, key: &str) -> Option<&str> {
        match self {
            Node::Doc(v) => v.as_object()?.get(&key)?.as_str(),
            Node::Text(v) => view::View::as_str(view::View::get(*v, key)?),
            Node::Object(m) => m.iter().find(|(k, _)| *k == key)?.1.as_str(),
            _ => None,
        }
    }

    /// Append the JSON text.
    pub fn write(&self, out: &mut Vec<u8>) {
        const SER: &str = "a parsed value always serialises";
        match self {
            Node::Doc(v) => sonic_rs::to_writer(&mut *out, *v).expect(SER),
            // Free of escapes, valid JSON: written as it was sent.
            Node::Text(v) => out.extend_from_slice(v.raw().as_bytes()),
            Node::Object(m) => {
                out.push(b'{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    sonic_rs::to_writer(&mut *out, k).expect(SER);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
            Node::Array(a) => {
                out.push(b'[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write(out);
                }
                out.push(b']');
            }
            Node::String(s) => sonic_rs::to_writer(&mut *out, s).expect(SER),
            Node::Number(t) => out.extend_from_slice(t.as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: &Node) -> String {
        let mut out = Vec::new();
        n.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn edits_keep_order_and_untouched_text() {
        let v: Value =
            sonic_rs::from_str(r#"{"z":1,"a":{"y":2.50,"b":"x","c":[1,{"q":1E2}]},"m":null}"#)
                .unwrap();
        let mut n = Node::Doc(&v);
        assert_eq!(
            text(&n),
            r#"{"z":1,"a":{"y":2.50,"b":"x","c":[1,{"q":1E2}]},"m":null}"#
        );
        assert!(n.pointer_mut(&["a".into()]).unwrap().remove_key("b"));
        assert!(!n.remove_key("nope"));
        *n.pointer_mut(&["a".into(), "y".into()]).unwrap() = Node::Number("3".into());
        n.pointer_mut(&["a".into(), "c".into()])
            .unwrap()
            .as_array_mut()
            .unwrap()
            .remove(0);
        assert_eq!(text(&n), r#"{"z":1,"a":{"y":3,"c":[{"q":1E2}]},"m":null}"#);
        assert!(n.pointer_mut(&["z".into(), "x".into()]).is_none());
        assert!(
            n.pointer_mut(&["a".into(), "c".into(), "1".into()])
                .is_none()
        );
    }

    /// Reading a node gives the same answer whether it is still borrowed,
    /// opened by an earlier edit, or replaced.
    #[test]
    fn opened_and_replaced_nodes_read_like_borrowed_ones() {
        let v: Value =
            sonic_rs::from_str(r#"{"a":[{"id":"x","k":1,"z":2},{"id":"y"}],"s":"str","n":1.5}"#)
                .unwrap();
        let mut n = Node::Doc(&v);
        let tok = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            n.pointer_mut(&tok(&["a", "0"])).unwrap().field_str("id"),
            Some("x")
        );
        // Open the array and its first object with an edit, then read through them.
        assert!(n.pointer_mut(&tok(&["a", "0"])).unwrap().remove_key("k"));
        let first = n.pointer_mut(&tok(&["a", "0"])).unwrap();
        assert!(matches!(first, Node::Object(_)));
        assert_eq!(first.field_str("id"), Some("x"));
        assert_eq!(first.field_str("z"), None, "not a string");
        assert_eq!(first.field_str("nope"), None);
        assert_eq!(
            n.pointer_mut(&tok(&["a", "1", "id"])).unwrap().as_str(),
            Some("y")
        );
        assert!(n.pointer_mut(&tok(&["a", "x"])).is_none());
        assert!(n.pointer_mut(&tok(&["a", "5"])).is_none());
        // Replaced values read back as what they now are.
        *n.pointer_mut(&tok(&["s"])).unwrap() = Node::String("new".into());
        assert_eq!(n.pointer_mut(&tok(&["s"])).unwrap().as_str(), Some("new"));
        *n.pointer_mut(&tok(&["n"])).unwrap() = Node::Number("2.25".into());
        assert_eq!(n.pointer_mut(&tok(&["n"])).unwrap().as_f64(), Some(2.25));
        assert_eq!(n.pointer_mut(&tok(&["n"])).unwrap().as_str(), None);
        assert_eq!(Node::Number("1e999".into()).as_f64(), None);
        assert_eq!(Node::String("1.5".into()).as_f64(), None);
        assert_eq!(Node::Doc(&v["s"]).as_f64(), None);
        assert_eq!(Node::Doc(&v["n"]).as_f64(), Some(1.5));
        assert_eq!(Node::Doc(&v["n"]).field_str("id"), None);
        assert_eq!(
            text(&n),
            r#"{"a":[{"id":"x","z":2},{"id":"y"}],"s":"new","n":2.25}"#
        );
    }
}
