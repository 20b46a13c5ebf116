//! DynamoDB's expression language: conditions, key conditions, projections and updates.
//!
//! An expression is parsed once ([`parse_condition`], [`parse_update`], [`parse_projection`],
//! with its `#name` and `:value` placeholders bound from [`Bindings`]) into a typed tree that
//! every backend understands: the local KV evaluates it ([`Cond::holds`], [`Update::apply`])
//! inside the write transaction, the AWS backend writes it back out as an expression
//! ([`Render`]) for DynamoDB to evaluate. So an expression means the same on both, and the
//! local AWS-compatible endpoint accepts exactly the expressions DynamoDB does: bare reserved
//! words, undefined or unused placeholders and overlapping update paths are refused with
//! DynamoDB's messages.
//!
//! Limits (DynamoDB's): an expression is at most 4 KiB; parentheses nest at most
//! [`MAX_NESTING`] deep (a bound of ours, so a hostile expression cannot exhaust the stack).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::OnceLock;

use super::{Item, Value};

/// The longest expression, in bytes (DynamoDB's limit).
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// How deeply parentheses and functions may nest in a condition.
pub const MAX_NESTING: usize = 64;

/// Why an expression was refused or could not be applied, in DynamoDB's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExprError {}

type Res<T> = std::result::Result<T, ExprError>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(ExprError(msg.into()))
}

/// One step of a document path: an attribute (or map key) or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// A map key; the first step of a path is always one (a top-level attribute).
    Attr(String),
    /// A list element.
    Index(usize),
}

/// A document path: `a.b[2].c`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(pub Vec<Step>);

impl Path {
    /// The path of a top-level attribute.
    pub fn attr(name: impl Into<String>) -> Self {
        Path(vec![Step::Attr(name.into())])
    }

    /// The top-level attribute it starts at.
    pub fn top(&self) -> &str {
        match self.0.first() {
            Some(Step::Attr(a)) => a,
            _ => "",
        }
    }

    /// The value at this path in `item`, if there is one.
    pub fn get<'a>(&self, item: &'a Item) -> Option<&'a Value> {
        let mut steps = self.0.iter();
        let mut at = match steps.next()? {
            Step::Attr(a) => item.get(a)?,
            Step::Index(_) => return None,
        };
        for step in steps {
            at = match (step, at) {
                (Step::Attr(a), Value::Map(m)) => m.get(a)?,
                (Step::Index(i), Value::List(l)) => l.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// Whether one path is the other or inside it (DynamoDB refuses such pairs in one update).
    fn overlaps(&self, other: &Path) -> bool {
        let n = self.0.len().min(other.0.len());
        self.0[..n] == other.0[..n]
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Attr(a) if i == 0 => f.write_str(a)?,
                Step::Attr(a) => write!(f, ".{a}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A value in a condition: an attribute, a literal or `size(path)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// The value at a path (absent if the item has none there).
    Path(Path),
    /// A literal (an `:value` placeholder's value).
    Value(Value),
    /// `size(path)`: a string's or binary's length, a list's or map's element count.
    Size(Path),
}

impl Operand {
    fn eval(&self, item: &Item) -> Option<Value> {
        match self {
            Operand::Path(p) => p.get(item).cloned(),
            Operand::Value(v) => Some(v.clone()),
            Operand::Size(p) => {
                let n = match p.get(item)? {
                    Value::Str(s) => s.len(),
                    Value::Bytes(b) => b.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    _ => return None,
                };
                Some(Value::Int(n as i64))
            }
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "<>",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// An attribute's type as `attribute_type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// `S`
    Str,
    /// `N`
    Number,
    /// `B`
    Bytes,
    /// `BOOL`
    Bool,
    /// `NULL`
    Null,
    /// `L`
    List,
    /// `M`
    Map,
    /// `SS`, `NS` or `BS`: sets, which this KV does not store (so never matched).
    Set(&'static str),
}

impl AttrType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "S" => AttrType::Str,
            "N" => AttrType::Number,
            "B" => AttrType::Bytes,
            "BOOL" => AttrType::Bool,
            "NULL" => AttrType::Null,
            "L" => AttrType::List,
            "M" => AttrType::Map,
            "SS" => AttrType::Set("SS"),
            "NS" => AttrType::Set("NS"),
            "BS" => AttrType::Set("BS"),
            _ => return None,
        })
    }

    /// The name DynamoDB gives the type.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Str => "S",
            AttrType::Number => "N",
            AttrType::Bytes => "B",
            AttrType::Bool => "BOOL",
            AttrType::Null => "NULL",
            AttrType::List => "L",
            AttrType::Map => "M",
            AttrType::Set(s) => s,
        }
    }

    fn of(v: &Value) -> Self {
        match v {
            Value::Null => AttrType::Null,
            Value::Bool(_) => AttrType::Bool,
            Value::Int(_) | Value::Float(_) => AttrType::Number,
            Value::Str(_) => AttrType::Str,
            Value::Bytes(_) => AttrType::Bytes,
            Value::List(_) => AttrType::List,
            Value::Map(_) => AttrType::Map,
        }
    }
}

/// A condition on an item (ConditionExpression, FilterExpression, KeyConditionExpression).
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// `a = b`, `a < b`, ...
    Compare(Operand, Cmp, Operand),
    /// `a BETWEEN lo AND hi` (both inclusive).
    Between(Operand, Operand, Operand),
    /// `a IN (b, c, ...)`.
    In(Operand, Vec<Operand>),
    /// `attribute_exists(path)`.
    Exists(Path),
    /// `attribute_not_exists(path)`.
    NotExists(Path),
    /// `attribute_type(path, :t)`.
    Type(Path, AttrType),
    /// `begins_with(path, :prefix)`.
    BeginsWith(Path, Operand),
    /// `contains(path, :v)`: a substring of a string, an element of a list.
    Contains(Path, Operand),
    /// Every one holds.
    And(Vec<Cond>),
    /// At least one holds.
    Or(Vec<Cond>),
    /// It does not hold.
    Not(Box<Cond>),
}

/// Two values equal as DynamoDB compares them (numbers by value: `1` equals `1.0`).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            a.key_cmp(b) == Some(Ordering::Equal)
        }
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// Orders two values of the same scalar type (numbers, strings, binary); `None` otherwise.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    a.key_cmp(b)
}

impl Cond {
    /// Whether the condition holds for `item` (`None`: there is no item, so only
    /// `attribute_not_exists` and `<>` can hold).
    pub fn holds(&self, item: Option<&Item>) -> bool {
        static EMPTY: OnceLock<Item> = OnceLock::new();
        self.eval(item.unwrap_or_else(|| EMPTY.get_or_init(Item::new)))
    }

    fn eval(&self, item: &Item) -> bool {
        match self {
            Cond::Compare(a, cmp, b) => {
                let (a, b) = (a.eval(item), b.eval(item));
                match (cmp, a, b) {
                    (Cmp::Eq, Some(a), Some(b)) => same(&a, &b),
                    // An absent attribute is not equal to any value.
                    (Cmp::Ne, Some(a), Some(b)) => !same(&a, &b),
                    (Cmp::Ne, _, _) => true,
                    (cmp, Some(a), Some(b)) => matches!(
                        (cmp, order(&a, &b)),
                        (Cmp::Lt, Some(Ordering::Less))
                            | (Cmp::Le, Some(Ordering::Less | Ordering::Equal))
                            | (Cmp::Gt, Some(Ordering::Greater))
                            | (Cmp::Ge, Some(Ordering::Greater | Ordering::Equal))
                    ),
                    _ => false,
                }
            }
            Cond::Between(a, lo, hi) => match (a.eval(item), lo.eval(item), hi.eval(item)) {
                (Some(a), Some(lo), Some(hi)) => {
                    matches!(order(&a, &lo), Some(Ordering::Greater | Ordering::Equal))
                        && matches!(order(&a, &hi), Some(Ordering::Less | Ordering::Equal))
                }
                _ => false,
            },
            Cond::In(a, list) => match a.eval(item) {
                Some(a) => list
                    .iter()
                    .any(|b| b.eval(item).is_some_and(|b| same(&a, &b))),
                None => false,
            },
            Cond::Exists(p) => p.get(item).is_some(),
            Cond::NotExists(p) => p.get(item).is_none(),
            Cond::Type(p, t) => p.get(item).is_some_and(|v| AttrType::of(v) == *t),
            Cond::BeginsWith(p, prefix) => match (p.get(item), prefix.eval(item)) {
                (Some(Value::Str(s)), Some(Value::Str(x))) => s.starts_with(x.as_str()),
                (Some(Value::Bytes(s)), Some(Value::Bytes(x))) => s.starts_with(&x),
                _ => false,
            },
            Cond::Contains(p, needle) => match (p.get(item), needle.eval(item)) {
                (Some(Value::Str(s)), Some(Value::Str(x))) => s.contains(x.as_str()),
                (Some(Value::List(l)), Some(x)) => l.iter().any(|v| same(v, &x)),
                _ => false,
            },
            Cond::And(all) => all.iter().all(|c| c.eval(item)),
            Cond::Or(any) => any.iter().any(|c| c.eval(item)),
            Cond::Not(c) => !c.eval(item),
        }
    }

    /// Every literal value in the condition (to check them as written values).
    pub fn values(&self) -> Vec<&Value> {
        fn push<'a>(o: &'a Operand, out: &mut Vec<&'a Value>) {
            if let Operand::Value(v) = o {
                out.push(v);
            }
        }
        let mut out = Vec::new();
        let mut todo = vec![self];
        while let Some(c) = todo.pop() {
            match c {
                Cond::Compare(a, _, b) => {
                    push(a, &mut out);
                    push(b, &mut out);
                }
                Cond::Between(a, b, d) => {
                    push(a, &mut out);
                    push(b, &mut out);
                    push(d, &mut out);
                }
                Cond::In(a, l) => {
                    push(a, &mut out);
                    l.iter().for_each(|o| push(o, &mut out));
                }
                Cond::BeginsWith(_, o) | Cond::Contains(_, o) => push(o, &mut out),
                Cond::Exists(_) | Cond::NotExists(_) | Cond::Type(..) => {}
                Cond::And(l) | Cond::Or(l) => todo.extend(l),
                Cond::Not(c) => todo.push(c),
            }
        }
        out
    }
}

/// The right-hand side of a `SET` action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    /// An attribute's current value.
    Path(Path),
    /// A literal.
    Value(Value),
    /// `a + b` (numbers).
    Plus(Box<SetValue>, Box<SetValue>),
    /// `a - b` (numbers).
    Minus(Box<SetValue>, Box<SetValue>),
    /// `if_not_exists(path, v)`: the path's value if it has one, else `v`.
    IfNotExists(Path, Box<SetValue>),
    /// `list_append(a, b)`: the elements of list `a`, then of list `b`.
    ListAppend(Box<SetValue>, Box<SetValue>),
}

/// One action of an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `SET path = value`.
    Set(Path, SetValue),
    /// `REMOVE path`.
    Remove(Path),
    /// `ADD path :n`: adds a number (an absent attribute counts as 0).
    Add(Path, Value),
}

/// An UpdateExpression: actions applied to one item, all reading the item as it was before.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Update {
    /// The actions, in the order written.
    pub actions: Vec<Action>,
}

impl Update {
    /// `SET path = value`.
    pub fn set(mut self, path: Path, value: impl Into<Value>) -> Self {
        self.actions
            .push(Action::Set(path, SetValue::Value(value.into())));
        self
    }

    /// `ADD path :n`.
    pub fn add(mut self, path: Path, n: impl Into<Value>) -> Self {
        self.actions.push(Action::Add(path, n.into()));
        self
    }

    /// `REMOVE path`.
    pub fn remove(mut self, path: Path) -> Self {
        self.actions.push(Action::Remove(path));
        self
    }

    /// The paths the update writes.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.actions.iter().map(|a| match a {
            Action::Set(p, _) | Action::Remove(p) | Action::Add(p, _) => p,
        })
    }

    /// Every literal value in the update.
    pub fn values(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        let mut todo: Vec<&SetValue> = Vec::new();
        for a in &self.actions {
            match a {
                Action::Set(_, v) => todo.push(v),
                Action::Add(_, v) => out.push(v),
                Action::Remove(_) => {}
            }
        }
        while let Some(v) = todo.pop() {
            match v {
                SetValue::Value(v) => out.push(v),
                SetValue::Path(_) => {}
                SetValue::Plus(a, b) | SetValue::Minus(a, b) | SetValue::ListAppend(a, b) => {
                    todo.push(a);
                    todo.push(b);
                }
                SetValue::IfNotExists(_, v) => todo.push(v),
            }
        }
        out
    }

    /// Checks what DynamoDB checks before it reads the item: no two actions on overlapping
    /// paths and no action on a key attribute.
    pub fn check(&self, key_attrs: &[&str]) -> Res<()> {
        let paths: Vec<&Path> = self.paths().collect();
        if paths.is_empty() {
            return fail("Invalid UpdateExpression: the expression has no actions");
        }
        for (i, a) in paths.iter().enumerate() {
            if key_attrs.contains(&a.top()) {
                return fail(format!(
                    "One or more parameter values were invalid: Cannot update attribute {}. \
                     This attribute is part of the key",
                    a.top()
                ));
            }
            if let Some(b) = paths[i + 1..].iter().find(|b| a.overlaps(b)) {
                return fail(format!(
                    "Invalid UpdateExpression: Two document paths overlap with each other; \
                     must remove or rewrite one of these paths; path one: [{a}], path two: [{b}]"
                ));
            }
        }
        Ok(())
    }

    /// Applies the actions to `item` (the stored item, or just its key for a new one).
    pub fn apply(&self, item: &mut Item) -> Res<()> {
        let before = item.clone();
        for action in &self.actions {
            match action {
                Action::Set(path, v) => {
                    let v = eval_set(v, &before)?;
                    assign(item, path, v)?;
                }
                Action::Remove(path) => remove(item, path),
                Action::Add(path, n) => {
                    let sum = match path.get(&before) {
                        None => n.clone(),
                        Some(old) => add_numbers(old, n, "ADD")?,
                    };
                    if !matches!(n, Value::Int(_) | Value::Float(_)) {
                        return fail(format!(
                            "Invalid UpdateExpression: Incorrect operand type for operator or \
                             function; operator: ADD, operand type: {} (sets are not supported \
                             here; ADD takes a number)",
                            AttrType::of(n).name()
                        ));
                    }
                    assign(item, path, sum)?;
                }
            }
        }
        Ok(())
    }
}

fn eval_set(v: &SetValue, item: &Item) -> Res<Value> {
    Ok(match v {
        SetValue::Value(v) => v.clone(),
        SetValue::Path(p) => match p.get(item) {
            Some(v) => v.clone(),
            None => {
                return fail(format!(
                    "The provided expression refers to an attribute that does not exist in the \
                     item: {p}"
                ));
            }
        },
        SetValue::Plus(a, b) => add_numbers(&eval_set(a, item)?, &eval_set(b, item)?, "+")?,
        SetValue::Minus(a, b) => {
            let b = eval_set(b, item)?;
            let negated = match b {
                Value::Int(i) => match i.checked_neg() {
                    Some(n) => Value::Int(n),
                    None => Value::Float(-(i as f64)),
                },
                Value::Float(f) => Value::Float(-f),
                other => other,
            };
            add_numbers(&eval_set(a, item)?, &negated, "-")?
        }
        SetValue::IfNotExists(p, v) => match p.get(item) {
            Some(v) => v.clone(),
            None => eval_set(v, item)?,
        },
        SetValue::ListAppend(a, b) => match (eval_set(a, item)?, eval_set(b, item)?) {
            (Value::List(mut a), Value::List(b)) => {
                a.extend(b);
                Value::List(a)
            }
            (a, b) => {
                let bad = if matches!(a, Value::List(_)) { b } else { a };
                return fail(format!(
                    "Invalid UpdateExpression: Incorrect operand type for operator or function; \
                     operator or function: list_append, operand type: {}",
                    AttrType::of(&bad).name()
                ));
            }
        },
    })
}

fn add_numbers(a: &Value, b: &Value, op: &str) -> Res<Value> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(match x.checked_add(*y) {
            Some(n) => Value::Int(n),
            None => Value::Float(*x as f64 + *y as f64),
        }),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let f = |v: &Value| match v {
                Value::Int(i) => *i as f64,
                Value::Float(f) => *f,
                _ => 0.0,
            };
            Ok(Value::Float(f(a) + f(b)))
        }
        _ => {
            let bad = if matches!(a, Value::Int(_) | Value::Float(_)) {
                b
            } else {
                a
            };
            fail(format!(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; \
                 operator: {op}, operand type: {}",
                AttrType::of(bad).name()
            ))
        }
    }
}

/// Writes `v` at `path`; the path's parent must exist (a map, or a list for an index, where
/// an index past the end appends).
fn assign(item: &mut Item, path: &Path, v: Value) -> Res<()> {
    let invalid = || {
        ExprError(format!(
            "The document path provided in the update expression is invalid for update: {path}"
        ))
    };
    let (last, parents) = path.0.split_last().ok_or_else(invalid)?;
    let (first, rest) = match parents.split_first() {
        None => {
            return match last {
                Step::Attr(a) => {
                    item.insert(a.clone(), v);
                    Ok(())
                }
                Step::Index(_) => Err(invalid()),
            };
        }
        Some((Step::Attr(a), rest)) => (item.get_mut(a).ok_or_else(invalid)?, rest),
        Some(_) => return Err(invalid()),
    };
    let mut at = first;
    for step in rest {
        at = match (step, at) {
            (Step::Attr(a), Value::Map(m)) => m.get_mut(a).ok_or_else(invalid)?,
            (Step::Index(i), Value::List(l)) => l.get_mut(*i).ok_or_else(invalid)?,
            _ => return Err(invalid()),
        };
    }
    match (last, at) {
        (Step::Attr(a), Value::Map(m)) => {
            m.insert(a.clone(), v);
        }
        (Step::Index(i), Value::List(l)) => {
            if *i < l.len() {
                l[*i] = v;
            } else {
                l.push(v);
            }
        }
        _ => return Err(invalid()),
    }
    Ok(())
}

/// Removes what is at `path`, if anything (a list element's successors move up).
fn remove(item: &mut Item, path: &Path) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let Some((first, rest)) = parents.split_first() else {
        if let Step::Attr(a) = last {
            item.remove(a);
        }
        return;
    };
    let Step::Attr(first) = first else { return };
    let Some(mut at) = item.get_mut(first) else {
        return;
    };
    for step in rest {
        at = match (step, at) {
            (Step::Attr(a), Value::Map(m)) => match m.get_mut(a) {
                Some(v) => v,
                None => return,
            },
            (Step::Index(i), Value::List(l)) => match l.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match (last, at) {
        (Step::Attr(a), Value::Map(m)) => {
            m.remove(a);
        }
        (Step::Index(i), Value::List(l)) if *i < l.len() => {
            l.remove(*i);
        }
        _ => {}
    }
}

/// Keeps only the attributes at `paths` (ProjectionExpression); nested paths keep their
/// enclosing maps and lists, holding only what was asked for (list elements in order).
pub fn project(item: &Item, paths: &[Path]) -> Item {
    let mut out = Item::new();
    for p in paths {
        let Some(v) = p.get(item) else { continue };
        let Some((Step::Attr(top), rest)) = p.0.split_first() else {
            continue;
        };
        if rest.is_empty() {
            out.insert(top.clone(), v.clone());
            continue;
        }
        let slot = out
            .entry(top.clone())
            .or_insert_with(|| empty_like(item.get(top)));
        let mut at = slot;
        let mut src = item.get(top);
        for (i, step) in rest.iter().enumerate() {
            let last = i + 1 == rest.len();
            src = match (step, src) {
                (Step::Attr(a), Some(Value::Map(m))) => m.get(a),
                (Step::Index(n), Some(Value::List(l))) => l.get(*n),
                _ => None,
            };
            let child = if last {
                src.cloned().unwrap_or(Value::Null)
            } else {
                empty_like(src)
            };
            at = match (step, at) {
                (Step::Attr(a), Value::Map(m)) => m.entry(a.clone()).or_insert(child),
                (Step::Index(_), Value::List(l)) => {
                    l.push(child);
                    match l.last_mut() {
                        Some(v) => v,
                        None => break,
                    }
                }
                _ => break,
            };
        }
    }
    out
}

fn empty_like(v: Option<&Value>) -> Value {
    match v {
        Some(Value::List(_)) => Value::List(Vec::new()),
        _ => Value::Map(BTreeMap::new()),
    }
}

/// The placeholders an expression's request gives: `ExpressionAttributeNames` and
/// `ExpressionAttributeValues`, and which of them the parsed expressions used (DynamoDB
/// refuses unused ones).
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    names: BTreeMap<String, String>,
    values: BTreeMap<String, Value>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

impl Bindings {
    /// Placeholders `#name → attribute name` and `:value → value`.
    pub fn new(names: BTreeMap<String, String>, values: BTreeMap<String, Value>) -> Self {
        Bindings {
            names,
            values,
            ..Bindings::default()
        }
    }

    /// Refuses placeholders that no expression used, as DynamoDB does.
    pub fn check_all_used(&self) -> Res<()> {
        let unused = |all: Vec<&String>, used: &BTreeSet<String>| -> Vec<String> {
            all.into_iter()
                .filter(|k| !used.contains(*k))
                .cloned()
                .collect()
        };
        let names = unused(self.names.keys().collect(), &self.used_names);
        if !names.is_empty() {
            return fail(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            ));
        }
        let values = unused(self.values.keys().collect(), &self.used_values);
        if !values.is_empty() {
            return fail(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            ));
        }
        Ok(())
    }

    fn name(&mut self, ph: &str) -> Res<String> {
        match self.names.get(ph) {
            Some(n) => {
                self.used_names.insert(ph.to_owned());
                Ok(n.clone())
            }
            None => fail(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: An expression \
                 attribute name used in the document path is not defined; attribute name: {ph}"
            )),
        }
    }

    fn value(&mut self, ph: &str) -> Res<Value> {
        match self.values.get(ph) {
            Some(v) => {
                self.used_values.insert(ph.to_owned());
                Ok(v.clone())
            }
            None => fail(format!(
                "An expression attribute value used in expression is not defined; attribute \
                 value: {ph}"
            )),
        }
    }
}

fn reserved() -> &'static HashSet<&'static str> {
    static WORDS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| include_str!("reserved_words.txt").lines().collect())
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Name(String),
    Val(String),
    Num(usize),
    Sym(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) | Tok::Name(s) | Tok::Val(s) => f.write_str(s),
            Tok::Num(n) => write!(f, "{n}"),
            Tok::Sym(s) => f.write_str(s),
        }
    }
}

fn lex(kind: &str, src: &str) -> Res<Vec<Tok>> {
    if src.len() > MAX_EXPRESSION_LEN {
        return fail(format!(
            "Invalid {kind}: Expression size has exceeded the maximum allowed size; \
             expression size: {}, maximum: {MAX_EXPRESSION_LEN}",
            src.len()
        ));
    }
    if src.trim().is_empty() {
        return fail(format!("Invalid {kind}: The expression can not be empty;"));
    }
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let two = src.get(i..i + 2);
        let sym = match two {
            Some("<=") => Some("<="),
            Some(">=") => Some(">="),
            Some("<>") => Some("<>"),
            _ => None,
        };
        if let Some(s) = sym {
            out.push(Tok::Sym(s));
            i += 2;
            continue;
        }
        let one = match c {
            b'=' => Some("="),
            b'<' => Some("<"),
            b'>' => Some(">"),
            b'(' => Some("("),
            b')' => Some(")"),
            b'[' => Some("["),
            b']' => Some("]"),
            b',' => Some(","),
            b'.' => Some("."),
            b'+' => Some("+"),
            b'-' => Some("-"),
            _ => None,
        };
        if let Some(s) = one {
            out.push(Tok::Sym(s));
            i += 1;
            continue;
        }
        if c == b'#' || c == b':' {
            let j = word(i + 1);
            if j == i + 1 {
                return fail(format!(
                    "Invalid {kind}: Syntax error; token: \"{}\", near: \"{}\"",
                    c as char,
                    near(src, i)
                ));
            }
            let text = src[i..j].to_owned();
            out.push(if c == b'#' {
                Tok::Name(text)
            } else {
                Tok::Val(text)
            });
            i = j;
            continue;
        }
        if c.is_ascii_digit() {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let n = src[i..j].parse().map_err(|_| {
                ExprError(format!(
                    "Invalid {kind}: a list index is too large: {}",
                    &src[i..j]
                ))
            })?;
            out.push(Tok::Num(n));
            i = j;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let j = word(i);
            out.push(Tok::Ident(src[i..j].to_owned()));
            i = j;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('?');
        return fail(format!(
            "Invalid {kind}: Invalid token: token: \"{ch}\", near: \"{}\"",
            near(src, i)
        ));
    }
    Ok(out)
}

fn near(src: &str, i: usize) -> String {
    let start = (0..=i.saturating_sub(8))
        .rev()
        .find(|s| src.is_char_boundary(*s))
        .unwrap_or(0);
    let end = (i + 8..=src.len())
        .find(|e| src.is_char_boundary(*e))
        .unwrap_or(src.len());
    src[start..end].to_owned()
}

struct Parser<'b> {
    kind: &'static str,
    toks: Vec<Tok>,
    at: usize,
    depth: usize,
    bind: &'b mut Bindings,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn syntax<T>(&self) -> Res<T> {
        match self.toks.get(self.at) {
            Some(t) => fail(format!(
                "Invalid {}: Syntax error; token: \"{t}\"",
                self.kind
            )),
            None => fail(format!(
                "Invalid {}: Syntax error; token: <EOF>, near: the end of the expression",
                self.kind
            )),
        }
    }

    fn expect(&mut self, s: &str) -> Res<()> {
        if self.is_sym(s) {
            self.at += 1;
            Ok(())
        } else {
            self.syntax()
        }
    }

    fn deeper(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return fail(format!(
                "Invalid {}: the expression nests more than {MAX_NESTING} levels deep",
                self.kind
            ));
        }
        Ok(())
    }

    fn path(&mut self) -> Res<Path> {
        let mut steps = vec![Step::Attr(self.path_name()?)];
        loop {
            if self.is_sym(".") {
                self.at += 1;
                steps.push(Step::Attr(self.path_name()?));
            } else if self.is_sym("[") {
                self.at += 1;
                match self.next() {
                    Some(Tok::Num(n)) => steps.push(Step::Index(n)),
                    _ => {
                        self.at -= 1;
                        return self.syntax();
                    }
                }
                self.expect("]")?;
            } else {
                return Ok(Path(steps));
            }
        }
    }

    fn path_name(&mut self) -> Res<String> {
        match self.next() {
            Some(Tok::Name(ph)) => self.bind.name(&ph),
            Some(Tok::Ident(w)) => {
                if reserved().contains(w.to_ascii_uppercase().as_str()) {
                    return fail(format!(
                        "Invalid {}: Attribute name is a reserved keyword; reserved keyword: {w}",
                        self.kind
                    ));
                }
                Ok(w)
            }
            _ => {
                self.at -= 1;
                self.syntax()
            }
        }
    }

    fn function_name(&self) -> Option<String> {
        match (self.toks.get(self.at), self.toks.get(self.at + 1)) {
            (Some(Tok::Ident(f)), Some(Tok::Sym("("))) => Some(f.clone()),
            _ => None,
        }
    }

    fn operand(&mut self) -> Res<Operand> {
        if let Some(f) = self.function_name() {
            if f != "size" {
                return fail(format!(
                    "Invalid {}: The function is not allowed to be used this way in an \
                     expression; function: {f}",
                    self.kind
                ));
            }
            self.at += 2;
            let p = self.path()?;
            self.expect(")")?;
            return Ok(Operand::Size(p));
        }
        match self.peek() {
            Some(Tok::Val(ph)) => {
                let ph = ph.clone();
                self.at += 1;
                Ok(Operand::Value(self.bind.value(&ph)?))
            }
            Some(Tok::Ident(_) | Tok::Name(_)) => Ok(Operand::Path(self.path()?)),
            _ => self.syntax(),
        }
    }

    fn or(&mut self) -> Res<Cond> {
        let mut any = vec![self.and()?];
        while self.is_kw("OR") {
            self.at += 1;
            any.push(self.and()?);
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Cond::Or(any)
        })
    }

    fn and(&mut self) -> Res<Cond> {
        let mut all = vec![self.not()?];
        while self.is_kw("AND") {
            self.at += 1;
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Cond::And(all)
        })
    }

    fn not(&mut self) -> Res<Cond> {
        if self.is_kw("NOT") {
            self.at += 1;
            self.deeper()?;
            let c = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(c)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Res<Cond> {
        if self.is_sym("(") {
            self.at += 1;
            self.deeper()?;
            let c = self.or()?;
            self.depth -= 1;
            self.expect(")")?;
            return Ok(c);
        }
        if let Some(f) = self.function_name().filter(|f| f != "size") {
            self.at += 2;
            let c = match f.as_str() {
                "attribute_exists" => Cond::Exists(self.path()?),
                "attribute_not_exists" => Cond::NotExists(self.path()?),
                "attribute_type" => {
                    let p = self.path()?;
                    self.expect(",")?;
                    let t = match self.operand()? {
                        Operand::Value(Value::Str(s)) => AttrType::parse(&s).ok_or_else(|| {
                            ExprError(format!(
                                "Invalid {}: Invalid attribute type name found; type: {s}, \
                                 valid types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}",
                                self.kind
                            ))
                        })?,
                        _ => {
                            return fail(format!(
                                "Invalid {}: Incorrect operand type for operator or function; \
                                 operator or function: attribute_type, operand type: not a \
                                 string",
                                self.kind
                            ));
                        }
                    };
                    Cond::Type(p, t)
                }
                "begins_with" => {
                    let p = self.path()?;
                    self.expect(",")?;
                    Cond::BeginsWith(p, self.operand()?)
                }
                "contains" => {
                    let p = self.path()?;
                    self.expect(",")?;
                    Cond::Contains(p, self.operand()?)
                }
                other => {
                    return fail(format!(
                        "Invalid {}: Invalid function name; function: {other}",
                        self.kind
                    ));
                }
            };
            self.expect(")")?;
            return Ok(c);
        }
        let a = self.operand()?;
        if self.is_kw("BETWEEN") {
            self.at += 1;
            let lo = self.operand()?;
            if !self.is_kw("AND") {
                return self.syntax();
            }
            self.at += 1;
            let hi = self.operand()?;
            return Ok(Cond::Between(a, lo, hi));
        }
        if self.is_kw("IN") {
            self.at += 1;
            self.expect("(")?;
            let mut list = vec![self.operand()?];
            while self.is_sym(",") {
                self.at += 1;
                list.push(self.operand()?);
            }
            self.expect(")")?;
            return Ok(Cond::In(a, list));
        }
        let cmp = match self.next() {
            Some(Tok::Sym("=")) => Cmp::Eq,
            Some(Tok::Sym("<>")) => Cmp::Ne,
            Some(Tok::Sym("<")) => Cmp::Lt,
            Some(Tok::Sym("<=")) => Cmp::Le,
            Some(Tok::Sym(">")) => Cmp::Gt,
            Some(Tok::Sym(">=")) => Cmp::Ge,
            _ => {
                self.at -= 1;
                return self.syntax();
            }
        };
        let b = self.operand()?;
        Ok(Cond::Compare(a, cmp, b))
    }

    fn set_value(&mut self) -> Res<SetValue> {
        let a = self.set_operand()?;
        if self.is_sym("+") || self.is_sym("-") {
            let plus = self.is_sym("+");
            self.at += 1;
            let b = Box::new(self.set_operand()?);
            return Ok(if plus {
                SetValue::Plus(Box::new(a), b)
            } else {
                SetValue::Minus(Box::new(a), b)
            });
        }
        Ok(a)
    }

    fn set_operand(&mut self) -> Res<SetValue> {
        if let Some(f) = self.function_name() {
            self.at += 2;
            self.deeper()?;
            let v = match f.as_str() {
                "if_not_exists" => {
                    let p = self.path()?;
                    self.expect(",")?;
                    SetValue::IfNotExists(p, Box::new(self.set_value()?))
                }
                "list_append" => {
                    let a = self.set_value()?;
                    self.expect(",")?;
                    SetValue::ListAppend(Box::new(a), Box::new(self.set_value()?))
                }
                other => {
                    return fail(format!(
                        "Invalid {}: Invalid function name; function: {other}",
                        self.kind
                    ));
                }
            };
            self.depth -= 1;
            self.expect(")")?;
            return Ok(v);
        }
        match self.peek() {
            Some(Tok::Val(ph)) => {
                let ph = ph.clone();
                self.at += 1;
                Ok(SetValue::Value(self.bind.value(&ph)?))
            }
            Some(Tok::Ident(_) | Tok::Name(_)) => Ok(SetValue::Path(self.path()?)),
            _ => self.syntax(),
        }
    }

    fn value_placeholder(&mut self) -> Res<Value> {
        match self.next() {
            Some(Tok::Val(ph)) => self.bind.value(&ph),
            _ => {
                self.at -= 1;
                self.syntax()
            }
        }
    }

    fn update(&mut self) -> Res<Update> {
        let mut seen = BTreeSet::new();
        let mut actions = Vec::new();
        while let Some(tok) = self.next() {
            let Tok::Ident(clause) = tok else {
                self.at -= 1;
                return self.syntax();
            };
            let clause = clause.to_ascii_uppercase();
            if !matches!(clause.as_str(), "SET" | "REMOVE" | "ADD" | "DELETE") {
                self.at -= 1;
                return self.syntax();
            }
            if !seen.insert(clause.clone()) {
                return fail(format!(
                    "Invalid UpdateExpression: The \"{clause}\" section can only be used once \
                     in an update expression;"
                ));
            }
            loop {
                let path = self.path()?;
                actions.push(match clause.as_str() {
                    "SET" => {
                        self.expect("=")?;
                        Action::Set(path, self.set_value()?)
                    }
                    "REMOVE" => Action::Remove(path),
                    "ADD" => Action::Add(path, self.value_placeholder()?),
                    _ => {
                        return fail(
                            "Invalid UpdateExpression: DELETE removes elements from a set, and \
                             sets (SS, NS, BS) are not supported by this KV",
                        );
                    }
                });
                if self.is_sym(",") {
                    self.at += 1;
                } else {
                    break;
                }
            }
        }
        Ok(Update { actions })
    }

    fn done(&self) -> Res<()> {
        if self.at < self.toks.len() {
            return self.syntax();
        }
        Ok(())
    }
}

fn parser<'b>(kind: &'static str, src: &str, bind: &'b mut Bindings) -> Res<Parser<'b>> {
    Ok(Parser {
        kind,
        toks: lex(kind, src)?,
        at: 0,
        depth: 0,
        bind,
    })
}

/// Parses a ConditionExpression, FilterExpression or KeyConditionExpression (`kind` names
/// it in errors).
pub fn parse_condition(kind: &'static str, src: &str, bind: &mut Bindings) -> Res<Cond> {
    let mut p = parser(kind, src, bind)?;
    let c = p.or()?;
    p.done()?;
    Ok(c)
}

/// Parses an UpdateExpression.
pub fn parse_update(src: &str, bind: &mut Bindings) -> Res<Update> {
    let mut p = parser("UpdateExpression", src, bind)?;
    let u = p.update()?;
    p.done()?;
    Ok(u)
}

/// Parses a ProjectionExpression: paths separated by commas.
pub fn parse_projection(src: &str, bind: &mut Bindings) -> Res<Vec<Path>> {
    let mut p = parser("ProjectionExpression", src, bind)?;
    let mut paths = vec![p.path()?];
    while p.is_sym(",") {
        p.at += 1;
        paths.push(p.path()?);
    }
    p.done()?;
    for (i, a) in paths.iter().enumerate() {
        if let Some(b) = paths[i + 1..].iter().find(|b| a.overlaps(b)) {
            return fail(format!(
                "Invalid ProjectionExpression: Two document paths overlap with each other; \
                 must remove or rewrite one of these paths; path one: [{a}], path two: [{b}]"
            ));
        }
    }
    Ok(paths)
}

/// Writes typed expressions back out as DynamoDB expression text, every attribute name and
/// value through a placeholder (so no name can clash with a reserved word).
#[derive(Debug, Default)]
pub struct Render {
    /// `#nK → attribute name`.
    pub names: BTreeMap<String, String>,
    /// `:vK → value`.
    pub values: BTreeMap<String, Value>,
    by_name: BTreeMap<String, String>,
}

impl Render {
    fn name(&mut self, n: &str) -> String {
        if let Some(ph) = self.by_name.get(n) {
            return ph.clone();
        }
        let ph = format!("#n{}", self.by_name.len());
        self.by_name.insert(n.to_owned(), ph.clone());
        self.names.insert(ph.clone(), n.to_owned());
        ph
    }

    fn value(&mut self, v: &Value) -> String {
        let ph = format!(":v{}", self.values.len());
        self.values.insert(ph.clone(), v.clone());
        ph
    }

    /// A path.
    pub fn path(&mut self, p: &Path) -> String {
        let mut out = String::new();
        for (i, step) in p.0.iter().enumerate() {
            match step {
                Step::Attr(a) => {
                    if i > 0 {
                        out.push('.');
                    }
                    let ph = self.name(a);
                    out.push_str(&ph);
                }
                Step::Index(n) => out.push_str(&format!("[{n}]")),
            }
        }
        out
    }

    fn operand(&mut self, o: &Operand) -> String {
        match o {
            Operand::Path(p) => self.path(p),
            Operand::Value(v) => self.value(v),
            Operand::Size(p) => format!("size({})", self.path(p)),
        }
    }

    /// A condition.
    pub fn condition(&mut self, c: &Cond) -> String {
        match c {
            Cond::Compare(a, cmp, b) => {
                format!("{} {} {}", self.operand(a), cmp.symbol(), self.operand(b))
            }
            Cond::Between(a, lo, hi) => format!(
                "{} BETWEEN {} AND {}",
                self.operand(a),
                self.operand(lo),
                self.operand(hi)
            ),
            Cond::In(a, l) => {
                let a = self.operand(a);
                let l: Vec<String> = l.iter().map(|o| self.operand(o)).collect();
                format!("{a} IN ({})", l.join(", "))
            }
            Cond::Exists(p) => format!("attribute_exists({})", self.path(p)),
            Cond::NotExists(p) => format!("attribute_not_exists({})", self.path(p)),
            Cond::Type(p, t) => {
                let p = self.path(p);
                let t = self.value(&Value::Str(t.name().to_owned()));
                format!("attribute_type({p}, {t})")
            }
            Cond::BeginsWith(p, o) => {
                format!("begins_with({}, {})", self.path(p), self.operand(o))
            }
            Cond::Contains(p, o) => format!("contains({}, {})", self.path(p), self.operand(o)),
            Cond::And(l) => self.join(l, " AND "),
            Cond::Or(l) => self.join(l, " OR "),
            Cond::Not(c) => format!("NOT ({})", self.condition(c)),
        }
    }

    fn join(&mut self, l: &[Cond], sep: &str) -> String {
        let parts: Vec<String> = l
            .iter()
            .map(|c| format!("({})", self.condition(c)))
            .collect();
        parts.join(sep)
    }

    fn set_value(&mut self, v: &SetValue) -> String {
        match v {
            SetValue::Path(p) => self.path(p),
            SetValue::Value(v) => self.value(v),
            SetValue::Plus(a, b) => format!("{} + {}", self.set_value(a), self.set_value(b)),
            SetValue::Minus(a, b) => format!("{} - {}", self.set_value(a), self.set_value(b)),
            SetValue::IfNotExists(p, v) => {
                format!("if_not_exists({}, {})", self.path(p), self.set_value(v))
            }
            SetValue::ListAppend(a, b) => {
                format!("list_append({}, {})", self.set_value(a), self.set_value(b))
            }
        }
    }

    /// An update.
    pub fn update(&mut self, u: &Update) -> String {
        let (mut set, mut remove, mut add) = (Vec::new(), Vec::new(), Vec::new());
        for a in &u.actions {
            match a {
                Action::Set(p, v) => {
                    let p = self.path(p);
                    let v = self.set_value(v);
                    set.push(format!("{p} = {v}"));
                }
                Action::Remove(p) => remove.push(self.path(p)),
                Action::Add(p, v) => {
                    let p = self.path(p);
                    let v = self.value(v);
                    add.push(format!("{p} {v}"));
                }
            }
        }
        let mut out = Vec::new();
        for (kw, parts) in [("SET", set), ("REMOVE", remove), ("ADD", add)] {
            if !parts.is_empty() {
                out.push(format!("{kw} {}", parts.join(", ")));
            }
        }
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item;

    fn bind(values: &[(&str, Value)]) -> Bindings {
        Bindings::new(
            [("#s", "status"), ("#n", "name")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            values
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn cond(src: &str, values: &[(&str, Value)]) -> Res<Cond> {
        parse_condition("ConditionExpression", src, &mut bind(values))
    }

    #[test]
    fn conditions_evaluate_as_dynamodb_does() {
        let item = item! { "id" => "a", "n" => 5, "tags" => vec![Value::from("x")],
        "status" => "open", "m" => Value::Map([("k".to_owned(), Value::from(1.0))].into()) };
        let check = |src: &str, vals: &[(&str, Value)], want: bool| {
            let c = cond(src, vals).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(c.holds(Some(&item)), want, "{src}");
        };
        check("n = :v", &[(":v", 5.into())], true);
        check("n = :v", &[(":v", 5.0.into())], true);
        check("n <> :v", &[(":v", 4.into())], true);
        check("absent <> :v", &[(":v", 4.into())], true);
        check("absent = :v", &[(":v", 4.into())], false);
        check(
            "n BETWEEN :a AND :b",
            &[(":a", 1.into()), (":b", 5.into())],
            true,
        );
        check("n IN (:a, :b)", &[(":a", 1.into()), (":b", 5.into())], true);
        check(
            "attribute_exists(id) AND NOT attribute_exists(gone)",
            &[],
            true,
        );
        check(
            "#s = :o OR n > :z",
            &[(":o", "shut".into()), (":z", 9.into())],
            false,
        );
        check("begins_with(id, :p)", &[(":p", "a".into())], true);
        check("contains(tags, :t)", &[(":t", "x".into())], true);
        check("size(tags) = :one", &[(":one", 1.into())], true);
        check("m.k = :one", &[(":one", 1.into())], true);
        check("attribute_type(n, :t)", &[(":t", "N".into())], true);
        check("n < :s", &[(":s", "text".into())], false);
        check(
            "(n = :a OR n = :b) AND id = :id",
            &[(":a", 1.into()), (":b", 5.into()), (":id", "a".into())],
            true,
        );
        assert!(cond("attribute_not_exists(id)", &[]).unwrap().holds(None));
    }

    #[test]
    fn bad_expressions_get_dynamodb_messages() {
        let err = |src: &str| cond(src, &[(":v", 1.into())]).unwrap_err().0;
        assert!(err("status = :v").contains("reserved keyword: status"));
        assert!(err("a = :nope").contains("not defined"));
        assert!(err("#nope = :v").contains("not defined"));
        assert!(err("a = ").contains("Syntax error"));
        assert!(err("a = :v)").contains("Syntax error"));
        assert!(err("a ! :v").contains("Invalid token"));
        assert!(err("frob(a)").contains("Invalid function name"));
        let deep = format!("{}a = :v{}", "(".repeat(100), ")".repeat(100));
        assert!(err(&deep).contains("levels deep"));
        let nots = format!("{}a = :v", "NOT ".repeat(1000));
        assert!(err(&nots).contains("levels deep"));
        assert!(err(&"a".repeat(5000)).contains("maximum allowed size"));
        let mut b = bind(&[(":v", 1.into()), (":unused", 2.into())]);
        parse_condition("ConditionExpression", "a = :v AND #s = :v", &mut b).unwrap();
        let unused = b.check_all_used().unwrap_err().0;
        assert!(unused.contains("#n"), "{unused}");
    }

    #[test]
    fn updates_apply_against_the_item_before() {
        let mut b = bind(&[
            (":one", 1.into()),
            (":l", vec![Value::from(3)].into()),
            (":z", 0.into()),
        ]);
        let u = parse_update(
            "SET visits = if_not_exists(visits, :z) + :one, l = list_append(l, :l), m.x = :one \
             REMOVE gone ADD hits :one",
            &mut b,
        )
        .unwrap();
        u.check(&["id"]).unwrap();
        let mut item = item! { "id" => "a", "gone" => true, "l" => vec![Value::from(1), Value::from(2)],
        "m" => Value::Map(BTreeMap::new()) };
        u.apply(&mut item).unwrap();
        assert_eq!(item.get("visits"), Some(&Value::Int(1)));
        assert_eq!(item.get("hits"), Some(&Value::Int(1)));
        assert!(!item.contains_key("gone"));
        assert_eq!(
            item.get("l"),
            Some(&Value::List(vec![
                Value::from(1),
                Value::from(2),
                Value::from(3)
            ]))
        );
        assert_eq!(
            Path(vec![Step::Attr("m".into()), Step::Attr("x".into())]).get(&item),
            Some(&Value::Int(1))
        );

        let mut b = bind(&[(":one", 1.into())]);
        let overlap = parse_update("SET a = :one, a.b = :one", &mut b).unwrap();
        assert!(overlap.check(&["id"]).unwrap_err().0.contains("overlap"));
        let mut b = bind(&[(":one", 1.into())]);
        let key = parse_update("SET id = :one", &mut b).unwrap();
        assert!(
            key.check(&["id"])
                .unwrap_err()
                .0
                .contains("part of the key")
        );
        let mut b = bind(&[(":one", 1.into())]);
        let bad = parse_update("SET a.b = :one", &mut b).unwrap();
        assert!(
            bad.apply(&mut Item::new())
                .unwrap_err()
                .0
                .contains("invalid for update")
        );
        let mut b = bind(&[(":s", "x".into())]);
        let bad = parse_update("ADD n :s", &mut b).unwrap();
        assert!(bad.apply(&mut Item::new()).is_err());
    }

    #[test]
    fn projection_keeps_what_was_asked() {
        let item = item! { "id" => "a", "x" => 1,
        "m" => Value::Map([("k".to_owned(), Value::from(1)), ("j".to_owned(), Value::from(2))].into()) };
        let mut b = bind(&[]);
        let paths = parse_projection("id, m.k", &mut b).unwrap();
        let got = project(&item, &paths);
        assert_eq!(
            got,
            item! { "id" => "a", "m" => Value::Map([("k".to_owned(), Value::from(1))].into()) }
        );
    }

    #[test]
    fn rendering_round_trips_through_the_parser() {
        let c = cond(
            "(#s = :v OR attribute_not_exists(a.b[2])) AND NOT contains(#n, :v) AND size(x) > :v",
            &[(":v", 1.into())],
        )
        .unwrap();
        let mut r = Render::default();
        let text = r.condition(&c);
        let mut b = Bindings::new(r.names.clone(), r.values.clone());
        let back = parse_condition("ConditionExpression", &text, &mut b).unwrap();
        assert_eq!(back, c, "{text}");
        b.check_all_used().unwrap();
    }
}
