//! The lexer: splits a template into text and the tokens inside `{{ … }}`, the way Go's
//! `text/template/parse` lexer does (trim markers, comments, newlines inside actions).
//!
//! The whole input is lexed up front. A lexical error becomes an [`Kind::Error`] token and ends the
//! stream, so the parser reports it only when it gets there, as Go does.

use std::fmt;

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyword {
    Block,
    Break,
    Continue,
    Define,
    Else,
    End,
    If,
    Range,
    Template,
    With,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Identifier,
    /// `.name`; `val` keeps the dot.
    Field,
    /// `$` or `$name`.
    Variable,
    Dot,
    Bool,
    Nil,
    Number,
    Complex,
    CharConstant,
    String,
    RawString,
    LeftParen,
    RightParen,
    Pipe,
    Declare,
    Assign,
    /// Any other printable ASCII character inside an action (Go's `itemChar`), e.g. `,`.
    Char,
    Keyword(Keyword),
    Eof,
    Error,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub kind: Kind,
    /// Byte offset in the template text.
    pub pos: usize,
    /// 1-based line of the token's start.
    pub line: usize,
    /// The token's text (the message for [`Kind::Error`]).
    pub val: String,
}

impl fmt::Display for Token {
    /// Go's `item.String()`, used in "unexpected … in …" messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Eof => f.write_str("EOF"),
            Kind::Error => f.write_str(&self.val),
            Kind::Keyword(_) | Kind::Bool | Kind::Nil | Kind::Dot => write!(f, "<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                write!(f, "{}...", super::fmt::go_quote(&head))
            }
            _ => f.write_str(&super::fmt::go_quote(&self.val)),
        }
    }
}

pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alphanumeric(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

/// Go's `%#U`: `U+0023 '#'`.
pub(crate) fn sharp_u(c: char) -> String {
    let code = format!("U+{:04X}", u32::from(c));
    if c.is_control() {
        code
    } else {
        format!("{code} '{c}'")
    }
}

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(char::from(b[1]))
}

/// A space, a `-` and the right delimiter: `{{ x -}}`.
fn at_trimmed_right_delim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 + RIGHT.len()
        && is_space(char::from(b[0]))
        && b[1] == b'-'
        && s[2..].starts_with(RIGHT)
}

fn left_trim_len(s: &str) -> usize {
    s.len() - s.trim_start_matches(is_space).len()
}

pub(crate) fn lex(src: &str) -> Vec<Token> {
    let mut l = Lexer {
        src,
        pos: 0,
        line: 1,
        toks: Vec::new(),
        paren_depth: 0,
    };
    l.run();
    l.toks
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    toks: Vec<Token>,
    paren_depth: usize,
}

/// Lexing stopped: an error token has been emitted.
struct Stop;

impl Lexer<'_> {
    fn emit(&mut self, kind: Kind, start: usize, end: usize) {
        let line = self.line_at(start);
        self.toks.push(Token {
            kind,
            pos: start,
            line,
            val: self.src[start..end].to_owned(),
        });
    }

    /// Line of `at`, which must be ≥ the current position's line start (counted incrementally).
    fn line_at(&self, at: usize) -> usize {
        if at >= self.pos {
            self.line + self.src[self.pos..at].matches('\n').count()
        } else {
            self.line - self.src[at..self.pos].matches('\n').count()
        }
    }

    fn advance_to(&mut self, to: usize) {
        self.line += self.src[self.pos..to].matches('\n').count();
        self.pos = to;
    }

    fn error(&mut self, msg: String) -> Stop {
        let line = self.line;
        self.toks.push(Token {
            kind: Kind::Error,
            pos: self.pos,
            line,
            val: msg,
        });
        Stop
    }

    fn run(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            let Some(i) = rest.find(LEFT) else {
                if !rest.is_empty() {
                    self.emit(Kind::Text, self.pos, self.src.len());
                }
                self.advance_to(self.src.len());
                self.emit(Kind::Eof, self.pos, self.pos);
                return;
            };
            let delim = self.pos + i;
            let after = delim + LEFT.len();
            let trim = has_left_trim_marker(&self.src[after..]);
            let text_end = if trim {
                self.pos + self.src[self.pos..delim].trim_end_matches(is_space).len()
            } else {
                delim
            };
            if text_end > self.pos {
                self.emit(Kind::Text, self.pos, text_end);
            }
            self.advance_to(delim);
            let after_marker = if trim { after + 2 } else { after };
            let result = if self.src[after_marker..].starts_with(LEFT_COMMENT) {
                self.advance_to(after_marker);
                self.lex_comment()
            } else {
                self.emit(Kind::LeftDelim, delim, after);
                self.advance_to(after_marker);
                self.paren_depth = 0;
                self.lex_inside_action()
            };
            if result.is_err() {
                return;
            }
        }
    }

    fn lex_comment(&mut self) -> Result<(), Stop> {
        let start = self.pos + LEFT_COMMENT.len();
        let Some(x) = self.src[start..].find(RIGHT_COMMENT) else {
            return Err(self.error("unclosed comment".into()));
        };
        let end = start + x + RIGHT_COMMENT.len();
        self.advance_to(end);
        let rest = &self.src[self.pos..];
        if at_trimmed_right_delim(rest) {
            let after = self.pos + 2 + RIGHT.len();
            let after = after + left_trim_len(&self.src[after..]);
            self.advance_to(after);
            Ok(())
        } else if rest.starts_with(RIGHT) {
            self.advance_to(self.pos + RIGHT.len());
            Ok(())
        } else {
            Err(self.error("comment ends before closing delimiter".into()))
        }
    }

    fn right_delim(&mut self, at: usize, trim: bool) -> Result<(), Stop> {
        if self.paren_depth > 0 {
            return Err(self.error("unclosed left paren".into()));
        }
        let delim_start = if trim { at + 2 } else { at };
        self.emit(Kind::RightDelim, delim_start, delim_start + RIGHT.len());
        let mut after = delim_start + RIGHT.len();
        if trim {
            after += left_trim_len(&self.src[after..]);
        }
        self.advance_to(after);
        Ok(())
    }

    fn peek_char(&self, at: usize) -> Option<char> {
        self.src[at..].chars().next()
    }

    /// Go's `atTerminator`: what may follow a word.
    fn at_terminator(&self, at: usize) -> bool {
        match self.peek_char(at) {
            None => true,
            Some(c) if is_space(c) => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            Some(_) => self.src[at..].starts_with(RIGHT),
        }
    }

    fn lex_inside_action(&mut self) -> Result<(), Stop> {
        loop {
            let rest = &self.src[self.pos..];
            if at_trimmed_right_delim(rest) {
                return self.right_delim(self.pos, true);
            }
            if rest.starts_with(RIGHT) {
                return self.right_delim(self.pos, false);
            }
            let Some(c) = rest.chars().next() else {
                return Err(self.error("unclosed action".into()));
            };
            let start = self.pos;
            let next = start + c.len_utf8();
            match c {
                c if is_space(c) => {
                    let end = start + left_trim_len(rest);
                    // A trim-marked closing delimiter starts with one of these spaces.
                    if self.src[end..].starts_with('-') && self.src[end + 1..].starts_with(RIGHT) {
                        if end - 1 > start {
                            self.emit(Kind::Space, start, end - 1);
                        }
                        self.advance_to(end - 1);
                        return self.right_delim(end - 1, true);
                    }
                    self.emit(Kind::Space, start, end);
                    self.advance_to(end);
                }
                '=' => self.simple(Kind::Assign, next),
                ':' => {
                    if self.peek_char(next) != Some('=') {
                        self.advance_to(next);
                        return Err(self.error("expected :=".into()));
                    }
                    self.simple(Kind::Declare, next + 1);
                }
                '|' => self.simple(Kind::Pipe, next),
                '"' => self.lex_quote(start, '"', Kind::String, "unterminated quoted string")?,
                '\'' => self.lex_quote(
                    start,
                    '\'',
                    Kind::CharConstant,
                    "unterminated character constant",
                )?,
                '`' => match self.src[next..].find('`') {
                    Some(i) => self.simple(Kind::RawString, next + i + 1),
                    None => return Err(self.error("unterminated raw quoted string".into())),
                },
                '$' => self.lex_field_or_variable(start, Kind::Variable)?,
                '.' if !self.peek_char(next).is_some_and(|d| d.is_ascii_digit()) => {
                    self.lex_field_or_variable(start, Kind::Field)?;
                }
                '.' | '+' | '-' | '0'..='9' => self.lex_number(start)?,
                c if is_alphanumeric(c) => self.lex_identifier(start)?,
                '(' => {
                    self.paren_depth += 1;
                    self.simple(Kind::LeftParen, next);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        self.advance_to(next);
                        return Err(self.error("unexpected right paren".into()));
                    }
                    self.paren_depth -= 1;
                    self.simple(Kind::RightParen, next);
                }
                c if c.is_ascii() && !c.is_ascii_control() => self.simple(Kind::Char, next),
                c => {
                    return Err(
                        self.error(format!("unrecognized character in action: {}", sharp_u(c)))
                    );
                }
            }
        }
    }

    fn simple(&mut self, kind: Kind, end: usize) {
        self.emit(kind, self.pos, end);
        self.advance_to(end);
    }

    fn lex_quote(
        &mut self,
        start: usize,
        quote: char,
        kind: Kind,
        unterminated: &str,
    ) -> Result<(), Stop> {
        let mut chars = self.src[start + 1..].char_indices();
        loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, c)) if c != '\n' => {}
                    _ => return Err(self.error(unterminated.into())),
                },
                None | Some((_, '\n')) => return Err(self.error(unterminated.into())),
                Some((i, c)) if c == quote => {
                    self.simple(kind, start + 1 + i + 1);
                    return Ok(());
                }
                Some(_) => {}
            }
        }
    }

    fn scan_word(&self, from: usize) -> usize {
        let rest = &self.src[from..];
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_alphanumeric(c))
            .map_or(rest.len(), |(i, _)| i);
        from + len
    }

    fn bad_char_at(&mut self, end: usize) -> Stop {
        let c = self.peek_char(end).unwrap_or('\u{FFFD}');
        self.advance_to(end);
        self.error(format!("bad character {}", sharp_u(c)))
    }

    fn lex_field_or_variable(&mut self, start: usize, kind: Kind) -> Result<(), Stop> {
        let next = start + 1;
        if self.at_terminator(next) {
            let kind = if kind == Kind::Variable {
                Kind::Variable
            } else {
                Kind::Dot
            };
            self.simple(kind, next);
            return Ok(());
        }
        let end = self.scan_word(next);
        if !self.at_terminator(end) {
            return Err(self.bad_char_at(end));
        }
        self.simple(kind, end);
        Ok(())
    }

    fn lex_identifier(&mut self, start: usize) -> Result<(), Stop> {
        let end = self.scan_word(start);
        if !self.at_terminator(end) {
            return Err(self.bad_char_at(end));
        }
        let kind = match &self.src[start..end] {
            "block" => Kind::Keyword(Keyword::Block),
            "break" => Kind::Keyword(Keyword::Break),
            "continue" => Kind::Keyword(Keyword::Continue),
            "define" => Kind::Keyword(Keyword::Define),
            "else" => Kind::Keyword(Keyword::Else),
            "end" => Kind::Keyword(Keyword::End),
            "if" => Kind::Keyword(Keyword::If),
            "range" => Kind::Keyword(Keyword::Range),
            "template" => Kind::Keyword(Keyword::Template),
            "with" => Kind::Keyword(Keyword::With),
            "nil" => Kind::Nil,
            "true" | "false" => Kind::Bool,
            _ => Kind::Identifier,
        };
        self.simple(kind, end);
        Ok(())
    }

    /// Go's `scanNumber`: returns the end of the number, or `Err(end)` when a letter follows.
    fn scan_number(&self, from: usize) -> Result<usize, usize> {
        let b = self.src.as_bytes();
        let mut i = from;
        let accept = |i: &mut usize, set: &[u8]| -> bool {
            if *i < b.len() && set.contains(&b[*i]) {
                *i += 1;
                true
            } else {
                false
            }
        };
        accept(&mut i, b"+-");
        let mut digits: &[u8] = b"0123456789_";
        if accept(&mut i, b"0") {
            if accept(&mut i, b"xX") {
                digits = b"0123456789abcdefABCDEF_";
            } else if accept(&mut i, b"oO") {
                digits = b"01234567_";
            } else if accept(&mut i, b"bB") {
                digits = b"01_";
            }
        }
        while accept(&mut i, digits) {}
        if accept(&mut i, b".") {
            while accept(&mut i, digits) {}
        }
        if digits.len() == 11 && accept(&mut i, b"eE") {
            accept(&mut i, b"+-");
            while accept(&mut i, b"0123456789_") {}
        }
        if digits.len() == 23 && accept(&mut i, b"pP") {
            accept(&mut i, b"+-");
            while accept(&mut i, b"0123456789_") {}
        }
        accept(&mut i, b"i");
        match self.peek_char(i) {
            Some(c) if is_alphanumeric(c) => Err(i + c.len_utf8()),
            _ => Ok(i),
        }
    }

    fn lex_number(&mut self, start: usize) -> Result<(), Stop> {
        let end = match self.scan_number(start) {
            Ok(end) => end,
            Err(end) => {
                let text = self.src[start..end].to_owned();
                self.advance_to(end);
                return Err(self.error(format!(
                    "bad number syntax: {}",
                    super::fmt::go_quote(&text)
                )));
            }
        };
        if matches!(self.peek_char(end), Some('+' | '-')) {
            // A complex number: 1+2i.
            return match self.scan_number(end) {
                Ok(end2) if self.src[..end2].ends_with('i') => {
                    self.simple(Kind::Complex, end2);
                    Ok(())
                }
                Ok(end2) | Err(end2) => {
                    let text = self.src[start..end2].to_owned();
                    self.advance_to(end2);
                    Err(self.error(format!(
                        "bad number syntax: {}",
                        super::fmt::go_quote(&text)
                    )))
                }
            };
        }
        self.simple(Kind::Number, end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        lex(src).into_iter().map(|t| (t.kind, t.val)).collect()
    }

    #[test]
    fn trims_and_tokens() {
        let toks = kinds("a  {{- .x.y | printf \"%d\" 3 -}}\n b");
        let want = vec![
            (Kind::Text, "a".to_owned()),
            (Kind::LeftDelim, "{{".into()),
            (Kind::Field, ".x".into()),
            (Kind::Field, ".y".into()),
            (Kind::Space, " ".into()),
            (Kind::Pipe, "|".into()),
            (Kind::Space, " ".into()),
            (Kind::Identifier, "printf".into()),
            (Kind::Space, " ".into()),
            (Kind::String, "\"%d\"".into()),
            (Kind::Space, " ".into()),
            (Kind::Number, "3".into()),
            (Kind::RightDelim, "}}".into()),
            (Kind::Text, "b".into()),
            (Kind::Eof, String::new()),
        ];
        assert_eq!(toks, want);
    }

    #[test]
    fn comments_and_errors() {
        assert_eq!(
            kinds("x {{- /* c */ -}} y"),
            vec![
                (Kind::Text, "x".into()),
                (Kind::Text, "y".into()),
                (Kind::Eof, String::new())
            ]
        );
        let last = |s: &str| lex(s).pop().map(|t| t.val).unwrap_or_default();
        assert_eq!(last("{{/* x"), "unclosed comment");
        assert_eq!(
            last("{{/* x */ }}"),
            "comment ends before closing delimiter"
        );
        assert_eq!(last("{{ .x "), "unclosed action");
        assert_eq!(last("{{ \"abc }}"), "unterminated quoted string");
        assert_eq!(last("{{ (x }}"), "unclosed left paren");
        assert_eq!(last("{{ 3k }}"), "bad number syntax: \"3k\"");
        assert_eq!(last("{{ .a= }}"), "bad character U+003D '='");
    }

    #[test]
    fn lines_are_counted() {
        let toks = lex("a\n{{ .x\n .y }}\n{{ z }}");
        let lines: Vec<usize> = toks.iter().map(|t| t.line).collect();
        // a\n, {{, space, .x, space(with \n), .y, space, }}, \n text, {{, space, z, space, }}, EOF
        assert_eq!(lines, vec![1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4]);
    }
}
