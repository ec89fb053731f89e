//! Query text → syntax tree: a lexer that keeps each token's column, and a recursive-descent
//! parser for `OR` < `AND` (implicit) < `NOT` / `-`. The grammar is in the [module docs](super).

use super::text::GlobPiece;
use super::{QueryError, QueryErrorKind};

/// Parentheses and `NOT`s may nest this deep; deeper is an error rather than a stack overflow
/// (queries come from HTTP clients too).
pub(crate) const MAX_DEPTH: usize = 64;

/// A parsed query, before fields are resolved and values compiled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// The empty query.
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Term(Term),
}

/// One term: an optional `field:` and a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    /// The field name as written, and its column.
    pub field: Option<(String, usize)>,
    pub value: Value,
    /// Column of the value's first character.
    pub value_column: usize,
}

/// A term's value as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A bare word, with its unescaped `*` and `?` as wildcards.
    Bare(Vec<GlobPiece>),
    /// `"..."`, escapes resolved.
    Quoted(String),
    /// `/.../`, the pattern with `\/` turned into `/`.
    Regex(String),
    /// `<`, `<=`, `>`, `>=` followed by a bare value (wildcards are not allowed there).
    Compare(Comparison, String),
}

/// A comparison operator of a `field:<=value` term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Equal,
}

impl Comparison {
    pub(crate) fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Less => left < right,
            Comparison::LessOrEqual => left <= right,
            Comparison::Greater => left > right,
            Comparison::GreaterOrEqual => left >= right,
            Comparison::Equal => left == right,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Term(Term),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::And => "'AND'".into(),
            Token::Or => "'OR'".into(),
            Token::Not => "'NOT'".into(),
            Token::Term(_) => "term".into(),
        }
    }
}

/// Parses `text` into a syntax tree.
pub(crate) fn parse(text: &str) -> Result<Expr, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let tokens = Lexer {
        chars: &chars,
        at: 0,
        depth: 0,
        groups: Vec::new(),
    }
    .tokens()?;
    let end_column = chars.len() + 1;
    if tokens.is_empty() {
        return Ok(Expr::All);
    }
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        end_column,
    };
    let expr = parser.or(0)?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some((token, column)) => Err(unexpected(token, *column)),
    }
}

fn unexpected(token: &Token, column: usize) -> QueryError {
    QueryError {
        column,
        kind: QueryErrorKind::Unexpected(token.describe()),
    }
}

struct Lexer<'c> {
    chars: &'c [char],
    at: usize,
    /// Parentheses open here.
    depth: usize,
    /// Open `field:(` groups: the field (and its column) that their bare values belong to, and
    /// the depth their parenthesis opened.
    groups: Vec<(String, usize, usize)>,
}

/// What follows `field:`.
enum FieldValue {
    Value(Value),
    /// `field:(`: the parenthesis is consumed; the values up to its `)` are the field's.
    Group,
}

/// Ends a bare word: whitespace and parentheses (escape them with `\` to search for them).
fn ends_word(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn column(&self) -> usize {
        self.at + 1
    }

    fn error(column: usize, kind: QueryErrorKind) -> QueryError {
        QueryError { column, kind }
    }

    fn tokens(mut self) -> Result<Vec<(Token, usize)>, QueryError> {
        let mut tokens = Vec::new();
        while let Some(c) = self.peek() {
            let column = self.column();
            if c.is_whitespace() {
                self.at += 1;
                continue;
            }
            let token = match c {
                '(' => {
                    self.at += 1;
                    self.depth += 1;
                    Token::Open
                }
                ')' => {
                    self.at += 1;
                    if self.groups.last().is_some_and(|g| g.2 == self.depth) {
                        self.groups.pop();
                    }
                    self.depth = self.depth.saturating_sub(1);
                    Token::Close
                }
                '-' => {
                    self.at += 1;
                    match self.peek() {
                        Some(next) if !next.is_whitespace() && next != ')' => Token::Not,
                        _ => return Err(Self::error(column, QueryErrorKind::LoneMinus)),
                    }
                }
                _ => self.term()?,
            };
            tokens.push((token, column));
        }
        Ok(tokens)
    }

    /// A term, an operator word (`AND`, `OR`, `NOT`), starting at a non-space character.
    fn term(&mut self) -> Result<Token, QueryError> {
        let column = self.column();
        if let Some((name, name_column, _)) = self.groups.last().cloned() {
            // Inside `field:( … )`: operators as anywhere, every other term a value of the field.
            let end = self.chars[self.at..]
                .iter()
                .position(|&c| ends_word(c))
                .map_or(self.chars.len(), |n| self.at + n);
            let word: String = self.chars[self.at..end].iter().collect();
            let operator = match word.as_str() {
                "AND" => Some(Token::And),
                "OR" => Some(Token::Or),
                "NOT" => Some(Token::Not),
                _ => None,
            };
            if let Some(operator) = operator {
                self.at = end;
                return Ok(operator);
            }
            return match self.field_value(&name)? {
                FieldValue::Value(value) => Ok(Token::Term(Term {
                    field: Some((name, name_column)),
                    value,
                    value_column: column,
                })),
                // `tokens` takes a '(' before calling here, so a value never starts with one.
                FieldValue::Group => Err(Self::error(
                    column,
                    QueryErrorKind::Unexpected("'('".into()),
                )),
            };
        }
        match self.peek() {
            Some('"') => {
                let value = Value::Quoted(self.quoted()?);
                return Ok(Token::Term(Term {
                    field: None,
                    value,
                    value_column: column,
                }));
            }
            Some('/') => {
                if let Some(pattern) = self.regex() {
                    return Ok(Token::Term(Term {
                        field: None,
                        value: Value::Regex(pattern),
                        value_column: column,
                    }));
                }
            }
            _ => {}
        }
        // A bare word, or a field name up to the first unescaped ':'.
        let (pieces, escaped, colon) = self.bare(true)?;
        if colon {
            let name = match pieces.as_slice() {
                [GlobPiece::Literal(name)] => name.clone(),
                [] => {
                    return Err(Self::error(
                        column,
                        QueryErrorKind::Unexpected("':'".into()),
                    ));
                }
                _ => return Err(Self::error(column, QueryErrorKind::WildcardInField)),
            };
            let value_column = self.column();
            return Ok(match self.field_value(&name)? {
                FieldValue::Value(value) => Token::Term(Term {
                    field: Some((name, column)),
                    value,
                    value_column,
                }),
                FieldValue::Group => {
                    self.depth += 1;
                    self.groups.push((name, column, self.depth));
                    Token::Open
                }
            });
        }
        if !escaped && let [GlobPiece::Literal(word)] = pieces.as_slice() {
            match word.as_str() {
                "AND" => return Ok(Token::And),
                "OR" => return Ok(Token::Or),
                "NOT" => return Ok(Token::Not),
                _ => {}
            }
        }
        Ok(Token::Term(Term {
            field: None,
            value: Value::Bare(pieces),
            value_column: column,
        }))
    }

    /// The value after `name:`.
    fn field_value(&mut self, name: &str) -> Result<FieldValue, QueryError> {
        let column = self.column();
        let comparison = match (self.peek(), self.chars.get(self.at + 1)) {
            (Some('<'), Some('=')) => Some((Comparison::LessOrEqual, 2)),
            (Some('>'), Some('=')) => Some((Comparison::GreaterOrEqual, 2)),
            (Some('<'), _) => Some((Comparison::Less, 1)),
            (Some('>'), _) => Some((Comparison::Greater, 1)),
            _ => None,
        };
        if let Some((comparison, len)) = comparison {
            self.at += len;
            let operand_column = self.column();
            let operand = match self.peek() {
                Some('"') => self.quoted()?,
                Some(c) if !ends_word(c) => {
                    let (pieces, _, _) = self.bare(false)?;
                    match pieces.as_slice() {
                        [GlobPiece::Literal(text)] => text.clone(),
                        _ => {
                            return Err(Self::error(
                                operand_column,
                                QueryErrorKind::WildcardInComparison,
                            ));
                        }
                    }
                }
                _ => {
                    return Err(Self::error(
                        operand_column,
                        QueryErrorKind::MissingValue(name.to_owned()),
                    ));
                }
            };
            return Ok(FieldValue::Value(Value::Compare(comparison, operand)));
        }
        let value = match self.peek() {
            Some('"') => Value::Quoted(self.quoted()?),
            Some('/') if let Some(pattern) = self.regex() => Value::Regex(pattern),
            Some('(') => {
                self.at += 1;
                return Ok(FieldValue::Group);
            }
            Some(c) if !ends_word(c) => Value::Bare(self.bare(false)?.0),
            _ => {
                return Err(Self::error(
                    column,
                    QueryErrorKind::MissingValue(name.to_owned()),
                ));
            }
        };
        Ok(FieldValue::Value(value))
    }

    /// A bare word up to whitespace, a parenthesis, or (when `stop_at_colon`) the first
    /// unescaped ':', which is consumed. Returns the pieces, whether any `\` escape occurred,
    /// and whether it stopped at a colon.
    fn bare(&mut self, stop_at_colon: bool) -> Result<(Vec<GlobPiece>, bool, bool), QueryError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut escaped = false;
        let mut colon = false;
        while let Some(c) = self.peek() {
            if ends_word(c) {
                break;
            }
            self.at += 1;
            match c {
                '\\' => {
                    let Some(next) = self.peek() else {
                        return Err(Self::error(self.at, QueryErrorKind::TrailingBackslash));
                    };
                    self.at += 1;
                    literal.push(next);
                    escaped = true;
                }
                ':' if stop_at_colon => {
                    colon = true;
                    break;
                }
                '*' | '?' => {
                    if !literal.is_empty() {
                        pieces.push(GlobPiece::Literal(std::mem::take(&mut literal)));
                    }
                    let piece = if c == '*' {
                        GlobPiece::AnyRun
                    } else {
                        GlobPiece::AnyOne
                    };
                    // `**` means the same as `*`.
                    if !(piece == GlobPiece::AnyRun && pieces.last() == Some(&GlobPiece::AnyRun)) {
                        pieces.push(piece);
                    }
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(GlobPiece::Literal(literal));
        }
        Ok((pieces, escaped, colon))
    }

    /// `"..."` starting at the current character; `\x` stands for `x`.
    fn quoted(&mut self) -> Result<String, QueryError> {
        let open = self.column();
        self.at += 1;
        let mut text = String::new();
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                '"' => return Ok(text),
                '\\' => {
                    let Some(next) = self.peek() else { break };
                    self.at += 1;
                    text.push(next);
                }
                _ => text.push(c),
            }
        }
        Err(Self::error(open, QueryErrorKind::UnterminatedQuote))
    }

    /// `/.../` starting at the current character; `\/` stands for `/`, other escapes are the
    /// regex's own. Only a closing `/` followed by a space, `)` or the end makes a regex:
    /// otherwise (`file:/var/log/*`, `/healthz`) nothing is consumed and the caller reads a word.
    fn regex(&mut self) -> Option<String> {
        let mut at = self.at + 1;
        let mut pattern = String::new();
        while let Some(&c) = self.chars.get(at) {
            at += 1;
            match c {
                '/' => {
                    let next = self.chars.get(at);
                    if next.is_some_and(|&n| !n.is_whitespace() && n != ')') {
                        return None;
                    }
                    self.at = at;
                    return Some(pattern);
                }
                '\\' => {
                    let next = *self.chars.get(at)?;
                    at += 1;
                    if next != '/' {
                        pattern.push('\\');
                    }
                    pattern.push(next);
                }
                _ => pattern.push(c),
            }
        }
        None
    }
}

struct Parser<'t> {
    tokens: &'t [(Token, usize)],
    at: usize,
    end_column: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn or(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut items = vec![self.and(depth)?];
        while let Some(Token::Or) = self.peek() {
            self.at += 1;
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let mut items = vec![self.unary(depth)?];
        loop {
            match self.peek() {
                Some(Token::And) => {
                    self.at += 1;
                    items.push(self.unary(depth)?);
                }
                Some(Token::Not | Token::Open | Token::Term(_)) => items.push(self.unary(depth)?),
                _ => break,
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, QueryError> {
        let Some((token, column)) = self.tokens.get(self.at) else {
            return Err(QueryError {
                column: self.end_column,
                kind: QueryErrorKind::UnexpectedEnd,
            });
        };
        let column = *column;
        if depth >= MAX_DEPTH {
            return Err(QueryError {
                column,
                kind: QueryErrorKind::TooDeep,
            });
        }
        match token {
            Token::Not => {
                self.at += 1;
                Ok(Expr::Not(Box::new(self.unary(depth + 1)?)))
            }
            Token::Open => {
                self.at += 1;
                let inner = self.or(depth + 1)?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    Some(_) => {
                        let (token, at) = &self.tokens[self.at];
                        Err(unexpected(token, *at))
                    }
                    None => Err(QueryError {
                        column,
                        kind: QueryErrorKind::Unclosed,
                    }),
                }
            }
            Token::Term(term) => {
                self.at += 1;
                Ok(Expr::Term(term.clone()))
            }
            Token::Close | Token::And | Token::Or => Err(unexpected(token, column)),
        }
    }
}
