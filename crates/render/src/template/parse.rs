//! The parser: tokens → trees, following Go's `text/template/parse` (its grammar, its scoping of
//! variables, its checks and most of its error texts).

use std::collections::BTreeMap;
use std::fmt;

use super::fmt::go_quote;
use super::lex::{Keyword, Kind, Token, lex};

/// Deepest nesting of parentheses and control structures a template may use. Go allows far
/// more; a limit keeps the recursive parser and evaluator within their stacks.
const MAX_NESTING: usize = 100;

pub(crate) type List = Vec<Node>;

#[derive(Debug)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Template(TemplateCall),
    Break(usize),
    Continue(usize),
}

#[derive(Debug)]
pub(crate) struct Branch {
    pub pos: usize,
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

#[derive(Debug)]
pub(crate) struct TemplateCall {
    pub pos: usize,
    pub name: String,
    pub pipe: Option<Pipe>,
}

#[derive(Debug)]
pub(crate) struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Command>,
}

#[derive(Debug)]
pub(crate) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug)]
pub(crate) struct Arg {
    pub pos: usize,
    pub kind: ArgKind,
}

#[derive(Debug)]
pub(crate) struct Number {
    pub text: String,
    pub int: Option<i64>,
    pub uint: bool,
    pub float: Option<f64>,
    pub complex: bool,
}

#[derive(Debug)]
pub(crate) enum ArgKind {
    Dot,
    Nil,
    Bool(bool),
    Number(Number),
    /// The quoted source text and the unquoted value.
    Str(String, String),
    /// `.a.b` (names without dots).
    Field(Vec<String>),
    /// `$x.a.b`: the variable name, then the fields.
    Variable(Vec<String>),
    Identifier(String),
    Pipe(Box<Pipe>),
    /// `(pipe).a.b` or `fn.a`.
    Chain(Box<Arg>, Vec<String>),
}

/// A parsed file: its main tree and the trees it defines, all parsed from `src`.
#[derive(Debug)]
pub(crate) struct Trees {
    pub trees: BTreeMap<String, List>,
}

/// A parse error (already in Go's `template: name:line: msg` shape).
#[derive(Debug)]
pub(crate) struct ParseError(pub String);

pub(crate) fn parse(
    name: &str,
    src: &str,
    has_function: &dyn Fn(&str) -> bool,
) -> Result<Trees, ParseError> {
    let mut p = Parser {
        name,
        toks: lex(src),
        i: 0,
        furthest: 0,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        depth: 0,
        has_function,
        trees: BTreeMap::new(),
    };
    let root = p.parse_top()?;
    p.add_tree(name.to_owned(), root)?;
    Ok(Trees { trees: p.trees })
}

struct Parser<'a> {
    name: &'a str,
    toks: Vec<Token>,
    i: usize,
    furthest: usize,
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    has_function: &'a dyn Fn(&str) -> bool,
    trees: BTreeMap<String, List>,
}

type PResult<T> = Result<T, ParseError>;

/// Go's `IsEmptyTree`: only blank text.
fn is_empty_tree(list: &List) -> bool {
    list.iter().all(|n| match n {
        Node::Text(t) => t.trim_matches(|c: char| c.is_whitespace()).is_empty(),
        _ => false,
    })
}

impl Parser<'_> {
    fn tok(&self, i: usize) -> &Token {
        // The stream always ends with Eof or Error; reading past it keeps returning it.
        let last = self.toks.len().saturating_sub(1);
        &self.toks[i.min(last)]
    }

    /// Go reports the line of the last token it read (including look-ahead).
    fn line(&self) -> usize {
        self.tok(self.furthest).line
    }

    fn errorf(&self, msg: impl fmt::Display) -> ParseError {
        ParseError(format!("template: {}:{}: {}", self.name, self.line(), msg))
    }

    fn next(&mut self) -> Token {
        let t = self.tok(self.i).clone();
        self.furthest = self
            .furthest
            .max(self.i.min(self.toks.len().saturating_sub(1)));
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&mut self) -> Token {
        let t = self.next();
        self.backup();
        t
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.kind != Kind::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn unexpected(&self, t: &Token, context: &str) -> ParseError {
        if t.kind == Kind::Error {
            return ParseError(format!("template: {}:{}: {}", self.name, t.line, t.val));
        }
        self.errorf(format!("unexpected {t} in {context}"))
    }

    fn expect(&mut self, kind: Kind, context: &str) -> PResult<Token> {
        let t = self.next_non_space();
        if t.kind != kind {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.errorf("max expression depth exceeded"));
        }
        Ok(())
    }

    fn add_tree(&mut self, name: String, list: List) -> PResult<()> {
        match self.trees.get(&name) {
            Some(old) if !is_empty_tree(old) => {
                if !is_empty_tree(&list) {
                    return Err(self.errorf(format!(
                        "template: multiple definition of template {}",
                        go_quote(&name)
                    )));
                }
            }
            _ => {
                self.trees.insert(name, list);
            }
        }
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<List> {
        let mut root = Vec::new();
        loop {
            if self.peek().kind == Kind::Eof {
                return Ok(root);
            }
            if self.peek().kind == Kind::LeftDelim {
                let save = self.i;
                self.next();
                if self.next_non_space().kind == Kind::Keyword(Keyword::Define) {
                    self.parse_definition()?;
                    continue;
                }
                self.i = save;
            }
            match self.text_or_action()? {
                Item::Node(n) => root.push(n),
                Item::End => return Err(self.errorf("unexpected {{end}}")),
                Item::Else(_) => return Err(self.errorf("unexpected {{else}}")),
            }
        }
    }

    fn parse_definition(&mut self) -> PResult<()> {
        const CONTEXT: &str = "define clause";
        let t = self.next_non_space();
        if !matches!(t.kind, Kind::String | Kind::RawString) {
            return Err(self.unexpected(&t, CONTEXT));
        }
        let name = self.unquote(&t)?;
        self.expect(Kind::RightDelim, CONTEXT)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        self.range_depth = saved_range;
        if !matches!(end, Item::End) {
            return Err(self.errorf(format!("unexpected {} in {CONTEXT}", end.describe())));
        }
        self.add_tree(name, list)
    }

    /// Parses nodes up to `{{end}}` or `{{else}}`.
    fn item_list(&mut self) -> PResult<(List, Item)> {
        let mut list = Vec::new();
        loop {
            let t = self.peek_non_space();
            if t.kind == Kind::Eof {
                return Err(self.errorf("unexpected EOF"));
            }
            match self.text_or_action()? {
                Item::Node(n) => list.push(n),
                other => return Ok((list, other)),
            }
        }
    }

    fn text_or_action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Text => Ok(Item::Node(Node::Text(t.val))),
            Kind::LeftDelim => self.action(),
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> PResult<Item> {
        let t = self.next_non_space();
        match t.kind {
            Kind::Keyword(Keyword::Block) => self.block_control().map(Item::Node),
            Kind::Keyword(Keyword::Break) => self.loop_control("break", t.pos).map(Item::Node),
            Kind::Keyword(Keyword::Continue) => {
                self.loop_control("continue", t.pos).map(Item::Node)
            }
            Kind::Keyword(Keyword::Else) => {
                let peek = self.peek_non_space();
                if matches!(peek.kind, Kind::Keyword(Keyword::If | Keyword::With)) {
                    return Ok(Item::Else(peek.pos));
                }
                let t = self.expect(Kind::RightDelim, "else")?;
                Ok(Item::Else(t.pos))
            }
            Kind::Keyword(Keyword::End) => {
                self.expect(Kind::RightDelim, "end")?;
                Ok(Item::End)
            }
            Kind::Keyword(Keyword::If) => self.control(Ctl::If).map(Item::Node),
            Kind::Keyword(Keyword::Range) => self.control(Ctl::Range).map(Item::Node),
            Kind::Keyword(Keyword::With) => self.control(Ctl::With).map(Item::Node),
            Kind::Keyword(Keyword::Template) => self.template_control().map(Item::Node),
            _ => {
                self.backup();
                let pipe = self.pipeline("command", Kind::RightDelim)?;
                Ok(Item::Node(Node::Action(pipe)))
            }
        }
    }

    fn loop_control(&mut self, word: &str, pos: usize) -> PResult<Node> {
        let t = self.next_non_space();
        if t.kind != Kind::RightDelim {
            return Err(self.unexpected(&t, &format!("{{{{{word}}}}}")));
        }
        if self.range_depth == 0 {
            return Err(self.errorf(format!("{{{{{word}}}}} outside {{{{range}}}}")));
        }
        Ok(if word == "break" {
            Node::Break(pos)
        } else {
            Node::Continue(pos)
        })
    }

    fn control(&mut self, ctl: Ctl) -> PResult<Node> {
        self.enter()?;
        let vars_len = self.vars.len();
        let r = self.control_body(ctl);
        self.vars.truncate(vars_len);
        self.depth -= 1;
        let (pos, pipe, list, else_list) = r?;
        let b = Branch {
            pos,
            pipe,
            list,
            else_list,
        };
        Ok(match ctl {
            Ctl::If => Node::If(b),
            Ctl::With => Node::With(b),
            Ctl::Range => Node::Range(b),
        })
    }

    #[allow(clippy::type_complexity)]
    fn control_body(&mut self, ctl: Ctl) -> PResult<(usize, Pipe, List, Option<List>)> {
        let context = ctl.name();
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        let pos = pipe.pos;
        // `break` and `continue` belong to a range's body, not to its `else` (as in Go).
        let in_range = usize::from(ctl == Ctl::Range);
        self.range_depth += in_range;
        let body = self.item_list();
        self.range_depth -= in_range;
        let (list, next) = body?;
        let else_list = match next {
            Item::End => None,
            Item::Else(else_pos) => {
                let peek = self.peek().kind;
                if ctl == Ctl::If && peek == Kind::Keyword(Keyword::If) {
                    self.next();
                    Some(vec![self.control(Ctl::If)?])
                } else if ctl == Ctl::With && peek == Kind::Keyword(Keyword::With) {
                    self.next();
                    Some(vec![self.control(Ctl::With)?])
                } else {
                    let _ = else_pos;
                    let (list, next) = self.item_list()?;
                    if !matches!(next, Item::End) {
                        return Err(self.errorf(format!("expected end; found {}", next.describe())));
                    }
                    Some(list)
                }
            }
            Item::Node(_) => None,
        };
        Ok((pos, pipe, list, else_list))
    }

    fn template_name(&mut self, context: &str) -> PResult<(Token, String)> {
        let t = self.next_non_space();
        if !matches!(t.kind, Kind::String | Kind::RawString) {
            return Err(self.unexpected(&t, context));
        }
        let name = self.unquote(&t)?;
        Ok((t, name))
    }

    fn template_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "template clause";
        let (t, name) = self.template_name(CONTEXT)?;
        let pipe = if self.next_non_space().kind != Kind::RightDelim {
            self.backup();
            Some(self.pipeline(CONTEXT, Kind::RightDelim)?)
        } else {
            None
        };
        Ok(Node::Template(TemplateCall {
            pos: t.pos,
            name,
            pipe,
        }))
    }

    fn block_control(&mut self) -> PResult<Node> {
        const CONTEXT: &str = "block clause";
        let (t, name) = self.template_name(CONTEXT)?;
        let pipe = self.pipeline(CONTEXT, Kind::RightDelim)?;
        self.enter()?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let r = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_range;
        self.depth -= 1;
        let (list, end) = r?;
        if !matches!(end, Item::End) {
            return Err(self.errorf(format!("unexpected {} in {CONTEXT}", end.describe())));
        }
        self.add_tree(name.clone(), list)?;
        Ok(Node::Template(TemplateCall {
            pos: t.pos,
            name,
            pipe: Some(pipe),
        }))
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> PResult<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
        loop {
            let v = self.peek_non_space();
            if v.kind != Kind::Variable {
                break;
            }
            let save = self.i;
            self.next_non_space();
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    break;
                }
                Kind::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        let k = self.peek_non_space().kind;
                        if matches!(k, Kind::Variable | Kind::RightDelim | Kind::RightParen) {
                            continue;
                        }
                        return Err(self.errorf("range can only initialize variables"));
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        loop {
            let t = self.next_non_space();
            if t.kind == end {
                if pipe.cmds.is_empty() {
                    return Err(self.errorf(format!("missing value for {context}")));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if let Some(first) = c.args.first()
                        && matches!(
                            first.kind,
                            ArgKind::Bool(_)
                                | ArgKind::Dot
                                | ArgKind::Nil
                                | ArgKind::Number(_)
                                | ArgKind::Str(..)
                        )
                    {
                        return Err(self.errorf(format!(
                            "non executable command in pipeline stage {}",
                            i + 1
                        )));
                    }
                }
                return Ok(pipe);
            }
            match t.kind {
                Kind::Bool
                | Kind::CharConstant
                | Kind::Complex
                | Kind::Dot
                | Kind::Field
                | Kind::Identifier
                | Kind::Number
                | Kind::Nil
                | Kind::RawString
                | Kind::String
                | Kind::Variable
                | Kind::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn command(&mut self) -> PResult<Command> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                args.push(op);
            }
            let t = self.next();
            match t.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.backup(),
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        Ok(Command { pos, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().kind != Kind::Field {
            return Ok(Some(node));
        }
        let chain_pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().kind == Kind::Field {
            let t = self.next();
            fields.push(t.val[1..].to_owned());
        }
        if matches!(
            node.kind,
            ArgKind::Bool(_) | ArgKind::Str(..) | ArgKind::Number(_) | ArgKind::Nil | ArgKind::Dot
        ) {
            return Err(self.errorf(format!(
                "unexpected . after term {}",
                go_quote(&node.to_string())
            )));
        }
        let kind = match node.kind {
            ArgKind::Field(mut idents) => {
                idents.append(&mut fields);
                ArgKind::Field(idents)
            }
            ArgKind::Variable(mut idents) => {
                idents.append(&mut fields);
                ArgKind::Variable(idents)
            }
            other => ArgKind::Chain(
                Box::new(Arg {
                    pos: node.pos,
                    kind: other,
                }),
                fields,
            ),
        };
        Ok(Some(Arg {
            pos: chain_pos,
            kind,
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let kind = match t.kind {
            Kind::Identifier => {
                if !(self.has_function)(&t.val) {
                    return Err(self.errorf(format!("function {} not defined", go_quote(&t.val))));
                }
                ArgKind::Identifier(t.val.clone())
            }
            Kind::Dot => ArgKind::Dot,
            Kind::Nil => ArgKind::Nil,
            Kind::Variable => {
                if !self.vars.contains(&t.val) {
                    return Err(self.errorf(format!("undefined variable {}", go_quote(&t.val))));
                }
                ArgKind::Variable(vec![t.val.clone()])
            }
            Kind::Field => ArgKind::Field(vec![t.val[1..].to_owned()]),
            Kind::Bool => ArgKind::Bool(t.val == "true"),
            Kind::CharConstant | Kind::Complex | Kind::Number => ArgKind::Number(self.number(&t)?),
            Kind::LeftParen => {
                self.enter()?;
                let r = self.pipeline("parenthesized pipeline", Kind::RightParen);
                self.depth -= 1;
                ArgKind::Pipe(Box::new(r?))
            }
            Kind::String | Kind::RawString => {
                let s = self.unquote(&t)?;
                ArgKind::Str(t.val.clone(), s)
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(Arg { pos: t.pos, kind }))
    }

    fn unquote(&self, t: &Token) -> PResult<String> {
        unquote(&t.val).ok_or_else(|| self.errorf("invalid syntax"))
    }

    fn number(&self, t: &Token) -> PResult<Number> {
        let text = t.val.clone();
        if t.kind == Kind::Complex || (text.ends_with('i') && !text.starts_with('\'')) {
            // Go parses complex constants; we cannot compute with them, so using one fails at
            // execution (in Go it would print, e.g. `(0+3i)`). An imaginary part of zero makes
            // it a plain number, as in Go.
            let imag = text.strip_suffix('i').filter(|_| t.kind != Kind::Complex);
            if let Some(imag) = imag {
                let value = parse_go_int(imag)
                    .map(|i| i as f64)
                    .or_else(|| parse_go_float(imag))
                    .ok_or_else(|| {
                        self.errorf(format!("illegal number syntax: {}", go_quote(&text)))
                    })?;
                if value == 0.0 {
                    return Ok(Number {
                        text,
                        int: Some(0),
                        uint: true,
                        float: Some(0.0),
                        complex: false,
                    });
                }
            }
            return Ok(Number {
                text,
                int: None,
                uint: false,
                float: None,
                complex: true,
            });
        }
        if t.kind == Kind::CharConstant {
            let c = unquote_char(&text)
                .ok_or_else(|| self.errorf(format!("malformed character constant: {text}")))?;
            let n = i64::from(u32::from(c));
            return Ok(Number {
                text,
                int: Some(n),
                uint: true,
                float: Some(n as f64),
                complex: false,
            });
        }
        let int = parse_go_int(&text);
        let uint = int.is_some_and(|i| i >= 0) || parse_go_uint(&text).is_some();
        if let Some(i) = int {
            return Ok(Number {
                text,
                int: Some(i),
                uint,
                float: Some(i as f64),
                complex: false,
            });
        }
        if let Some(u) = parse_go_uint(&text) {
            return Ok(Number {
                text,
                int: None,
                uint: true,
                float: Some(u as f64),
                complex: false,
            });
        }
        match parse_go_float(&text) {
            Some(f) => {
                if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                    return Err(self.errorf(format!("integer overflow: {text}")));
                }
                let int = (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
                Ok(Number {
                    text,
                    int,
                    uint: false,
                    float: Some(f),
                    complex: false,
                })
            }
            None => Err(self.errorf(format!("illegal number syntax: {}", go_quote(&text)))),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctl {
    If,
    With,
    Range,
}

impl Ctl {
    fn name(self) -> &'static str {
        match self {
            Ctl::If => "if",
            Ctl::With => "with",
            Ctl::Range => "range",
        }
    }
}

enum Item {
    Node(Node),
    End,
    Else(usize),
}

impl Item {
    fn describe(&self) -> &'static str {
        match self {
            Item::Node(_) => "node",
            Item::End => "{{end}}",
            Item::Else(_) => "{{else}}",
        }
    }
}

/// Go's `strconv.Unquote` for `"…"` and `` `…` `` (and `'…'`, one character).
pub(crate) fn unquote(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if bytes.len() < 2 {
        return None;
    }
    let q = bytes[0];
    if bytes[bytes.len() - 1] != q {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    match q {
        b'`' => {
            if inner.contains('`') {
                return None;
            }
            Some(inner.replace('\r', ""))
        }
        b'"' | b'\'' => {
            let mut out = String::new();
            let mut rest = inner;
            while !rest.is_empty() {
                let (c, tail) = unquote_one(rest, char::from(q))?;
                out.push_str(&c);
                rest = tail;
            }
            if q == b'\'' && out.chars().count() != 1 {
                return None;
            }
            Some(out)
        }
        _ => None,
    }
}

fn unquote_char(s: &str) -> Option<char> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let (c, tail) = unquote_one(inner, '\'')?;
    if !tail.is_empty() {
        return None;
    }
    let mut chars = c.chars();
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// One (possibly escaped) character of a quoted literal: Go's `strconv.UnquoteChar`. Byte escapes
/// (`\xHH`, `\ooo`) that do not form valid UTF-8 become U+FFFD.
fn unquote_one(s: &str, quote: char) -> Option<(String, &str)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    if c == quote && (quote == '\'' || quote == '"') {
        return None;
    }
    if c == '\n' {
        return None;
    }
    if c != '\\' {
        return Some((c.to_string(), chars.as_str()));
    }
    let e = chars.next()?;
    let rest = chars.as_str();
    let simple = match e {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' => Some('\\'),
        '\'' | '"' if e == quote => Some(e),
        _ => None,
    };
    if let Some(c) = simple {
        return Some((c.to_string(), rest));
    }
    let hex = |n: usize| -> Option<(u32, &str)> {
        let digits = rest.get(..n)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((u32::from_str_radix(digits, 16).ok()?, &rest[n..]))
    };
    match e {
        'x' => {
            let (v, tail) = hex(2)?;
            let c = if v < 0x80 {
                char::from_u32(v)?
            } else {
                '\u{FFFD}'
            };
            Some((c.to_string(), tail))
        }
        'u' | 'U' => {
            let (v, tail) = hex(if e == 'u' { 4 } else { 8 })?;
            Some((char::from_u32(v)?.to_string(), tail))
        }
        '0'..='7' => {
            let digits = s.get(1..4)?;
            if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return None;
            }
            let v = u32::from_str_radix(digits, 8).ok()?;
            if v > 255 {
                return None;
            }
            let c = if v < 0x80 {
                char::from_u32(v)?
            } else {
                '\u{FFFD}'
            };
            Some((c.to_string(), &s[4..]))
        }
        _ => None,
    }
}

/// Go's underscore rule for base-prefixed literals (`underscoreOK`), simplified: underscores
/// only between digits, or right after a base prefix.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let mut base_prefix = false;
    if b.len() >= i + 2 && b[i] == b'0' && matches!(b[i + 1] | 0x20, b'x' | b'o' | b'b') {
        base_prefix = true;
        i += 2;
    }
    let mut prev = if base_prefix { b'0' } else { b'.' };
    let mut saw_underscore = false;
    for &c in &b[i..] {
        if c == b'_' {
            if !(prev.is_ascii_hexdigit()) {
                return false;
            }
            saw_underscore = true;
        } else if prev == b'_' && !c.is_ascii_hexdigit() {
            return false;
        }
        prev = c;
    }
    !saw_underscore || prev != b'_'
}

/// The digits and base of an integer literal with Go's base-0 rules (`0x`, `0o`, `0b`, leading
/// `0` = octal, `_` separators); `None` if it is not one.
fn int_parts(s: &str) -> Option<(bool, u32, String)> {
    if s.contains('_') && !underscores_ok(s) {
        return None;
    }
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.replace('_', "");
    let lower = body.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_owned())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    Some((neg, base, digits))
}

pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, base, digits) = int_parts(s)?;
    let v = i128::from(u64::from_str_radix(&digits, base).ok()?);
    i64::try_from(if neg { -v } else { v }).ok()
}

fn parse_go_uint(s: &str) -> Option<u64> {
    let (neg, base, digits) = int_parts(s)?;
    if neg && digits.trim_start_matches('0').is_empty() {
        return Some(0);
    }
    if neg {
        return None;
    }
    u64::from_str_radix(&digits, base).ok()
}

/// Go's `strconv.ParseFloat` for decimal literals (hex floats are not supported).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    if s.contains('_') && !underscores_ok(s) {
        return None;
    }
    let t = s.replace('_', "");
    let body = t.trim_start_matches(['+', '-']);
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        || !body.bytes().any(|b| b.is_ascii_digit())
    {
        return None;
    }
    t.parse::<f64>().ok()
}

// ---- Go's String() of nodes, for "executing … at <…>" contexts ----

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ArgKind::Dot => f.write_str("."),
            ArgKind::Nil => f.write_str("nil"),
            ArgKind::Bool(b) => write!(f, "{b}"),
            ArgKind::Number(n) => f.write_str(&n.text),
            ArgKind::Str(quoted, _) => f.write_str(quoted),
            ArgKind::Field(idents) => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            ArgKind::Variable(idents) => f.write_str(&idents.join(".")),
            ArgKind::Identifier(name) => f.write_str(name),
            ArgKind::Pipe(p) => write!(f, "{p}"),
            ArgKind::Chain(node, fields) => {
                if matches!(node.kind, ArgKind::Pipe(_)) {
                    write!(f, "({node})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for field in fields {
                    write!(f, ".{field}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arg) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if matches!(arg.kind, ArgKind::Pipe(_)) {
                write!(f, "({arg})")?;
            } else {
                write!(f, "{arg}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, list: &List) -> fmt::Result {
    for n in list {
        write!(f, "{n}")?;
    }
    Ok(())
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let branch = |f: &mut fmt::Formatter<'_>, word: &str, b: &Branch| -> fmt::Result {
            write!(f, "{{{{{word} {}}}}}", b.pipe)?;
            write_list(f, &b.list)?;
            if let Some(e) = &b.else_list {
                f.write_str("{{else}}")?;
                write_list(f, e)?;
            }
            f.write_str("{{end}}")
        };
        match self {
            Node::Text(t) => f.write_str(t),
            Node::Action(p) => write!(f, "{{{{{p}}}}}"),
            Node::If(b) => branch(f, "if", b),
            Node::With(b) => branch(f, "with", b),
            Node::Range(b) => branch(f, "range", b),
            Node::Template(t) => match &t.pipe {
                Some(p) => write!(f, "{{{{template {} {p}}}}}", go_quote(&t.name)),
                None => write!(f, "{{{{template {}}}}}", go_quote(&t.name)),
            },
            Node::Break(_) => f.write_str("{{break}}"),
            Node::Continue(_) => f.write_str("{{continue}}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_like_go() {
        assert_eq!(parse_go_int("0x1F"), Some(31));
        assert_eq!(parse_go_int("017"), Some(15));
        assert_eq!(parse_go_int("0b101"), Some(5));
        assert_eq!(parse_go_int("1_000"), Some(1000));
        assert_eq!(parse_go_int("-42"), Some(-42));
        assert_eq!(parse_go_int("1__0"), None);
        assert_eq!(parse_go_int("1.5"), None);
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float(".5"), Some(0.5));
        assert_eq!(parse_go_float("-"), None);
    }

    #[test]
    fn unquotes_like_go() {
        assert_eq!(
            unquote(r#""a\tb\"c\x41\u00e9\101""#).as_deref(),
            Some("a\tb\"cAéA")
        );
        assert_eq!(unquote("`a\\n\r`").as_deref(), Some("a\\n"));
        assert_eq!(unquote(r#""\'""#), None);
        assert_eq!(unquote(r#""\q""#), None);
        assert_eq!(unquote_char("'a'"), Some('a'));
        assert_eq!(unquote_char(r"'\n'"), Some('\n'));
    }
}
