//! JSON pointers and what is built from them: removal plans grouped by
//! parent, and the matcher of sensitive segment ids.

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

/// Sensitive segment ids, compiled. Patterns of the form `literal*` (most of
/// them) are matched as prefixes; the rest by `wildmatch`.
#[derive(Debug, Clone)]
pub struct SegmentMatcher {
    pub pointer: Pointer,
    pub prefixes: Vec<String>,
    pub patterns: Vec<WildMatch>,
    pub source: Vec<String>,
}

impl SegmentMatcher {
    pub fn new(pointer: Pointer, patterns: &[String]) -> SegmentMatcher {
        let mut prefixes = Vec::new();
        let mut wild = Vec::new();
        for p in patterns {
            match p.strip_suffix('*') {
                Some(lit) if !lit.contains(['*', '?']) => prefixes.push(lit.to_string()),
                _ => wild.push(WildMatch::new(p)),
            }
        }
        SegmentMatcher {
            pointer,
            prefixes,
            patterns: wild,
            source: patterns.to_vec(),
        }
    }

    /// Whether a segment id is sensitive.
    pub fn matches(&self, id: &str) -> bool {
        self.prefixes.iter().any(|p| id.starts_with(p.as_str()))
            || self.patterns.iter().any(|w| w.matches(id))
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
    use super::*;

    #[test]
    fn pointers_parse_and_unescape() {
        let p = Pointer::parse("/a~1b/c~0d").unwrap();
        assert_eq!(p.tokens, vec!["a/b", "c~d"]);
        assert!(Pointer::parse("a/b").is_err());
        assert!(Pointer::parse("/a//b").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }
}
