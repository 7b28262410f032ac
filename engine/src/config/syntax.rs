//! The syntax of Momentum configuration files, independent of what any option means.
//!
//! ```text
//! file    := item*
//! item    := WORD '=' value                 option
//!          | WORD [STRING | WORD] '{' item* '}'   scope, with or without a name
//!          | ('include' | 'readonly_include') STRING
//! value   := STRING | WORD | '[' (key '=' value)* ']' | '(' value* ')'
//! ```
//!
//! Strings are double-quoted with the escapes `\" \\ \n \t \r \0`; `#` starts a comment that runs to
//! the end of the line; commas and semicolons between items, entries and list elements are optional
//! separators. An `include` is replaced by the items of the named file (relative to the including
//! file); include cycles and nesting deeper than [`MAX_DEPTH`] are errors. Names keep their spelling
//! here; matching them case-insensitively is the job of the typed layer.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Loc};

/// Deepest nesting of scopes, lists, dictionaries and includes accepted; deeper input is an error
/// rather than a stack overflow.
pub const MAX_DEPTH: usize = 64;

/// One entry of a scope: an option or a nested scope.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    /// `key = value`
    Option { key: String, value: Value },
    /// `Kind "name" { ... }` or `Kind { ... }`
    Scope(Scope),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scope {
    pub kind: String,
    pub name: Option<String>,
    /// Where the name was written (for errors about the name itself).
    pub name_loc: Option<Loc>,
    pub items: Vec<Item>,
}

/// An option's value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A quoted string or a bare word (`true`, `32`, `/tmp/2025`).
    Scalar {
        text: String,
        quoted: bool,
        loc: Loc,
    },
    /// `( a, b )` or `("a" "b")`
    List { items: Vec<Value>, loc: Loc },
    /// `[ k = v ... ]`
    Dict { entries: Vec<Entry>, loc: Loc },
}

/// One `key = value` entry of a dictionary.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    pub loc: Loc,
}

impl Value {
    pub fn loc(&self) -> &Loc {
        match self {
            Value::Scalar { loc, .. } | Value::List { loc, .. } | Value::Dict { loc, .. } => loc,
        }
    }
}

/// Reads and parses `path`, following includes.
pub fn parse_file(path: &Path) -> Result<Vec<Item>, ConfigError> {
    let mut stack = Vec::new();
    let origin = Loc {
        file: Arc::new(path.to_path_buf()),
        line: 1,
        col: 1,
    };
    load(path, &origin, &mut stack, 0)
}

/// Parses `text` as if it were the content of `name`; includes are resolved relative to `name`.
pub fn parse_str(name: &Path, text: &str) -> Result<Vec<Item>, ConfigError> {
    let mut stack = vec![canonical(name)];
    parse_text(name, text, &mut stack, 0)
}

/// Where `path` (`scope.option`, e.g. `msgc_server.cluster_key`; names case-insensitive) is
/// written in `items`: the option's value, else its scope, else `None`. For errors found after
/// loading (the node's set-up), so they carry a location too.
pub fn locate(items: &[Item], path: &str) -> Option<Loc> {
    let (scope, option) = path.split_once('.').unwrap_or((path, ""));
    let mut found = None;
    for item in items {
        let ItemKind::Scope(s) = &item.kind else {
            continue;
        };
        if !s.kind.eq_ignore_ascii_case(scope) {
            continue;
        }
        found.get_or_insert_with(|| item.loc.clone());
        for inner in &s.items {
            let key = match &inner.kind {
                ItemKind::Option { key, value } if key.eq_ignore_ascii_case(option) => {
                    return Some(value.loc().clone());
                }
                ItemKind::Scope(sc) => &sc.kind,
                ItemKind::Option { .. } => continue,
            };
            if key.eq_ignore_ascii_case(option) {
                return Some(inner.loc.clone());
            }
        }
    }
    found
}

/// Parses raw bytes (which may not be UTF-8) as the content of `name`.
pub fn parse_bytes(name: &Path, bytes: &[u8]) -> Result<Vec<Item>, ConfigError> {
    let text = decode(name, bytes)?;
    parse_str(name, &text)
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn decode(name: &Path, bytes: &[u8]) -> Result<String, ConfigError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
            let line = good.matches('\n').count() as u32 + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            Err(ConfigError {
                loc: Loc {
                    file: Arc::new(name.to_path_buf()),
                    line,
                    col,
                },
                message: "file is not valid UTF-8".into(),
            })
        }
    }
}

fn load(
    path: &Path,
    from: &Loc,
    stack: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<Vec<Item>, ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::new(from, "includes nested too deeply"));
    }
    let key = canonical(path);
    if let Some(pos) = stack.iter().position(|p| *p == key) {
        let chain: Vec<String> = stack[pos..]
            .iter()
            .chain(std::iter::once(&key))
            .map(|p| p.display().to_string())
            .collect();
        return Err(ConfigError::new(
            from,
            format!("include cycle: {}", chain.join(" -> ")),
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new(from, format!("cannot read {}: {e}", path.display())))?;
    let text = decode(path, &bytes)?;
    stack.push(key);
    let items = parse_text(path, &text, stack, depth);
    stack.pop();
    items
}

fn parse_text(
    name: &Path,
    text: &str,
    stack: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<Vec<Item>, ConfigError> {
    let file = Arc::new(name.to_path_buf());
    let tokens = lex(&file, text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        file,
        stack,
        include_depth: depth,
    };
    let items = p.items(0)?;
    match p.peek() {
        None => Ok(items),
        Some(t) => Err(ConfigError::new(
            &t.loc,
            format!("unexpected {}", t.tok.describe()),
        )),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Eq,
    Sep,
    Str(String),
    Word(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Eq => "'='".into(),
            Tok::Sep => "separator".into(),
            Tok::Str(s) => format!("string \"{}\"", s.escape_default()),
            Tok::Word(w) => format!("'{w}'"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    loc: Loc,
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '{' | '}' | '[' | ']' | '(' | ')' | '=' | ',' | ';' | '"')
}

fn lex(file: &Arc<PathBuf>, text: &str) -> Result<Vec<Token>, ConfigError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let (mut line, mut col) = (1u32, 1u32);
    let at = |line: u32, col: u32| Loc {
        file: file.clone(),
        line,
        col,
    };
    while let Some(&c) = chars.peek() {
        let loc = at(line, col);
        if c == '\n' {
            chars.next();
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            chars.next();
            col += 1;
            continue;
        }
        if c == '#' {
            while let Some(&c) = chars.peek() {
                if c == '\n' {
                    break;
                }
                chars.next();
                col += 1;
            }
            continue;
        }
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '[' => Some(Tok::LBracket),
            ']' => Some(Tok::RBracket),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '=' => Some(Tok::Eq),
            ',' | ';' => Some(Tok::Sep),
            _ => None,
        };
        if let Some(tok) = single {
            chars.next();
            col += 1;
            out.push(Token { tok, loc });
            continue;
        }
        if c == '"' {
            chars.next();
            col += 1;
            let mut s = String::new();
            loop {
                let Some(c) = chars.next() else {
                    return Err(ConfigError::new(&loc, "unterminated string"));
                };
                let here = at(line, col);
                col += 1;
                match c {
                    '"' => break,
                    '\n' => {
                        line += 1;
                        col = 1;
                        s.push('\n');
                    }
                    '\\' => {
                        let Some(e) = chars.next() else {
                            return Err(ConfigError::new(&loc, "unterminated string"));
                        };
                        col += 1;
                        s.push(match e {
                            '"' => '"',
                            '\\' => '\\',
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            '0' => '\0',
                            '\n' => {
                                // A backslash before a newline continues the string on the next line.
                                line += 1;
                                col = 1;
                                continue;
                            }
                            other => {
                                return Err(ConfigError::new(
                                    &here,
                                    format!(
                                        "unknown escape '\\{}' in string",
                                        other.escape_default()
                                    ),
                                ));
                            }
                        });
                    }
                    c => s.push(c),
                }
            }
            out.push(Token {
                tok: Tok::Str(s),
                loc,
            });
            continue;
        }
        let mut w = String::new();
        while let Some(&c) = chars.peek() {
            if !is_word_char(c) {
                break;
            }
            w.push(c);
            chars.next();
            col += 1;
        }
        out.push(Token {
            tok: Tok::Word(w),
            loc,
        });
    }
    Ok(out)
}

struct Parser<'s> {
    tokens: Vec<Token>,
    pos: usize,
    file: Arc<PathBuf>,
    stack: &'s mut Vec<PathBuf>,
    include_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + n).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn end_loc(&self) -> Loc {
        match self.tokens.last() {
            Some(t) => t.loc.clone(),
            None => Loc {
                file: self.file.clone(),
                line: 1,
                col: 1,
            },
        }
    }

    fn eof(&self, what: &str) -> ConfigError {
        ConfigError::new(&self.end_loc(), format!("unexpected end of file, {what}"))
    }

    fn skip_seps(&mut self) {
        while matches!(self.peek_at(0), Some(Tok::Sep)) {
            self.pos += 1;
        }
    }

    /// Items until a closing brace (not consumed) or the end of input.
    fn items(&mut self, depth: usize) -> Result<Vec<Item>, ConfigError> {
        if depth > MAX_DEPTH {
            let loc = self
                .peek()
                .map_or_else(|| self.end_loc(), |t| t.loc.clone());
            return Err(ConfigError::new(&loc, "scopes nested too deeply"));
        }
        let mut items = Vec::new();
        loop {
            self.skip_seps();
            let Some(t) = self.peek().cloned() else {
                return Ok(items);
            };
            let word = match t.tok {
                Tok::RBrace => return Ok(items),
                Tok::Word(w) => w,
                other => {
                    return Err(ConfigError::new(
                        &t.loc,
                        format!(
                            "expected an option or scope name, found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            self.pos += 1;
            let lower = word.to_ascii_lowercase();
            if (lower == "include" || lower == "readonly_include")
                && matches!(self.peek_at(0), Some(Tok::Str(_)))
                && !matches!(self.peek_at(1), Some(Tok::LBrace))
            {
                let Some(Token {
                    tok: Tok::Str(target),
                    loc,
                }) = self.next()
                else {
                    unreachable!("peeked a string token above");
                };
                let base = self.file.parent().unwrap_or_else(|| Path::new(""));
                let path = base.join(&target);
                items.extend(load(&path, &loc, self.stack, self.include_depth + 1)?);
                continue;
            }
            match self.peek_at(0) {
                Some(Tok::Eq) => {
                    self.pos += 1;
                    let value = self.value(depth)?;
                    items.push(Item {
                        kind: ItemKind::Option { key: word, value },
                        loc: t.loc,
                    });
                }
                Some(Tok::LBrace) => {
                    self.pos += 1;
                    let scope = self.scope_body(word, None, None, &t.loc, depth)?;
                    items.push(Item {
                        kind: ItemKind::Scope(scope),
                        loc: t.loc,
                    });
                }
                Some(Tok::Str(name)) | Some(Tok::Word(name))
                    if matches!(self.peek_at(1), Some(Tok::LBrace)) =>
                {
                    let name = name.clone();
                    let name_loc = self.tokens[self.pos].loc.clone();
                    self.pos += 2;
                    let scope = self.scope_body(word, Some(name), Some(name_loc), &t.loc, depth)?;
                    items.push(Item {
                        kind: ItemKind::Scope(scope),
                        loc: t.loc,
                    });
                }
                Some(_) => {
                    let n = self.peek().cloned().expect("peek_at(0) returned Some");
                    return Err(ConfigError::new(
                        &n.loc,
                        format!(
                            "expected '=' or '{{' after '{word}', found {}",
                            n.tok.describe()
                        ),
                    ));
                }
                None => return Err(self.eof(&format!("expected '=' or '{{' after '{word}'"))),
            }
        }
    }

    fn scope_body(
        &mut self,
        kind: String,
        name: Option<String>,
        name_loc: Option<Loc>,
        opened: &Loc,
        depth: usize,
    ) -> Result<Scope, ConfigError> {
        let items = self.items(depth + 1)?;
        match self.next() {
            Some(Token {
                tok: Tok::RBrace, ..
            }) => Ok(Scope {
                kind,
                name,
                name_loc,
                items,
            }),
            _ => Err(self.eof(&format!(
                "scope '{kind}' opened at line {}, column {} is missing its closing '}}'",
                opened.line, opened.col
            ))),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, ConfigError> {
        if depth > MAX_DEPTH {
            let loc = self
                .peek()
                .map_or_else(|| self.end_loc(), |t| t.loc.clone());
            return Err(ConfigError::new(&loc, "values nested too deeply"));
        }
        let Some(t) = self.next() else {
            return Err(self.eof("expected a value"));
        };
        match t.tok {
            Tok::Str(text) => Ok(Value::Scalar {
                text,
                quoted: true,
                loc: t.loc,
            }),
            Tok::Word(text) => Ok(Value::Scalar {
                text,
                quoted: false,
                loc: t.loc,
            }),
            Tok::LParen => {
                let mut items = Vec::new();
                loop {
                    self.skip_seps();
                    match self.peek_at(0) {
                        Some(Tok::RParen) => {
                            self.pos += 1;
                            return Ok(Value::List { items, loc: t.loc });
                        }
                        None => return Err(self.eof("list is missing its closing ')'")),
                        Some(_) => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Tok::LBracket => {
                let mut entries = Vec::new();
                loop {
                    self.skip_seps();
                    let Some(k) = self.next() else {
                        return Err(self.eof("dictionary is missing its closing ']'"));
                    };
                    let key = match k.tok {
                        Tok::RBracket => {
                            return Ok(Value::Dict {
                                entries,
                                loc: t.loc,
                            });
                        }
                        Tok::Word(w) | Tok::Str(w) => w,
                        other => {
                            return Err(ConfigError::new(
                                &k.loc,
                                format!("expected a dictionary key, found {}", other.describe()),
                            ));
                        }
                    };
                    match self.next() {
                        Some(Token { tok: Tok::Eq, .. }) => {}
                        Some(n) => {
                            return Err(ConfigError::new(
                                &n.loc,
                                format!(
                                    "expected '=' after dictionary key '{key}', found {}",
                                    n.tok.describe()
                                ),
                            ));
                        }
                        None => return Err(self.eof("dictionary is missing its closing ']'")),
                    }
                    let value = self.value(depth + 1)?;
                    entries.push(Entry {
                        key,
                        value,
                        loc: k.loc,
                    });
                }
            }
            other => Err(ConfigError::new(
                &t.loc,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }
}

/// Quotes `s` so that the lexer reads it back unchanged.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bare word is printed bare only when it lexes back as the same single word.
fn scalar_text(text: &str, quoted: bool) -> String {
    let bare_ok =
        !quoted && !text.is_empty() && !text.starts_with('#') && text.chars().all(is_word_char);
    if bare_ok {
        text.to_owned()
    } else {
        quote(text)
    }
}

/// Prints a value in canonical form; parsing the output gives the same value (locations aside).
pub fn render_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Scalar { text, quoted, .. } => out.push_str(&scalar_text(text, *quoted)),
        Value::List { items, .. } => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { " " } else { ", " });
                render_value(item, indent, out);
            }
            out.push_str(if items.is_empty() { ")" } else { " )" });
        }
        Value::Dict { entries, .. } => {
            out.push_str("[\n");
            for e in entries {
                let _ = write!(
                    out,
                    "{:w$}{} = ",
                    "",
                    scalar_text(&e.key, false),
                    w = indent + 2
                );
                render_value(&e.value, indent + 2, out);
                out.push('\n');
            }
            let _ = write!(out, "{:indent$}]", "");
        }
    }
}

/// Prints one item (and everything inside it) in canonical form at `indent` spaces.
pub fn render_item(item: &Item, indent: usize, out: &mut String) {
    match &item.kind {
        ItemKind::Option { key, value } => {
            let _ = write!(out, "{:indent$}{key} = ", "");
            render_value(value, indent, out);
            out.push('\n');
        }
        ItemKind::Scope(s) => {
            let _ = write!(out, "{:indent$}{}", "", s.kind);
            if let Some(n) = &s.name {
                let _ = write!(out, " {}", quote(n));
            }
            if s.items.is_empty() {
                out.push_str(" {}\n");
            } else {
                out.push_str(" {\n");
                for i in &s.items {
                    render_item(i, indent + 2, out);
                }
                let _ = writeln!(out, "{:indent$}}}", "");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Item>, ConfigError> {
        parse_str(Path::new("t.conf"), text)
    }

    fn strip(v: &mut [Item]) {
        // Locations differ between a source and its rendering; compare structure only.
        fn loc0() -> Loc {
            Loc {
                file: Arc::new(PathBuf::from("x")),
                line: 0,
                col: 0,
            }
        }
        fn value(v: &mut Value) {
            match v {
                Value::Scalar { loc, quoted, .. } => {
                    *loc = loc0();
                    *quoted = false;
                }
                Value::List { items, loc } => {
                    *loc = loc0();
                    items.iter_mut().for_each(value);
                }
                Value::Dict { entries, loc } => {
                    *loc = loc0();
                    for e in entries {
                        e.loc = loc0();
                        value(&mut e.value);
                    }
                }
            }
        }
        for i in v {
            i.loc = loc0();
            match &mut i.kind {
                ItemKind::Option { value: v, .. } => value(v),
                ItemKind::Scope(s) => {
                    s.name_loc = None;
                    strip(&mut s.items)
                }
            }
        }
    }

    #[test]
    fn scopes_options_lists_dicts() {
        let items = p(r#"
            # comment
            cluster {
              cluster_group = "ec_cluster"   # trailing comment
              logs = [ a = "/x" b = /y, c = "z" ]
              Replicate "inbound_cidr" {}
              n = 5; m = true
            }
            Listen "*:4802" { }
            x = ( a, b ) y = ("a" "b")
        "#)
        .expect("parses");
        assert_eq!(items.len(), 4);
        let ItemKind::Scope(cluster) = &items[0].kind else {
            panic!("cluster is a scope")
        };
        assert_eq!(cluster.kind, "cluster");
        assert_eq!(cluster.name, None);
        assert_eq!(cluster.items.len(), 5);
        let ItemKind::Option { key, value } = &cluster.items[1].kind else {
            panic!("logs is an option")
        };
        assert_eq!(key, "logs");
        let Value::Dict { entries, .. } = value else {
            panic!("logs is a dict")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].key, "b");
        let ItemKind::Scope(rep) = &cluster.items[2].kind else {
            panic!()
        };
        assert_eq!(rep.name.as_deref(), Some("inbound_cidr"));
        let ItemKind::Option { value, .. } = &items[3].kind else {
            panic!()
        };
        let Value::List { items: l, .. } = value else {
            panic!()
        };
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn escapes() {
        let items = p(r#"a = "q\"b\\n\n\t""#).expect("parses");
        let ItemKind::Option { value, .. } = &items[0].kind else {
            panic!()
        };
        let Value::Scalar { text, .. } = value else {
            panic!()
        };
        assert_eq!(text, "q\"b\\n\n\t");
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, u32, u32, &str)] = &[
            ("a = \"x", 1, 5, "unterminated string"),
            ("cluster {\n  a = 1\n", 2, 7, "missing its closing"),
            ("a b c", 1, 3, "expected '=' or '{'"),
            ("= 5", 1, 1, "expected an option or scope name"),
            ("a = \"\\q\"", 1, 6, "unknown escape"),
            ("x = [ a 1 ]", 1, 9, "expected '=' after dictionary key"),
            ("x = ( a", 1, 7, "missing its closing ')'"),
            ("}", 1, 1, "unexpected '}'"),
            ("a =", 1, 3, "expected a value"),
        ];
        for (text, line, col, msg) in cases {
            let e = p(text).expect_err(text);
            assert_eq!((e.loc.line, e.loc.col), (*line, *col), "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "a = ".to_string() + &"(".repeat(100_000);
        assert!(p(&deep).is_err());
        let deep = "s {".repeat(100_000);
        assert!(p(&deep).is_err());
    }

    #[test]
    fn render_round_trips() {
        let src = r##"a = "x y" b = plain c = ( "1", two ) d = [ k = "v" "q k" = ( x ) ]
            S "n\"m" { T {} u = "#not a comment" }"##;
        let mut first = p(src).expect("parses");
        let mut out = String::new();
        for i in &first {
            render_item(i, 0, &mut out);
        }
        let mut second = p(&out).expect("rendering parses");
        strip(&mut first);
        strip(&mut second);
        assert_eq!(first, second, "{out}");
    }

    #[test]
    fn includes_and_cycles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.conf");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(&a, "x = 1\ninclude \"sub/b.conf\"\n").expect("write");
        std::fs::write(sub.join("b.conf"), "y = 2\ninclude \"c.conf\"\n").expect("write");
        std::fs::write(sub.join("c.conf"), "z = 3\n").expect("write");
        let items = parse_file(&a).expect("parses");
        assert_eq!(items.len(), 3);
        assert!(items[2].loc.file.ends_with("sub/c.conf"));

        std::fs::write(sub.join("c.conf"), "z = 3\ninclude \"../a.conf\"\n").expect("write");
        let e = parse_file(&a).expect_err("cycle");
        assert!(e.message.contains("include cycle"), "{e}");
        assert!(e.loc.file.ends_with("sub/c.conf"), "{e}");
        assert_eq!((e.loc.line, e.loc.col), (2, 9));

        std::fs::write(sub.join("c.conf"), "z = \n").expect("write");
        let e = parse_file(&a).expect_err("error in include");
        assert!(e.loc.file.ends_with("sub/c.conf"), "{e}");
    }

    #[test]
    fn non_utf8_reports_position() {
        let e = parse_bytes(Path::new("t.conf"), b"a = 1\nb = \"\xff\"").expect_err("utf8");
        assert_eq!((e.loc.line, e.loc.col), (2, 6));
    }
}
