//! The shape of the code, held by a test: no import cycles between files or
//! folders, a pure core (`core`, `fairness`, `policy`) that uses no I/O crate
//! and nothing around it, and no function a reader cannot hold at once.
//!
//! It reads `src/` with `syn`: every `crate::`, `super::` and `self::` path
//! (in `use` trees, code and macro bodies) becomes an edge from the file that
//! names it to the file that defines the module it reaches. Test modules
//! (`#[cfg(test)]`) are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// The folders of the pure core, and what they alone may depend on.
const PURE: [&str; 3] = ["core", "fairness", "policy"];
/// Crates that do I/O; none may appear in the pure core.
const IO_CRATES: [&str; 9] = [
    "tokio",
    "tokio_util",
    "rdkafka",
    "axum",
    "reqwest",
    "hyper",
    "tower",
    "mio",
    "prometheus",
];
/// A function longer than this needs a `// long: <reason>` line above it.
const MAX_FN_LINES: usize = 80;

struct SourceFile {
    /// Module path, e.g. `["kafka", "pipeline"]`; empty for `lib.rs`.
    module: Vec<String>,
    path: PathBuf,
    text: String,
    ast: syn::File,
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src is readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every library source file except `main.rs` (the binary) and files that are
/// test modules (declared `#[cfg(test)] mod x;`).
fn sources() -> Vec<SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    let mut files: Vec<SourceFile> = paths
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "main.rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let ast = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{}: does not parse: {e}", path.display()));
            let module = module_of(path.strip_prefix(&src).expect("under src"));
            SourceFile {
                module,
                path,
                text,
                ast,
            }
        })
        .collect();
    let test_modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| {
            f.ast.items.iter().filter_map(|i| match i {
                syn::Item::Mod(m) if m.content.is_none() && is_test(&m.attrs) => {
                    let mut p = f.module.clone();
                    p.push(m.ident.to_string());
                    Some(p)
                }
                _ => None,
            })
        })
        .collect();
    files.retain(|f| !test_modules.contains(&f.module));
    files
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || a.path().is_ident("cfg")
                && matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string().contains("test"))
    })
}

/// Collects the module paths a file reaches, and the I/O crates it names.
struct Refs {
    /// The module the visitor is in (inline modules push onto it).
    here: Vec<String>,
    reached: BTreeSet<Vec<String>>,
    io: BTreeSet<String>,
}

impl Refs {
    /// Resolve a path's leading segments to an absolute module path.
    fn resolve(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut b = self.here.clone();
                b.pop();
                b
            }
            other => {
                if IO_CRATES.contains(&other) && segs.len() > 1 {
                    return Some(vec![format!("::{other}")]);
                }
                return None;
            }
        };
        for s in &segs[1..] {
            match s.as_str() {
                "super" => {
                    base.pop();
                }
                "self" => {}
                _ => base.push(s.clone()),
            }
        }
        Some(base)
    }

    fn note(&mut self, segs: &[String]) {
        if let Some(m) = self.resolve(segs) {
            if let Some(krate) = m.first().and_then(|s| s.strip_prefix("::")) {
                self.io.insert(krate.to_string());
            } else {
                self.reached.insert(m);
            }
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.note(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.note(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.note(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Paths inside macro bodies (`format!`, `tracing::info!`, `select!`…).
    fn tokens(&mut self, ts: TokenStream) {
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            if let TokenTree::Group(g) = &toks[i] {
                self.tokens(g.stream());
            }
            if let TokenTree::Ident(id) = &toks[i] {
                let mut segs = vec![id.to_string()];
                let mut j = i + 1;
                while j + 2 < toks.len() + 1 {
                    match (&toks.get(j), &toks.get(j + 1), &toks.get(j + 2)) {
                        (
                            Some(TokenTree::Punct(a)),
                            Some(TokenTree::Punct(b)),
                            Some(TokenTree::Ident(n)),
                        ) if a.as_char() == ':' && b.as_char() == ':' => {
                            segs.push(n.to_string());
                            j += 3;
                        }
                        _ => break,
                    }
                }
                if segs.len() > 1 {
                    self.note(&segs);
                }
                i = j;
                continue;
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_test(&m.attrs) {
            return;
        }
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.note(&segs);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

struct Graph {
    files: Vec<SourceFile>,
    /// Edges between files (indexes into `files`), self-edges left out.
    edges: BTreeMap<usize, BTreeSet<usize>>,
    io: BTreeMap<usize, BTreeSet<String>>,
}

fn graph() -> Graph {
    let files = sources();
    let index: BTreeMap<Vec<String>, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let mut edges = BTreeMap::new();
    let mut io = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        let mut refs = Refs {
            here: f.module.clone(),
            reached: BTreeSet::new(),
            io: BTreeSet::new(),
        };
        refs.visit_file(&f.ast);
        let mut to = BTreeSet::new();
        for m in &refs.reached {
            // The deepest file on the path defines what it reaches.
            let target = (0..=m.len())
                .rev()
                .find_map(|n| index.get(&m[..n]).copied());
            if let Some(t) = target
                && t != i
            {
                to.insert(t);
            }
        }
        edges.insert(i, to);
        io.insert(i, refs.io);
    }
    Graph { files, edges, io }
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(n: usize, edges: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    struct T<'a> {
        edges: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T<'_>, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in t.edges.get(&v).into_iter().flatten() {
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().expect("on stack");
                t.on[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
}

fn name(f: &SourceFile) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    f.path
        .strip_prefix(src)
        .unwrap_or(&f.path)
        .display()
        .to_string()
}

/// The folder (top-level module) a file belongs to; `None` for `lib.rs`.
fn folder(f: &SourceFile) -> Option<&str> {
    f.module.first().map(String::as_str)
}

#[test]
fn no_import_cycles_between_files() {
    let g = graph();
    let found: Vec<String> = cycles(g.files.len(), &g.edges)
        .into_iter()
        .map(|scc| {
            scc.iter()
                .map(|&i| name(&g.files[i]))
                .collect::<Vec<_>>()
                .join(" ↔ ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "files that depend on each other:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn no_import_cycles_between_folders() {
    let g = graph();
    let folders: Vec<&str> = g
        .files
        .iter()
        .filter_map(folder)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let at = |f: &SourceFile| folder(f).and_then(|x| folders.iter().position(|y| *y == x));
    let mut edges: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    let mut why: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (&from, tos) in &g.edges {
        for &to in tos {
            if let (Some(a), Some(b)) = (at(&g.files[from]), at(&g.files[to]))
                && a != b
            {
                edges.entry(a).or_default().insert(b);
                why.entry((a, b)).or_insert_with(|| {
                    format!("{} → {}", name(&g.files[from]), name(&g.files[to]))
                });
            }
        }
    }
    let found: Vec<String> = cycles(folders.len(), &edges)
        .into_iter()
        .map(|scc| {
            let names: Vec<&str> = scc.iter().map(|&i| folders[i]).collect();
            let links: Vec<&str> = why
                .iter()
                .filter(|((a, b), _)| scc.contains(a) && scc.contains(b))
                .map(|(_, w)| w.as_str())
                .collect();
            format!("{} (through {})", names.join(" ↔ "), links.join(", "))
        })
        .collect();
    assert!(
        found.is_empty(),
        "folders that depend on each other:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_pure_core_does_no_io_and_depends_on_nothing_around_it() {
    let g = graph();
    let mut problems = Vec::new();
    for (i, f) in g.files.iter().enumerate() {
        if !folder(f).is_some_and(|x| PURE.contains(&x)) {
            continue;
        }
        for krate in &g.io[&i] {
            problems.push(format!("{} uses the I/O crate `{krate}`", name(f)));
        }
        for &t in &g.edges[&i] {
            let to = &g.files[t];
            if !folder(to).is_some_and(|x| PURE.contains(&x)) {
                problems.push(format!(
                    "{} depends on {}, outside the pure core",
                    name(f),
                    name(to)
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the pure core ({}) must stay free of I/O:\n  {}",
        PURE.join(", "),
        problems.join("\n  ")
    );
}

/// Every function a reader must hold at once: `(lines, file:line name)`.
fn long_functions(f: &SourceFile) -> Vec<(usize, String)> {
    struct Fns<'a> {
        file: &'a SourceFile,
        out: Vec<(usize, String)>,
    }
    impl Fns<'_> {
        fn check(&mut self, attrs: &[syn::Attribute], sig: &syn::Signature, body: &syn::Block) {
            if is_test(attrs) {
                return;
            }
            let start = sig.fn_token.span().start().line;
            let end = body.brace_token.span.close().end().line;
            let lines = end + 1 - start;
            if lines <= MAX_FN_LINES {
                return;
            }
            // A `// long: <reason>` line above the function (over its docs
            // and attributes) says why it is kept whole.
            let text: Vec<&str> = self.file.text.lines().collect();
            let first = attrs
                .iter()
                .map(|a| a.span().start().line)
                .min()
                .unwrap_or(start)
                .min(start);
            let reasoned = (first.saturating_sub(4)..first)
                .filter_map(|l| text.get(l.wrapping_sub(1)))
                .any(|l| l.trim_start().starts_with("// long:"));
            if !reasoned {
                self.out
                    .push((lines, format!("{}:{start} {}", name(self.file), sig.ident)));
            }
        }
    }
    impl<'ast> Visit<'ast> for Fns<'_> {
        fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
            if !is_test(&m.attrs) {
                syn::visit::visit_item_mod(self, m);
            }
        }
        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.check(&f.attrs, &f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.check(&f.attrs, &f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
        fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
            if let Some(b) = &f.default {
                self.check(&f.attrs, &f.sig, b);
            }
            syn::visit::visit_trait_item_fn(self, f);
        }
    }
    let mut v = Fns {
        file: f,
        out: Vec::new(),
    };
    v.visit_file(&f.ast);
    v.out
}

#[test]
fn no_function_a_reader_cannot_hold() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = sources();
    // The binary too.
    let main = src.join("main.rs");
    let text = std::fs::read_to_string(&main).expect("main.rs");
    files.push(SourceFile {
        module: vec!["main".into()],
        ast: syn::parse_file(&text).expect("main.rs parses"),
        path: main,
        text,
    });
    let mut long: Vec<(usize, String)> = files.iter().flat_map(long_functions).collect();
    long.sort_by(|a, b| b.cmp(a));
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines without a `// long: <reason>` line above them:\n  {}",
        long.iter()
            .map(|(n, w)| format!("{n} lines: {w}"))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The checker itself: a cycle it is shown is a cycle it finds.
#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut e: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    e.entry(0).or_default().insert(1);
    e.entry(1).or_default().insert(2);
    e.entry(2).or_default().insert(0);
    e.entry(2).or_default().insert(3);
    assert_eq!(cycles(4, &e), vec![vec![0, 1, 2]]);
    e.get_mut(&2).unwrap().remove(&0);
    assert!(cycles(4, &e).is_empty());
}

/// The path reader sees `super::`, grouped `use` trees and macro bodies.
#[test]
fn the_path_reader_resolves_what_a_file_names() {
    let ast: syn::File = syn::parse_str(
        "use super::offsets::Offsets;\n\
         use crate::{core::guard::{Guard, Now}, policy};\n\
         fn f() { tracing::info!(\"{}\", crate::metrics::x()); tokio::spawn(async {}); }",
    )
    .unwrap();
    let mut r = Refs {
        here: vec!["kafka".into(), "pipeline".into()],
        reached: BTreeSet::new(),
        io: BTreeSet::new(),
    };
    r.visit_file(&ast);
    let reached: Vec<String> = r.reached.iter().map(|m| m.join("::")).collect();
    assert!(
        reached.contains(&"kafka::offsets::Offsets".to_string()),
        "{reached:?}"
    );
    assert!(
        reached.contains(&"core::guard::Now".to_string()),
        "{reached:?}"
    );
    assert!(reached.contains(&"policy".to_string()), "{reached:?}");
    assert!(reached.contains(&"metrics::x".to_string()), "{reached:?}");
    assert!(r.io.contains("tokio"), "{:?}", r.io);
}
