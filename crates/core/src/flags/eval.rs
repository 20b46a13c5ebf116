//! Evaluating a flag for a context, as OpenFeature specifies it: value, variant, reason and
//! error code; never a failure the caller has to handle.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value as Json;

use super::bucket::bucket;
use super::{Condition, Flag, FlagType, Operator, Rollout, Serve, semver};

/// What an evaluation is about: the targeting key (a user id, a session) and attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalContext {
    /// The targeting key: what rollouts are sticky on unless they say otherwise.
    pub targeting_key: Option<String>,
    /// Attributes rules compare: country, plan, app version, ...
    pub attributes: BTreeMap<String, Json>,
}

impl EvalContext {
    /// An empty context.
    pub fn new() -> Self {
        EvalContext::default()
    }

    /// A context with targeting key `key`.
    pub fn key(key: impl Into<String>) -> Self {
        EvalContext {
            targeting_key: Some(key.into()),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds attribute `name` = `value`.
    pub fn with(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// The value of `attribute` as a rule sees it (`targeting_key` is the targeting key).
    fn get(&self, attribute: &str) -> Option<Attr<'_>> {
        if attribute == "targeting_key" || attribute == "targetingKey" {
            return self.targeting_key.as_deref().map(Attr::Str);
        }
        self.attributes.get(attribute).map(|v| match v {
            Json::String(s) => Attr::Str(s),
            other => Attr::Json(other),
        })
    }
}

#[derive(Clone, Copy)]
enum Attr<'a> {
    Str(&'a str),
    Json(&'a Json),
}

impl Attr<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Attr::Str(s) => Some(s),
            Attr::Json(_) => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Attr::Json(v) => v.as_f64(),
            Attr::Str(_) => None,
        }
    }

    /// The text a rollout buckets: a string as it is, a number or boolean as JSON writes it.
    fn sticky(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            Attr::Str(s) => Some((*s).into()),
            Attr::Json(v) if v.is_number() || v.is_boolean() => Some(v.to_string().into()),
            Attr::Json(_) => None,
        }
    }

    fn equals(&self, v: &Json) -> bool {
        match (self, v) {
            (Attr::Str(s), Json::String(t)) => s == t,
            (Attr::Json(a), Json::Number(_)) if a.is_number() => a.as_f64() == v.as_f64(),
            (Attr::Json(a), b) => *a == b,
            _ => false,
        }
    }
}

/// Why an evaluation gave its value (OpenFeature's resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The flag has no rules and no rollout: its default variant, for everyone.
    Static,
    /// No rule matched: the default variant.
    Default,
    /// A rule matched and served its variant.
    TargetingMatch,
    /// A rollout put the context in a variant's share.
    Split,
    /// The flag is off: the caller's default.
    Disabled,
    /// Something failed (see the error code): the caller's default.
    Error,
}

impl Reason {
    /// The reason as OpenFeature spells it (`TARGETING_MATCH`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::Default => "DEFAULT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Split => "SPLIT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What failed (OpenFeature's error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The client has not loaded the flags yet (the store could not be read).
    ProviderNotReady,
    /// There is no flag with this key.
    FlagNotFound,
    /// The stored flag does not parse, or is not a valid flag.
    ParseError,
    /// The flag's values are not of the type asked for.
    TypeMismatch,
    /// A rollout is sticky on the targeting key and the context has none.
    TargetingKeyMissing,
    /// A rollout is sticky on an attribute the context lacks (or holds as a list or map).
    InvalidContext,
    /// Anything else (the store failed).
    General,
}

impl ErrorCode {
    /// The code as OpenFeature spells it (`FLAG_NOT_FOUND`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ProviderNotReady => "PROVIDER_NOT_READY",
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of evaluating a flag: its value (the caller's default on failure), the variant
/// served, why, and what failed if anything did.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<T> {
    /// The flag's key.
    pub key: String,
    /// The value.
    pub value: T,
    /// The variant served (none when the caller's default was given).
    pub variant: Option<String>,
    /// Why.
    pub reason: Reason,
    /// What failed, with reason `ERROR`.
    pub error_code: Option<ErrorCode>,
    /// Says what failed, in words.
    pub error_message: Option<String>,
}

impl<T> Evaluation<T> {
    pub(crate) fn failed(key: &str, default: T, code: ErrorCode, message: String) -> Self {
        Evaluation {
            key: key.to_string(),
            value: default,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message),
        }
    }
}

/// A type a flag's value can be asked as.
pub trait FlagValue: Sized {
    /// The flag type whose values it reads.
    const KIND: FlagType;
    /// The value, if `v` is one of this type.
    fn from_json(v: &Json) -> Option<Self>;
}

impl FlagValue for bool {
    const KIND: FlagType = FlagType::Boolean;
    fn from_json(v: &Json) -> Option<Self> {
        v.as_bool()
    }
}

impl FlagValue for String {
    const KIND: FlagType = FlagType::String;
    fn from_json(v: &Json) -> Option<Self> {
        v.as_str().map(str::to_string)
    }
}

impl FlagValue for f64 {
    const KIND: FlagType = FlagType::Number;
    fn from_json(v: &Json) -> Option<Self> {
        v.as_f64()
    }
}

/// An integer flag value: a number variant that is not whole is a type mismatch.
impl FlagValue for i64 {
    const KIND: FlagType = FlagType::Number;
    fn from_json(v: &Json) -> Option<Self> {
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15)
                .map(|x| x as i64)
        })
    }
}

/// A JSON object flag value.
impl FlagValue for serde_json::Map<String, Json> {
    const KIND: FlagType = FlagType::Object;
    fn from_json(v: &Json) -> Option<Self> {
        v.as_object().cloned()
    }
}

/// A flag made ready to evaluate: variants by index, rule values parsed once.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) flag: Flag,
    variants: Vec<(String, Json)>,
    default: usize,
    rules: Vec<(Vec<Test>, Pick)>,
    rollout: Option<Buckets>,
}

#[derive(Debug)]
enum Pick {
    Variant(usize),
    Rollout(Buckets),
}

#[derive(Debug)]
struct Buckets {
    by: Option<String>,
    group: String,
    /// Cumulative upper bucket of each variant (1 to 100), in order.
    bounds: Vec<(u32, usize)>,
}

#[derive(Debug)]
struct Test {
    attribute: String,
    op: Operator,
    value: Json,
    version: Option<semver::Version>,
}

/// How an evaluation went, before the value is read as the caller's type.
pub(crate) enum Outcome {
    Variant(usize, Reason),
    Disabled,
    Failed(ErrorCode, String),
}

impl Compiled {
    /// Compiles a checked flag.
    pub(crate) fn new(flag: Flag) -> crate::Result<Self> {
        flag.check()?;
        let variants: Vec<(String, Json)> = flag
            .variants
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let index = |name: &str| variants.iter().position(|(n, _)| n == name).unwrap_or(0);
        let split = |r: &Rollout| {
            let mut upper = 0;
            Buckets {
                by: r.by.clone(),
                group: r.group.clone().unwrap_or_else(|| flag.key.clone()),
                bounds: r
                    .splits
                    .iter()
                    .filter(|s| s.weight > 0)
                    .map(|s| {
                        upper += s.weight;
                        (upper, index(&s.variant))
                    })
                    .collect(),
            }
        };
        let rules = flag
            .rules
            .iter()
            .map(|r| {
                let tests = r.when.iter().map(test).collect();
                let pick = match &r.serve {
                    Serve::Variant(v) => Pick::Variant(index(v)),
                    Serve::Rollout(r) => Pick::Rollout(split(r)),
                };
                (tests, pick)
            })
            .collect();
        let rollout = flag.rollout.as_ref().map(split);
        let default = index(&flag.default_variant);
        Ok(Compiled {
            variants,
            default,
            rules,
            rollout,
            flag,
        })
    }

    pub(crate) fn kind(&self) -> FlagType {
        self.flag.kind
    }

    pub(crate) fn variant(&self, i: usize) -> &(String, Json) {
        &self.variants[i]
    }

    /// Which variant `ctx` gets, and why.
    pub(crate) fn outcome(&self, ctx: &EvalContext) -> Outcome {
        if !self.flag.enabled {
            return Outcome::Disabled;
        }
        for (tests, pick) in &self.rules {
            if tests.iter().all(|t| t.holds(ctx)) {
                return match pick {
                    Pick::Variant(i) => Outcome::Variant(*i, Reason::TargetingMatch),
                    Pick::Rollout(s) => s.pick(ctx),
                };
            }
        }
        match &self.rollout {
            Some(s) => s.pick(ctx),
            None if self.rules.is_empty() => Outcome::Variant(self.default, Reason::Static),
            None => Outcome::Variant(self.default, Reason::Default),
        }
    }

    /// The whole evaluation of `ctx`, read as `T`.
    pub(crate) fn evaluate<T: FlagValue>(&self, default: T, ctx: &EvalContext) -> Evaluation<T> {
        let key = &self.flag.key;
        if self.kind() != T::KIND {
            return Evaluation::failed(
                key,
                default,
                ErrorCode::TypeMismatch,
                self.mismatch(T::KIND),
            );
        }
        match self.outcome(ctx) {
            Outcome::Variant(i, reason) => {
                let (name, value) = self.variant(i);
                match T::from_json(value) {
                    Some(value) => Evaluation {
                        key: key.clone(),
                        value,
                        variant: Some(name.clone()),
                        reason,
                        error_code: None,
                        error_message: None,
                    },
                    None => Evaluation::failed(
                        key,
                        default,
                        ErrorCode::TypeMismatch,
                        format!("variant {name:?} ({value}) cannot be read as asked"),
                    ),
                }
            }
            Outcome::Disabled => Evaluation {
                key: key.clone(),
                value: default,
                variant: None,
                reason: Reason::Disabled,
                error_code: None,
                error_message: None,
            },
            Outcome::Failed(code, message) => Evaluation::failed(key, default, code, message),
        }
    }

    /// The value alone (no allocation beyond the value's own): the fast path.
    pub(crate) fn value<T: FlagValue>(&self, default: T, ctx: &EvalContext) -> T {
        if self.kind() != T::KIND {
            return default;
        }
        match self.outcome(ctx) {
            Outcome::Variant(i, _) => T::from_json(&self.variant(i).1).unwrap_or(default),
            Outcome::Disabled | Outcome::Failed(..) => default,
        }
    }

    pub(crate) fn mismatch(&self, asked: FlagType) -> String {
        format!(
            "flag {:?} is of type {}, asked as {asked}",
            self.flag.key,
            self.kind()
        )
    }
}

fn test(c: &Condition) -> Test {
    Test {
        attribute: c.attribute.clone(),
        op: c.op,
        value: c.value.clone(),
        version: c.value.as_str().and_then(semver),
    }
}

impl Test {
    fn holds(&self, ctx: &EvalContext) -> bool {
        let Some(a) = ctx.get(&self.attribute) else {
            return false;
        };
        let text = |f: fn(&str, &str) -> bool| match (a.as_str(), self.value.as_str()) {
            (Some(s), Some(v)) => f(s, v),
            _ => false,
        };
        let number = |f: fn(f64, f64) -> bool| match (a.as_f64(), self.value.as_f64()) {
            (Some(x), Some(y)) => f(x, y),
            _ => false,
        };
        let version = |f: fn(std::cmp::Ordering) -> bool| match (
            a.as_str().and_then(semver),
            &self.version,
        ) {
            (Some(x), Some(y)) => f(x.cmp_precedence(y)),
            _ => false,
        };
        let in_list = || {
            self.value
                .as_array()
                .is_some_and(|l| l.iter().any(|v| a.equals(v)))
        };
        use std::cmp::Ordering::*;
        match self.op {
            Operator::Equals => a.equals(&self.value),
            Operator::NotEquals => !a.equals(&self.value),
            Operator::OneOf => in_list(),
            Operator::NotOneOf => !in_list(),
            Operator::StartsWith => text(|s, v| s.starts_with(v)),
            Operator::EndsWith => text(|s, v| s.ends_with(v)),
            Operator::Contains => text(|s, v| s.contains(v)),
            Operator::Lt => number(|x, y| x < y),
            Operator::Lte => number(|x, y| x <= y),
            Operator::Gt => number(|x, y| x > y),
            Operator::Gte => number(|x, y| x >= y),
            Operator::SemverEq => version(|o| o == Equal),
            Operator::SemverLt => version(|o| o == Less),
            Operator::SemverLte => version(|o| o != Greater),
            Operator::SemverGt => version(|o| o == Greater),
            Operator::SemverGte => version(|o| o != Less),
        }
    }
}

impl Buckets {
    fn pick(&self, ctx: &EvalContext) -> Outcome {
        let attribute = self.by.as_deref().unwrap_or("targeting_key");
        let attr = ctx.get(attribute);
        let Some(id) = attr.as_ref().and_then(Attr::sticky) else {
            return match &self.by {
                None => Outcome::Failed(
                    ErrorCode::TargetingKeyMissing,
                    "the flag rolls out by targeting key and the context has none".into(),
                ),
                Some(by) => Outcome::Failed(
                    ErrorCode::InvalidContext,
                    format!(
                        "the flag rolls out by attribute {by:?}, which the context lacks (or holds as a list or map)"
                    ),
                ),
            };
        };
        let b = bucket(&self.group, &id);
        let i = self
            .bounds
            .iter()
            .find(|(upper, _)| b <= *upper)
            .or(self.bounds.last())
            .map_or(0, |(_, i)| *i);
        Outcome::Variant(i, Reason::Split)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(f: Flag) -> Compiled {
        Compiled::new(f).unwrap()
    }

    #[test]
    fn reasons_follow_openfeature() {
        let f = compiled(Flag::boolean("a"));
        let e = f.evaluate(true, &EvalContext::new());
        assert_eq!((e.value, e.reason), (false, Reason::Static));
        assert_eq!(e.variant.as_deref(), Some("off"));

        let f = compiled(
            Flag::boolean("a").rule(vec![Condition::new("plan", Operator::Equals, "pro")], "on"),
        );
        let pro = EvalContext::key("u").with("plan", "pro");
        assert_eq!(f.evaluate(false, &pro).reason, Reason::TargetingMatch);
        assert!(f.evaluate(false, &pro).value);
        let free = EvalContext::key("u").with("plan", "free");
        assert_eq!(f.evaluate(true, &free).reason, Reason::Default);
        assert!(!f.evaluate(true, &free).value);

        let off = compiled(Flag::boolean("a").default_variant("on").enabled(false));
        let e = off.evaluate(false, &pro);
        assert_eq!(
            (e.value, e.reason, e.variant),
            (false, Reason::Disabled, None)
        );

        let e = compiled(Flag::boolean("a")).evaluate("x".to_string(), &pro);
        assert_eq!(e.reason, Reason::Error);
        assert_eq!(e.error_code, Some(ErrorCode::TypeMismatch));
        assert_eq!(e.value, "x");

        let split = compiled(Flag::percentage("a", 50));
        assert_eq!(split.evaluate(false, &pro).reason, Reason::Split);
        let e = split.evaluate(true, &EvalContext::new());
        assert_eq!(e.error_code, Some(ErrorCode::TargetingKeyMissing));
        assert!(e.value);
        let by_org =
            compiled(Flag::boolean("a").rollout(Rollout::new([("on", 50), ("off", 50)]).by("org")));
        let e = by_org.evaluate(true, &pro);
        assert_eq!(e.error_code, Some(ErrorCode::InvalidContext));
    }

    #[test]
    fn operators() {
        let holds = |op: Operator, value: Json, attr: Json| {
            let f = compiled(Flag::boolean("a").rule(vec![Condition::new("x", op, value)], "on"));
            f.value(false, &EvalContext::key("u").with("x", attr))
        };
        use serde_json::json;
        assert!(holds(Operator::Equals, json!(3), json!(3.0)));
        assert!(!holds(Operator::Equals, json!("3"), json!(3)));
        assert!(holds(Operator::NotEquals, json!("a"), json!("b")));
        assert!(holds(Operator::OneOf, json!(["NL", "BE"]), json!("BE")));
        assert!(!holds(Operator::OneOf, json!(["NL", "BE"]), json!("DE")));
        assert!(holds(Operator::NotOneOf, json!(["NL", "BE"]), json!("DE")));
        assert!(holds(
            Operator::StartsWith,
            json!("admin@"),
            json!("admin@x.io")
        ));
        assert!(holds(
            Operator::EndsWith,
            json!("@x.io"),
            json!("admin@x.io")
        ));
        assert!(holds(Operator::Contains, json!("min"), json!("admin@x.io")));
        assert!(holds(Operator::Lt, json!(18), json!(17)));
        assert!(!holds(Operator::Lt, json!(18), json!(18)));
        assert!(holds(Operator::Lte, json!(18), json!(18)));
        assert!(holds(Operator::Gt, json!(1.5), json!(2)));
        assert!(holds(Operator::Gte, json!(2), json!(2)));
        assert!(
            !holds(Operator::Gt, json!(1), json!("2")),
            "a string is not a number"
        );
        assert!(holds(Operator::SemverGte, json!("2.3.0"), json!("v2.10.1")));
        assert!(!holds(
            Operator::SemverGte,
            json!("2.3.0"),
            json!("2.3.0-beta.1")
        ));
        assert!(holds(
            Operator::SemverLt,
            json!("2.3.0"),
            json!("2.3.0-beta.1")
        ));
        assert!(holds(
            Operator::SemverEq,
            json!("1.0.0"),
            json!("1.0.0+build.7")
        ));
        assert!(holds(Operator::SemverGt, json!("1.0.0"), json!("1.0.1")));
        assert!(holds(Operator::SemverLte, json!("1.0.0"), json!("1.0.0")));
        assert!(!holds(
            Operator::SemverLt,
            json!("1.0.0"),
            json!("not a version")
        ));
        // A missing attribute: no condition on it holds, negated ones neither.
        let f = compiled(
            Flag::boolean("a").rule(vec![Condition::new("x", Operator::NotEquals, "b")], "on"),
        );
        assert!(!f.value(false, &EvalContext::key("u")));
        // The targeting key is an attribute too.
        let f = compiled(Flag::boolean("a").rule(
            vec![Condition::new(
                "targeting_key",
                Operator::StartsWith,
                "staff-",
            )],
            "on",
        ));
        assert!(f.value(false, &EvalContext::key("staff-7")));
    }

    /// The bucket is Unleash's: ("123", group "gr1") is in bucket 73.
    #[test]
    fn rollouts_bucket_as_unleash() {
        let at = |percent| {
            compiled(
                Flag::boolean("k")
                    .rollout(Rollout::new([("on", percent), ("off", 100 - percent)]).group("gr1")),
            )
            .value(false, &EvalContext::key("123"))
        };
        assert!(!at(72));
        assert!(at(73));
        // Default group: the flag's key.
        let f = compiled(Flag::percentage("groupX", 25));
        assert!(f.value(false, &EvalContext::key("999")));
        let f = compiled(Flag::percentage("groupX", 24));
        assert!(!f.value(false, &EvalContext::key("999")));
        // Sticky on another attribute, a number as JSON writes it.
        let f = compiled(
            Flag::boolean("k").rollout(
                Rollout::new([("on", 73), ("off", 27)])
                    .by("account")
                    .group("gr1"),
            ),
        );
        assert!(f.value(false, &EvalContext::new().with("account", 123)));
    }

    /// Shares within ±1 % over 100,000 ids, for a three-way split.
    #[test]
    fn rollout_shares() {
        let f = compiled(
            Flag::new("exp", FlagType::String)
                .variant("a", "a")
                .variant("b", "b")
                .variant("c", "c")
                .default_variant("a")
                .rollout(Rollout::new([("a", 5), ("b", 25), ("c", 70)])),
        );
        let mut counts = BTreeMap::new();
        for i in 0..100_000 {
            let v = f.value(String::new(), &EvalContext::key(format!("user-{i}")));
            *counts.entry(v).or_insert(0u32) += 1;
        }
        for (variant, want) in [("a", 5.0), ("b", 25.0), ("c", 70.0)] {
            let got = f64::from(counts[variant]) / 1000.0;
            assert!(
                (got - want).abs() <= 1.0,
                "{variant}: {got} % (want {want} %)"
            );
        }
    }

    #[test]
    fn typed_values() {
        let n = compiled(
            Flag::new("limit", FlagType::Number)
                .variant("low", 10)
                .variant("frac", 2.5)
                .default_variant("low"),
        );
        assert_eq!(n.value(0i64, &EvalContext::new()), 10);
        assert_eq!(n.value(0.0f64, &EvalContext::new()), 10.0);
        let frac = compiled(n.flag.clone().default_variant("frac"));
        let e = frac.evaluate(7i64, &EvalContext::new());
        assert_eq!((e.value, e.error_code), (7, Some(ErrorCode::TypeMismatch)));
        let o = compiled(
            Flag::new("cfg", FlagType::Object)
                .variant("v1", serde_json::json!({"retries": 3}))
                .default_variant("v1"),
        );
        let got = o.value(serde_json::Map::new(), &EvalContext::new());
        assert_eq!(got["retries"], 3);
    }
}
