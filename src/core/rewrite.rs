//! Stripping and writing in one walk: the fast path of [`crate::core::strip`].
//!
//! [`strip::strip`] applies the policy pointer by pointer, each from the
//! root, opening every object on its way into an editable copy, and the
//! edited view is written afterwards. Here the pointers are compiled once
//! into a tree of tokens (a [`Plan`]), and the parsed decision is written out
//! in a single walk that consults the tree at each key: a key the tree does
//! not name is written with its value as it is; a key it names is removed,
//! coarsened, has its segments filtered, or is walked into. Nothing is
//! opened or copied on the way.
//!
//! The output is the same, byte for byte, as the sequential passes give, and
//! the report ([`Stripped`]) names the same pointers (property-tested below
//! against them), in the policy's order. Where a
//! policy's pointers could make the two differ, the policy gets no plan and
//! the guard keeps to the sequential passes: a token of digits only (it may
//! index an array, whose positions one pass shifts for the next), two tokens
//! of one level that match each other, pointers below a coarsened value or
//! below a removed one that remove too (the passes' order decides what is
//! reported), and a coarsening of the segment list.

use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, Object, Value};

use crate::core::consent::{Outcome, Verdict};
use crate::core::decision::Source;
use crate::core::edit::Node;
use crate::core::outline::NONE;
use crate::core::strip::{self, Stripped};
use crate::core::view::{TextValue, View};
use std::collections::{HashMap, HashSet};

use crate::policy::{CoarsenWhen, CompiledPolicy, RemovalGroup, fold_key, key_matches};

/// The policy's pointers as one tree of tokens.
#[derive(Debug, Default)]
pub struct Plan {
    root: Level,
    /// How many pointers `always_plan`, `personal_plan`, `child_plan` and
    /// `lmt_plan` hold (their children, in order: the order the sequential
    /// passes note them).
    always: Vec<(usize, usize)>,
    personal: Vec<(usize, usize)>,
    child: Vec<(usize, usize)>,
    lmt: Vec<(usize, usize)>,
}

#[derive(Debug, Default)]
struct Level {
    steps: Vec<Step>,
    /// Each step's index by its folded token ([`fold_key`]): built while the
    /// plan is built, and kept for lookups on a level of many steps.
    index: HashMap<String, usize>,
    /// On a level of [`TABLED`] to [`SCAN`] steps, the steps a key may
    /// match by its first byte: one bit per step ([`Level::seal`]).
    by_first: Vec<u16>,
}

/// From this many steps, a level looks its candidates up by a key's first
/// byte instead of trying each step in turn.
const TABLED: usize = 4;

/// Above this many steps, a level is searched through its index rather
/// than step by step (a policy may name thousands of keys of one object).
const SCAN: usize = 16;

#[derive(Debug, Default)]
struct Step {
    token: String,
    /// The token's first byte, lowercased (0 for an empty token).
    first: u8,
    /// Index into [`Plan::always`] / [`Plan::personal`] / [`Plan::child`] / [`Plan::lmt`].
    always: Option<usize>,
    personal: Option<usize>,
    child: Option<usize>,
    lmt: Option<usize>,
    /// Indices into the policy's coarsenings, in policy order.
    coarsen: Vec<usize>,
    /// The segments pointer ends here.
    segments: bool,
    /// The segments pointer ends at or below here.
    segments_below: bool,
    next: Level,
}

impl Level {
    /// The step of `token`, made if new. `None` when another token of this
    /// level matches it without being equal (two spellings of one key).
    fn step(&mut self, token: &str) -> Option<&mut Step> {
        let folded = fold_key(token);
        match self.index.get(&folded) {
            Some(&i) if self.steps[i].token == token => Some(&mut self.steps[i]),
            Some(_) => None,
            None => {
                self.index.insert(folded, self.steps.len());
                self.steps.push(Step {
                    token: token.to_string(),
                    first: token.bytes().next().map_or(0, |b| b.to_ascii_lowercase()),
                    ..Step::default()
                });
                self.steps.last_mut()
            }
        }
    }

    /// The step at the end of `tokens`, made if new; `None` as [`Level::step`].
    fn at(&mut self, tokens: &[String]) -> Option<&mut Step> {
        let (first, rest) = tokens.split_first()?;
        let mut step = self.step(first)?;
        for t in rest {
            step = step.next.step(t)?;
        }
        Some(step)
    }

    /// The first-byte tables of this level and those below, once the plan
    /// is built. A step may match a key when the key's first byte is its
    /// token's first byte in either ASCII case; a step whose token starts
    /// with a non-ASCII byte or is empty, and any key starting with a
    /// non-ASCII byte (which may fold to ASCII), are tried whatever the
    /// byte.
    fn seal(&mut self) {
        if (TABLED..=SCAN).contains(&self.steps.len()) {
            let mut table = vec![0u16; 256];
            for (i, s) in self.steps.iter().enumerate() {
                let bit = 1u16 << i;
                if s.first == 0 || !s.first.is_ascii() {
                    table.iter_mut().for_each(|t| *t |= bit);
                } else {
                    table[usize::from(s.first)] |= bit;
                    table[usize::from(s.first.to_ascii_uppercase())] |= bit;
                }
            }
            table[0x80..].fill(((1u32 << self.steps.len()) - 1) as u16);
            self.by_first = table;
        }
        for s in &mut self.steps {
            s.next.seal();
        }
    }

    /// The one step whose token matches `key`, if any (siblings never match
    /// each other, see [`Plan::new`]).
    fn find(&self, key: &str) -> Option<&Step> {
        if self.steps.len() > SCAN {
            return self.index.get(&fold_key(key)).map(|&i| &self.steps[i]);
        }
        if let (Some(&b), false) = (key.as_bytes().first(), self.by_first.is_empty()) {
            let mut candidates = self.by_first[usize::from(b)];
            while candidates != 0 {
                let s = &self.steps[candidates.trailing_zeros() as usize];
                if key_matches(key, &s.token) {
                    return Some(s);
                }
                candidates &= candidates - 1;
            }
            return None;
        }
        // An ASCII first byte folds only to itself lowercased, so two ASCII
        // first bytes that differ rule a step out without reading further.
        let k = key.bytes().next().map_or(0, |b| b.to_ascii_lowercase());
        self.steps.iter().find(|s| {
            (s.first == k || !s.first.is_ascii() || !k.is_ascii() || k == 0 || s.first == 0)
                && key_matches(key, &s.token)
        })
    }

    /// Siblings never match each other: [`Level::step`] refuses a second
    /// spelling as the plan is built.
    fn exact(&self) -> bool {
        self.steps.iter().all(Step::exact)
    }
}

impl Step {
    fn removes(&self) -> bool {
        self.always.is_some()
            || self.personal.is_some()
            || self.child.is_some()
            || self.lmt.is_some()
    }

    fn removes_below(&self) -> bool {
        self.next
            .steps
            .iter()
            .any(|s| s.removes() || s.removes_below())
    }

    fn exact(&self) -> bool {
        let digits = !self.token.is_empty() && self.token.bytes().all(|b| b.is_ascii_digit());
        let removal_over_removal = self.removes() && self.removes_below();
        let coarsening_over_more =
            !self.coarsen.is_empty() && (!self.next.steps.is_empty() || self.segments_below);
        !(digits || removal_over_removal || coarsening_over_more) && self.next.exact()
    }
}

impl Plan {
    /// The plan of a policy, or `None` when one walk cannot reproduce the
    /// sequential passes exactly (see the module doc).
    pub fn new(policy: &CompiledPolicy) -> Option<Plan> {
        let mut plan = Plan::default();
        let mut root = Level::default();
        for (groups, places, kind) in [
            (&policy.always_plan, &mut plan.always, 0),
            (&policy.personal_plan, &mut plan.personal, 1),
            (&policy.child_plan, &mut plan.child, 2),
            (&policy.lmt_plan, &mut plan.lmt, 3),
        ] {
            for (gi, g) in groups.iter().enumerate() {
                for (ci, (last, _)) in g.children.iter().enumerate() {
                    let mut tokens = g.parent.clone();
                    tokens.push(last.clone());
                    let step = root.at(&tokens)?;
                    let id = match kind {
                        0 => &mut step.always,
                        1 => &mut step.personal,
                        2 => &mut step.child,
                        _ => &mut step.lmt,
                    };
                    if id.is_none() {
                        *id = Some(places.len());
                    }
                    places.push((gi, ci));
                }
            }
        }
        plan.root = root;
        for (i, c) in policy.coarsen.iter().enumerate() {
            plan.root.at(&c.pointer.tokens)?.coarsen.push(i);
        }
        if let Some(m) = &policy.segments {
            plan.root.at(&m.pointer.tokens)?.segments = true;
            let mut level = &mut plan.root;
            for t in &m.pointer.tokens {
                let step = level.step(t)?;
                step.segments_below = true;
                level = &mut step.next;
            }
        }
        plan.root.seal();
        plan.root.exact().then_some(plan)
    }

    /// Strip `doc` (normalised: one entry per key) and write the result to
    /// `out`; what was done, as [`strip::strip`] reports it.
    pub fn write<'p>(
        &self,
        policy: &'p CompiledPolicy,
        doc: &Value,
        verdict: &Verdict,
        out: &mut Vec<u8>,
    ) -> Stripped<'p> {
        let mut walk = self.walk(policy, verdict);
        match doc.as_object() {
            Some(o) => walk.object(o, &self.root, Some(out)),
            None => write_value(doc, out),
        }
        walk.report(self, policy)
    }

    /// [`Plan::write`] of a record read from its text (`src`: the outline
    /// read accepted it), with no parsed document: the walk reads the
    /// outline, copies each entry it leaves whole from the text, as it was
    /// sent, and parses only the values it changes ([`Walk::object_text`]).
    pub fn write_text<'p>(
        &self,
        policy: &'p CompiledPolicy,
        src: Source<'_>,
        verdict: &Verdict,
        out: &mut Vec<u8>,
    ) -> Stripped<'p> {
        let mut walk = self.walk(policy, verdict);
        match src.outline.root() {
            Some(first) => walk.object_text(src, first, &self.root, out),
            // Not an object: a decision is one (validated), but a text
            // copied whole is what the document walk writes of any other.
            None => {
                out.extend_from_slice(src.text.trim_matches([' ', '\t', '\n', '\r']).as_bytes())
            }
        }
        walk.report(self, policy)
    }

    fn walk<'p>(&self, policy: &'p CompiledPolicy, verdict: &Verdict) -> Walk<'p> {
        Walk {
            policy,
            personalised: verdict.outcome == Outcome::Personalised,
            precise_geo: verdict.precise_geo,
            always: Hits::new(self.always.len()),
            personal: Hits::new(self.personal.len()),
            child: Hits::new(self.child.len()),
            lmt: Hits::new(self.lmt.len()),
            is_child: verdict.child,
            is_lmt: verdict.lmt,
            coarsened: Hits::new(policy.coarsen.len()),
            uncoarsenable: Hits::new(policy.coarsen.len()),
            malformed: false,
            segments: 0,
        }
    }
}

/// One walk's state: what was hit, to report in the passes' order.
struct Walk<'p> {
    policy: &'p CompiledPolicy,
    personalised: bool,
    precise_geo: bool,
    always: Hits,
    personal: Hits,
    child: Hits,
    lmt: Hits,
    /// The verdict's child and `device.lmt` flags.
    is_child: bool,
    is_lmt: bool,
    coarsened: Hits,
    uncoarsenable: Hits,
    malformed: bool,
    segments: usize,
}

/// Which of a list's pointers were hit: bits on the stack for a list of up
/// to 64, else the indices hit (a policy of thousands of pointers pays for
/// what one record hits, not for the list).
enum Hits {
    Few(u64),
    Many(Vec<usize>),
}

impl Hits {
    fn new(n: usize) -> Hits {
        if n <= 64 {
            Hits::Few(0)
        } else {
            Hits::Many(Vec::new())
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Hits::Few(bits) => *bits |= 1 << i,
            Hits::Many(v) => v.push(i),
        }
    }

    /// The indices hit, ascending, each once.
    fn indices(&self) -> Vec<usize> {
        match self {
            Hits::Few(bits) => {
                let (mut b, mut out) = (*bits, Vec::with_capacity(bits.count_ones() as usize));
                while b != 0 {
                    out.push(b.trailing_zeros() as usize);
                    b &= b - 1;
                }
                out
            }
            Hits::Many(v) => {
                let mut v = v.clone();
                v.sort_unstable();
                v.dedup();
                v
            }
        }
    }
}

/// A removal pointer, by its place in its plan.
#[derive(Debug, Clone, Copy)]
enum Removal {
    Always(usize),
    Personal(usize),
    Child(usize),
    Lmt(usize),
}

/// A thread's write buffer is let go after a record larger than this.
const KEPT_SCRATCH_BYTES: usize = 1 << 20;

thread_local! {
    /// Where a judge thread writes a stripped record before it is copied
    /// out at its exact size (or only compared). The serialiser reserves
    /// room for the worst case of every string it writes (six bytes a
    /// character), so a buffer sized to the record still grows, and each
    /// growth of a fresh vector copied it and took new pages; this one
    /// keeps its room between records.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's write buffer, emptied. Not re-entrant: `f`
/// must not call it again.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        let r = f(buf);
        // A huge record's buffer is not kept for the thread's lifetime.
        if buf.capacity() > KEPT_SCRATCH_BYTES {
            *buf = Vec::new();
        }
        r
    })
}

const SER: &str = "a parsed value always serialises";

fn write_value(v: &Value, out: &mut Vec<u8>) {
    sonic_rs::to_writer(&mut *out, v).expect(SER);
}

/// A value the walk may change: a parsed one, or one read from its text.
trait Touch<'v>: View<'v> {
    /// As an editable node, unchanged.
    fn node(self) -> Node<'v>;
    /// Append the value's JSON text.
    fn write_value(self, out: &mut Vec<u8>);
    /// Append an object key of this kind of value, after a `,` unless first.
    fn write_key(k: &str, first: &mut bool, out: &mut Vec<u8>);
}

impl<'v> Touch<'v> for &'v Value {
    fn node(self) -> Node<'v> {
        Node::Doc(self)
    }

    fn write_value(self, out: &mut Vec<u8>) {
        write_value(self, out);
    }

    fn write_key(k: &str, first: &mut bool, out: &mut Vec<u8>) {
        write_key(k, first, out);
    }
}

impl<'v> Touch<'v> for TextValue<'v> {
    fn node(self) -> Node<'v> {
        Node::Text(self)
    }

    fn write_value(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.raw().as_bytes());
    }

    /// A key of an accepted text is free of escapes: written as it is.
    fn write_key(k: &str, first: &mut bool, out: &mut Vec<u8>) {
        write_text_key(k.as_bytes(), first, out);
    }
}

/// A key as it is in the text (free of escapes, so the same as serialised).
fn write_text_key(k: &[u8], first: &mut bool, out: &mut Vec<u8>) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(k);
    out.extend_from_slice(b"\":");
}

fn write_key(k: &str, first: &mut bool, out: &mut Vec<u8>) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    sonic_rs::to_writer(&mut *out, k).expect(SER);
    out.push(b':');
}

impl<'p> Walk<'p> {
    /// Walk an object along `level`; write it to `out`, or (`None`) only
    /// count what the passes would have counted in it before removing it.
    fn object(&mut self, o: &Object, level: &Level, mut out: Option<&mut Vec<u8>>) {
        let writing = out.is_some();
        if let Some(out) = out.as_deref_mut() {
            out.push(b'{');
        }
        let mut first = true;
        for (k, v) in o.iter() {
            let Some(step) = level.find(k) else {
                if let Some(out) = out.as_deref_mut() {
                    write_key(k, &mut first, out);
                    write_value(v, out);
                }
                continue;
            };
            // The passes' order: segments, the removals, then coarsening.
            // The segment pass removes a list that is not an array (or null)
            // whole, before a removal could.
            let list_stays = !step.segments || JsonValueTrait::is_null(v) || v.is_array();
            let removal = self.removal(step);
            let Some(out) = out
                .as_deref_mut()
                .filter(|_| removal.is_none() && list_stays)
            else {
                self.left_out(v, step, removal, writing && list_stays);
                continue;
            };
            if !self.write_touched(v, step, out, |out| write_key(k, &mut first, out)) {
                write_key(k, &mut first, out);
                self.descend(v, step, Some(out));
            }
        }
        if let Some(out) = out {
            out.push(b'}');
        }
    }

    /// [`Walk::object`] of an object read from its text: `first` is its
    /// first entry in `src`'s outline. What is named, removed or kept is
    /// decided as [`Walk::object`] decides it; what it would write whole (a
    /// value under a key the level does not name, or below which it names
    /// nothing) is copied from the text, and only a value it changes or
    /// counts in is parsed.
    fn object_text(&mut self, src: Source<'_>, first: u32, level: &Level, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first_out = true;
        let mut id = first;
        while let Some(e) = src.outline.entry(id) {
            let this = id;
            id = e.next;
            // An entry's text ends before the next one's begins, so a copy
            // never reaches into a sibling (the outline read builds it so).
            debug_assert!(
                e.value.0 <= e.value.1 && src.outline.entry(id).is_none_or(|n| e.value.1 < n.key.0),
                "entries lie apart"
            );
            // No escapes in an accepted text: the key's text is the key.
            let key = src.text(e.key);
            let Some(step) = level.find(key) else {
                // The whole entry, key to value, as it was sent.
                if !std::mem::take(&mut first_out) {
                    out.push(b',');
                }
                out.extend_from_slice(src.text((e.key.0 - 1, e.value.1)).as_bytes());
                continue;
            };
            let v = src.value(this);
            // As in `object`: segments, the removals, then coarsening.
            let list_stays = !step.segments || v.is_null() || v.json_type() == JsonType::Array;
            let removal = self.removal(step);
            let touched = step.segments || !step.coarsen.is_empty();
            if removal.is_some() || !list_stays {
                if step.segments {
                    self.segments(v, None);
                } else if step.segments_below {
                    // Below a removed entry, the segment lists it held are
                    // counted as the passes count them (a rare policy shape:
                    // read through the parsed value).
                    // An accepted text's value parses: the outline read
                    // holds to the parser (property-tested).
                    let parsed = sonic_rs::from_str::<Value>(v.raw());
                    debug_assert!(parsed.is_ok(), "an accepted value parses");
                    if let Ok(parsed) = parsed {
                        self.descend(&parsed, step, None);
                    }
                }
                self.note(removal, list_stays);
                continue;
            }
            if touched {
                self.write_touched(v, step, out, |out| {
                    write_text_key(key.as_bytes(), &mut first_out, out)
                });
                continue;
            }
            write_text_key(key.as_bytes(), &mut first_out, out);
            if e.child != NONE && !step.next.steps.is_empty() {
                self.object_text(src, e.child, &step.next, out);
            } else {
                // Nothing named below, an empty object, or not an object.
                out.extend_from_slice(src.text(e.value).as_bytes());
            }
        }
        out.push(b'}');
    }

    /// A named entry that is written and that stripping changes: its
    /// segment list filtered, or its value coarsened (left out when it
    /// cannot be). `key` writes its key, each walk its own way. `false`
    /// when the step does neither, and nothing was written.
    fn write_touched<'v, V: Touch<'v>>(
        &mut self,
        v: V,
        step: &Step,
        out: &mut Vec<u8>,
        key: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        if step.segments {
            key(out);
            self.segments(v, Some(out));
        } else if !step.coarsen.is_empty() {
            if let Some(node) = self.coarsen(v, &step.coarsen) {
                key(out);
                node.write(out);
            }
        } else {
            return false;
        }
        true
    }

    /// An entry that is not written: what the passes would have counted in
    /// it, and (`note`: it was removed by a pointer) its removal.
    fn left_out(&mut self, v: &Value, step: &Step, removal: Option<Removal>, note: bool) {
        self.count_left_out(v, step);
        self.note(removal, note);
    }

    /// What the passes would have counted in an entry that is not written.
    fn count_left_out(&mut self, v: &Value, step: &Step) {
        if step.segments {
            self.segments(v, None);
        } else if step.segments_below {
            self.descend(v, step, None);
        }
    }

    /// An entry's removal (`note`: it was removed by a pointer).
    fn note(&mut self, removal: Option<Removal>, note: bool) {
        match removal {
            Some(Removal::Always(i)) if note => self.always.set(i),
            Some(Removal::Personal(i)) if note => self.personal.set(i),
            Some(Removal::Child(i)) if note => self.child.set(i),
            Some(Removal::Lmt(i)) if note => self.lmt.set(i),
            _ => {}
        }
    }

    /// The removal that applies at a step, in the passes' order: `always`,
    /// then (unless personalised) `unless_personalised`, then (for a child)
    /// `when_child`, then (under `device.lmt`) `when_lmt`.
    fn removal(&self, step: &Step) -> Option<Removal> {
        if let Some(i) = step.always {
            return Some(Removal::Always(i));
        }
        match (step.personal, step.child, step.lmt) {
            (Some(i), _, _) if !self.personalised => Some(Removal::Personal(i)),
            (_, Some(i), _) if self.is_child => Some(Removal::Child(i)),
            (_, _, Some(i)) if self.is_lmt => Some(Removal::Lmt(i)),
            _ => None,
        }
    }

    /// Below a step: objects are walked on; anything else is left as it is
    /// (an array is reached by index tokens only, which have no plan).
    fn descend(&mut self, v: &Value, step: &Step, out: Option<&mut Vec<u8>>) {
        match (v.as_object(), out) {
            (Some(o), out) if !step.next.steps.is_empty() => self.object(o, &step.next, out),
            (_, Some(out)) => write_value(v, out),
            (_, None) => {}
        }
    }

    /// The coarsenings of one value, in policy order; `None` when one of
    /// them cannot apply (the value is removed).
    fn coarsen<'v>(&mut self, v: impl Touch<'v>, rules: &[usize]) -> Option<Node<'v>> {
        let mut node = v.node();
        for &i in rules {
            let c = &self.policy.coarsen[i];
            if c.when == CoarsenWhen::UnlessPreciseGeo && self.precise_geo {
                continue;
            }
            if strip::coarsen_value(&mut node, c.op) {
                self.coarsened.set(i);
            } else {
                self.uncoarsenable.set(i);
                return None;
            }
        }
        Some(node)
    }

    /// The segment list at the policy's data pointer, as
    /// [`strip`]'s segment pass filters it: written filtered to `out`, or
    /// only counted. Returns whether the value stays (null or an array).
    fn segments<'v, V: Touch<'v>>(&mut self, data: V, mut out: Option<&mut Vec<u8>>) -> bool {
        let m = self.policy.segments.as_ref().expect("a plan with segments");
        if data.is_null() {
            if let Some(out) = out {
                out.extend_from_slice(b"null");
            }
            return true;
        }
        let Some(providers) = data.elements() else {
            self.segments += 1;
            self.malformed = true;
            return false;
        };
        if let Some(out) = out.as_deref_mut() {
            out.push(b'[');
        }
        let mut first_provider = true;
        for p in providers {
            let Some(fields) = p.entries() else {
                self.segments += 1;
                continue;
            };
            let mut out = out.as_deref_mut();
            if let Some(out) = out.as_deref_mut() {
                if !std::mem::take(&mut first_provider) {
                    out.push(b',');
                }
                out.push(b'{');
            }
            let mut first = true;
            for (k, segs) in fields {
                if !key_matches(k, "segment") || segs.is_null() {
                    if let Some(out) = out.as_deref_mut() {
                        V::write_key(k, &mut first, out);
                        segs.write_value(out);
                    }
                    continue;
                }
                let Some(list) = segs.elements() else {
                    self.segments += 1;
                    continue;
                };
                if let Some(out) = out.as_deref_mut() {
                    V::write_key(k, &mut first, out);
                    out.push(b'[');
                }
                let mut first_seg = true;
                for seg in list {
                    if !strip::segment_passes(m, &seg.node()) {
                        self.segments += 1;
                    } else if let Some(out) = out.as_deref_mut() {
                        if !std::mem::take(&mut first_seg) {
                            out.push(b',');
                        }
                        seg.write_value(out);
                    }
                }
                if let Some(out) = out.as_deref_mut() {
                    out.push(b']');
                }
            }
            if let Some(out) = out {
                out.push(b'}');
            }
        }
        if let Some(out) = out {
            out.push(b']');
        }
        true
    }

    fn report(self, plan: &Plan, policy: &'p CompiledPolicy) -> Stripped<'p> {
        let mut s = Stripped {
            segments: self.segments,
            ..Stripped::default()
        };
        if self.malformed
            && let Some(m) = &policy.segments
        {
            s.malformed.push(&m.pointer.text);
        }
        let removed = |hits: &Hits, places: &[(usize, usize)], groups: &'p [RemovalGroup]| {
            let texts = hits.indices().into_iter().map(|i| {
                let (g, c) = places[i];
                groups[g].children[c].1.as_str()
            });
            unique(texts)
        };
        s.always = removed(&self.always, &plan.always, &policy.always_plan);
        s.personal = removed(&self.personal, &plan.personal, &policy.personal_plan);
        s.child = removed(&self.child, &plan.child, &policy.child_plan);
        s.lmt = removed(&self.lmt, &plan.lmt, &policy.lmt_plan);
        let coarse = |hits: &Hits| {
            unique(
                hits.indices()
                    .into_iter()
                    .map(|i| policy.coarsen[i].pointer.text.as_str()),
            )
        };
        s.coarsened = coarse(&self.coarsened);
        s.uncoarsenable = coarse(&self.uncoarsenable);
        s
    }
}

/// The texts in order, each once.
fn unique<'p>(texts: impl Iterator<Item = &'p str>) -> Vec<&'p str> {
    let mut out: Vec<&'p str> = Vec::with_capacity(texts.size_hint().0);
    let mut seen: HashSet<&'p str> = HashSet::new();
    for t in texts {
        // A short list is searched; a long one (a policy of thousands of
        // pointers) is hashed.
        let new = if out.len() < 32 {
            !out.contains(&t)
        } else {
            if seen.is_empty() {
                seen.extend(out.iter().copied());
            }
            seen.insert(t)
        };
        if new {
            out.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::core::outline::{self, Scan};
    use proptest::prelude::*;

    use super::*;
    use crate::core::consent::Reason;

    const POLICY: &str = include_str!("../../config/policy.toml");

    fn policy(text: &str) -> CompiledPolicy {
        CompiledPolicy::from_toml(text).expect("test policy compiles")
    }

    /// The shipped policy without its `when_child` and `when_lmt` lists, and
    /// with only the entries of them not below `below` (a policy that
    /// removes a whole object cannot also remove what is in it, for a plan).
    fn without_child_lmt_below(below: &str) -> String {
        let mut p = POLICY.to_string();
        for list in ["when_child = [", "when_lmt = ["] {
            let start = p.find(list).expect("shipped policy");
            let end = start + p[start..].find(']').expect("list ends");
            let kept: Vec<&str> = p[start + list.len()..end]
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty() && !e.trim_matches('"').starts_with(below))
                .collect();
            p.replace_range(start..=end, &format!("{list}{}]", kept.join(", ")));
        }
        p
    }

    /// The shipped policy, and variants that put removals, coarsenings and
    /// the segment list in each other's way.
    fn policies() -> Vec<CompiledPolicy> {
        vec![
            policy(POLICY),
            // A removed object with coarsenings below it.
            policy(&without_child_lmt_below("/device/geo/").replace(
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/device/geo\"]",
            )),
            // Segments filtered and written (not also removed), a removed
            // object with the segment list below it.
            policy(
                &without_child_lmt_below("/user/geo/")
                    .replace("  \"/user/data\",\n", "")
                    .replace(
                        "always = [\"/audience\"]",
                        "always = [\"/Audience\", \"/user/geo\"]",
                    ),
            ),
            // More than 64 removals, and a level of more than `SCAN` steps
            // (looked up through its index).
            policy(&{
                let many: Vec<String> = (0..70).map(|i| format!("\"/user/k{i}\"")).collect();
                POLICY.replace(
                    "always = [\"/audience\"]",
                    &format!("always = [\"/audience\", {}]", many.join(", ")),
                )
            }),
            // The segment list below a removed object: counted, then gone.
            policy(&{
                let base = without_child_lmt_below("/user/");
                let start = base
                    .find("unless_personalised = [")
                    .expect("shipped policy");
                let end = start + base[start..].find(']').expect("list ends");
                let mut p = base.clone();
                p.replace_range(start..=end, "unless_personalised = [\"/device/ifa\"]");
                p.replace(
                    "always = [\"/audience\"]",
                    "always = [\"/audience\", \"/user\"]",
                )
            }),
        ]
    }

    /// A verdict with the child and `device.lmt` flags (a child never has
    /// precise geolocation; the walk must agree whatever the flags say).
    fn flagged(outcome: Outcome, precise_geo: bool, child: bool, lmt: bool) -> Verdict {
        Verdict {
            outcome,
            reason: Reason::Consented,
            precise_geo,
            section: None,
            child,
            lmt,
            signals: Default::default(),
        }
    }

    /// The sequential passes' output and report, and the one walk's. The
    /// report's lists are compared as sets: the walk names pointers in the
    /// policy's order, the passes in the order they met them (which differs
    /// when a document spells one key in two cases, e.g. `user` and `USER`).
    ///
    /// Where the text has an outline, the walk that copies from it is held
    /// here to the walk from the document: the same report, the same
    /// document written, and the same bytes when the text is the
    /// document's own compact form.
    fn both<'p>(p: &'p CompiledPolicy, json: &str, v: &Verdict) -> [(String, Stripped<'p>); 2] {
        let doc: Value = sonic_rs::from_str(json).expect("test JSON parses");
        let mut node = Node::Doc(&doc);
        let s = strip::strip(p, &mut node, v);
        let mut seq = Vec::new();
        node.write(&mut seq);
        let mut walked = Vec::new();
        let plan = Plan::new(p).expect("these policies have a plan");
        let w = plan.write(p, &doc, v, &mut walked);
        let sorted = |mut s: Stripped<'p>| {
            for list in [
                &mut s.always,
                &mut s.personal,
                &mut s.child,
                &mut s.lmt,
                &mut s.coarsened,
                &mut s.uncoarsenable,
            ] {
                list.sort_unstable();
            }
            s
        };
        let w = sorted(w);
        if let Scan::Unique(outline) = outline::scan(json.as_bytes()) {
            let mut copied = Vec::new();
            let source = Source {
                text: json,
                outline: &outline,
            };
            let c = sorted(plan.write_text(p, source, v, &mut copied));
            assert_eq!(c, w, "{json}");
            let written = |b: &[u8]| sonic_rs::from_slice::<Value>(b).expect("output parses");
            assert_eq!(written(&copied), written(&walked), "{json}");
            if sonic_rs::to_string(&doc).expect("serialises") == json {
                assert_eq!(
                    String::from_utf8_lossy(&copied),
                    String::from_utf8_lossy(&walked)
                );
            }
        }
        [
            (String::from_utf8(seq).unwrap(), sorted(s)),
            (String::from_utf8(walked).unwrap(), w),
        ]
    }

    #[test]
    fn the_walk_writes_and_reports_what_the_passes_do() {
        let json = r#"{"id":"d","USER":{"id":"a","geo":{"LAT":52.3731,"lon":"x"},"data":[{"id":"p","segment":[{"id":"health-x"},{"id":"ok"},{"x":1},7]},{"segment":"odd"},3,{"Segment":null}],"ext":{"eids":[1]}},
            "user":{"Eids":[1],"consent":"kept","data":{"not":"a list"}},"Device":{"IFA":"h","Ip":"203.0.113.17","geo":{"lat":1.23456,"zip":"1012AB"}},"Audience":{"sex":"f"},"aUdIeNcE":1,"other":{"id":"kept","user":{"id":1}},"list":[{"user":{"id":2}}]}"#;
        for p in &policies() {
            for outcome in [
                Outcome::Personalised,
                Outcome::Contextual,
                Outcome::Withheld,
            ] {
                for geo in [false, true] {
                    for (child, lmt) in [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let v = flagged(outcome, geo, child, lmt);
                        let [seq, walked] = both(p, json, &v);
                        assert_eq!(
                            seq, walked,
                            "{outcome:?} precise_geo={geo} child={child} lmt={lmt}"
                        );
                    }
                }
            }
        }
    }

    /// The generator's records, compact and free of escapes: the walk that
    /// copies from the text writes them byte for byte as the one that
    /// serialises the document (checked in `both`), under each verdict.
    #[test]
    fn copying_from_the_text_writes_the_same_bytes() {
        let mut s = crate::tools::synth::Synth::new(11, 50, 5, 1_795_000_000_000);
        let p = policy(POLICY);
        let mut outlined = 0;
        for i in 0..200 {
            let (_, rec) = s.next(1_795_000_000_000 + i);
            let json = std::str::from_utf8(&rec).expect("UTF-8");
            outlined += usize::from(matches!(outline::scan(&rec), Scan::Unique(_)));
            for outcome in [Outcome::Personalised, Outcome::Contextual] {
                let [seq, walked] =
                    both(&p, json, &flagged(outcome, i % 2 == 0, i % 7 == 0, false));
                assert_eq!(seq, walked);
            }
        }
        assert!(outlined > 150, "{outlined} of 200 records outlined");
    }

    /// What stripping leaves whole is copied as it was sent (white space,
    /// number spelling), not serialised again; what it touches is written.
    #[test]
    fn untouched_values_are_copied_as_sent() {
        let p = policy(POLICY);
        let plan = Plan::new(&p).expect("a plan");
        let json = r#"{"id":"d", "ad" : { "w" : 300 , "cpm":1.50 } ,"user":{"id":"u","consent" : "C" },"device":{"ip":"203.0.113.17","ua":"a b"},"audience":{"x":1}}"#;
        let Scan::Unique(outline) = outline::scan(json.as_bytes()) else {
            panic!("an outline");
        };
        let source = Source {
            text: json,
            outline: &outline,
        };
        let v = flagged(Outcome::Contextual, false, false, false);
        let mut out = Vec::new();
        let s = plan.write_text(&p, source, &v, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            r#"{"id":"d","ad" : { "w" : 300 , "cpm":1.50 } ,"user":{"consent" : "C" },"device":{"ip":"203.0.113.0","ua":"a b"}}"#
        );
        assert_eq!(s.removed_header(), "/audience,/user/id");
    }

    #[test]
    fn policies_the_walk_cannot_reproduce_have_no_plan() {
        assert!(Plan::new(&policy(POLICY)).is_some());
        for (from, to) in [
            // An array index.
            (
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/list/0\"]",
            ),
            // Two spellings of one key at one level.
            (
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/AUDIENCE\"]",
            ),
            // A removal below a removal: the passes' order decides the report.
            (
                "always = [\"/audience\"]",
                "always = [\"/audience\", \"/user\"]",
            ),
        ] {
            assert!(
                Plan::new(&policy(&POLICY.replace(from, to))).is_none(),
                "{to}"
            );
        }
        // A coarsening of an object with coarsenings below it.
        let coarse_geo =
            POLICY.replace("pointer = \"/device/geo/zip\"", "pointer = \"/device/geo\"");
        assert!(Plan::new(&policy(&coarse_geo)).is_none());
    }

    /// JSON text around the policy's paths: its keys in several cases, and
    /// values of every type where it expects one.
    fn doc() -> impl Strategy<Value = String> {
        const KEYS: &[&str] = &[
            "user", "USER", "device", "Device", "audience", "data", "segment", "Segment", "id",
            "ID", "ıd", "ip", "geo", "GEO", "lat", "lon", "zip", "eids", "ext", "ifa", "consent",
            "x", "", "k1", "K69", "k70", "city", "Metro", "dpidmd5", "buyeruid", "yob",
        ];
        const LEAVES: &[&str] = &[
            "null",
            "true",
            "1",
            "-0.5",
            "52.3731",
            "1e400",
            "\"203.0.113.17\"",
            "\"2001:db8::1\"",
            "\"health-x\"",
            "\"ok\"",
            "\" Politics.Left \"",
            "\"1012AB\"",
            "\"a\\\"b\"",
            "\"\"",
        ];
        let leaf = proptest::sample::select(LEAVES).prop_map(str::to_string);
        leaf.prop_recursive(5, 60, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..7).prop_map(
                    |fields| {
                        let mut seen = Vec::new();
                        let mut out = Vec::new();
                        for (k, v) in fields {
                            if !seen.contains(&k) {
                                seen.push(k);
                                out.push(format!("\"{k}\":{v}"));
                            }
                        }
                        format!("{{{}}}", out.join(","))
                    }
                ),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any document, any verdict: the walk gives the passes' bytes and report.
        #[test]
        fn the_walk_agrees_with_the_passes(
            json in doc().prop_map(|d| format!("{{\"id\":\"d\",\"user\":{d},\"device\":{d},\"other\":{d}}}")),
            outcome in proptest::sample::select(&[Outcome::Personalised, Outcome::Contextual, Outcome::Withheld][..]),
            geo in any::<bool>(),
            child in any::<bool>(),
            lmt in any::<bool>(),
            which in 0usize..5,
        ) {
            let ps = policies();
            let [seq, walked] = both(&ps[which], &json, &flagged(outcome, geo, child, lmt));
            prop_assert_eq!(seq, walked);
        }
    }
}
