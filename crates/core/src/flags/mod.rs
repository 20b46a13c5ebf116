//! Feature flags on top of KV: dark launches, dogfooding, percentage rollouts, flags around
//! schema changes. They run wherever KV runs (the local simulator, DynamoDB).
//!
//! - A [`Flag`] has a type (boolean, string, number or JSON object), named variants, a default
//!   variant, an on/off switch, targeting [`Rule`]s on the evaluation context's attributes,
//!   and percentage [`Rollout`]s sticky on an attribute (the targeting key by default),
//!   bucketed exactly as Unleash buckets (see [`bucket`]).
//! - [`Flags`] saves, reads, lists and deletes flags in a KV table: a flag is checked whole
//!   before anything is written, and written in one conditional put.
//! - [`FlagClient`] keeps every flag in memory, evaluates without I/O, and sees a change within
//!   its poll interval (250 ms by default).
//! - Evaluation follows OpenFeature: a value, the variant, a [`Reason`] and, on failure, an
//!   [`ErrorCode`]. It never fails the caller: any failure gives the caller's default with
//!   reason `ERROR`. With the `openfeature` feature, [`FlagClient`] is also a provider for the
//!   `open-feature` crate.
//!
//! ```no_run
//! # async fn demo(cloud: mvi_core::Cloud) -> mvi_core::Result<()> {
//! use mvi_core::flags::{EvalContext, Flag, Flags};
//!
//! let flags = Flags::of(&cloud, "flags")?;
//! flags.create_table().await?;
//! flags.save(&Flag::percentage("new-checkout", 5)).await?;
//! let client = flags.client().await;
//! let on = client.bool_value("new-checkout", false, &EvalContext::key("user-42"));
//! # Ok(()) }
//! ```

pub mod bucket;
mod client;
mod eval;
#[cfg(feature = "openfeature")]
mod openfeature;
mod store;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{Op, Result, Service};

pub use client::FlagClient;
pub use eval::{ErrorCode, EvalContext, Evaluation, FlagValue, Reason};
pub use store::Flags;

pub(crate) fn op(operation: &'static str) -> Op {
    Op::new(Service::Flags, operation)
}

/// The type of a flag's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagType {
    /// `true` or `false`.
    Boolean,
    /// A string.
    String,
    /// A number.
    Number,
    /// A JSON object.
    Object,
}

impl FlagType {
    fn holds(self, v: &Json) -> bool {
        match self {
            FlagType::Boolean => v.is_boolean(),
            FlagType::String => v.is_string(),
            FlagType::Number => v.is_number(),
            FlagType::Object => v.is_object(),
        }
    }

    /// Its name, as in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Number => "number",
            FlagType::Object => "object",
        }
    }
}

impl fmt::Display for FlagType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A feature flag (see the module doc). Build one with [`Flag::boolean`], [`Flag::new`] or
/// [`Flag::percentage`]; [`Flags::save`] checks it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Flag {
    /// The flag's key: 1 to 128 letters, digits, `_`, `-` and `.`.
    pub key: String,
    /// The type of its variants' values.
    #[serde(rename = "type")]
    pub kind: FlagType,
    /// Its variants: name → value (of the flag's type).
    pub variants: BTreeMap<String, Json>,
    /// The variant served when no rule matches and there is no rollout.
    pub default_variant: String,
    /// Off: every evaluation gives the caller's default, with reason `DISABLED`.
    #[serde(default = "on")]
    pub enabled: bool,
    /// Targeting rules, in order: the first whose conditions all hold serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// The rollout for everyone no rule matched (instead of the default variant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// What the flag is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn on() -> bool {
    true
}

/// A targeting rule: when every condition holds, it serves a variant or a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Conditions on the evaluation context, all of which must hold (none: always).
    #[serde(default)]
    pub when: Vec<Condition>,
    /// What it serves.
    #[serde(flatten)]
    pub serve: Serve,
}

/// What a rule serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Serve {
    /// One variant (reason `TARGETING_MATCH`).
    Variant(String),
    /// A percentage rollout (reason `SPLIT`).
    Rollout(Rollout),
}

/// A condition on one attribute of the evaluation context. An attribute the context lacks
/// makes every condition on it false, whatever the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// The attribute: a name of the context's attributes, or `targeting_key`.
    pub attribute: String,
    /// How it is compared.
    pub op: Operator,
    /// What it is compared with: a string, number or boolean; a list of them for `one_of`
    /// and `not_one_of`; a number for `lt`..`gte`; a semantic version for `semver_*`.
    pub value: Json,
}

impl Condition {
    /// `attribute op value`.
    pub fn new(attribute: impl Into<String>, op: Operator, value: impl Into<Json>) -> Self {
        Condition {
            attribute: attribute.into(),
            op,
            value: value.into(),
        }
    }
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal (numbers by value: `1` equals `1.0`).
    Equals,
    /// Not equal.
    NotEquals,
    /// Equal to one of a list.
    OneOf,
    /// Equal to none of a list.
    NotOneOf,
    /// A string that starts with the value.
    StartsWith,
    /// A string that ends with the value.
    EndsWith,
    /// A string that contains the value.
    Contains,
    /// A number less than the value.
    Lt,
    /// A number less than or equal to the value.
    Lte,
    /// A number greater than the value.
    Gt,
    /// A number greater than or equal to the value.
    Gte,
    /// A semantic version equal to the value's (`2.3.0`; a leading `v` is allowed).
    SemverEq,
    /// A semantic version lower than the value's.
    SemverLt,
    /// A semantic version lower than or equal to the value's.
    SemverLte,
    /// A semantic version higher than the value's.
    SemverGt,
    /// A semantic version higher than or equal to the value's.
    SemverGte,
}

impl Operator {
    /// Its name, as written in a flag.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "equals",
            Operator::NotEquals => "not_equals",
            Operator::OneOf => "one_of",
            Operator::NotOneOf => "not_one_of",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Contains => "contains",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::SemverEq => "semver_eq",
            Operator::SemverLt => "semver_lt",
            Operator::SemverLte => "semver_lte",
            Operator::SemverGt => "semver_gt",
            Operator::SemverGte => "semver_gte",
        }
    }
}

/// A percentage rollout: each variant gets a share of the buckets 1 to 100, in order; the
/// bucket of a context is Unleash's, of `"<group>:<value of by>"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// The attribute it is sticky on (default: the targeting key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The bucketing group (default: the flag's key). Two flags with the same group and
    /// percentages hold the same users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The variants' shares, in percent: they sum to 100.
    pub splits: Vec<Split>,
}

/// One variant's share of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The variant.
    pub variant: String,
    /// Its share, in percent.
    pub weight: u32,
}

impl Rollout {
    /// A rollout over `splits` of (variant, percent).
    pub fn new<S: Into<String>>(splits: impl IntoIterator<Item = (S, u32)>) -> Self {
        Rollout {
            by: None,
            group: None,
            splits: splits
                .into_iter()
                .map(|(variant, weight)| Split {
                    variant: variant.into(),
                    weight,
                })
                .collect(),
        }
    }

    /// Sticky on `attribute` instead of the targeting key.
    pub fn by(mut self, attribute: impl Into<String>) -> Self {
        self.by = Some(attribute.into());
        self
    }

    /// Buckets in `group` instead of the flag's key.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

impl Flag {
    /// A flag of `kind` with no variants yet (add them with [`Flag::variant`]).
    pub fn new(key: impl Into<String>, kind: FlagType) -> Self {
        Flag {
            key: key.into(),
            kind,
            variants: BTreeMap::new(),
            default_variant: String::new(),
            enabled: true,
            rules: Vec::new(),
            rollout: None,
            description: String::new(),
        }
    }

    /// A boolean flag with variants `on` (true) and `off` (false), serving `off`.
    pub fn boolean(key: impl Into<String>) -> Self {
        Flag::new(key, FlagType::Boolean)
            .variant("on", true)
            .variant("off", false)
            .default_variant("off")
    }

    /// A boolean flag `on` for `percent` % of targeting keys, `off` for the others.
    pub fn percentage(key: impl Into<String>, percent: u32) -> Self {
        Flag::boolean(key).rollout(Rollout::new([
            ("on", percent),
            ("off", 100u32.saturating_sub(percent)),
        ]))
    }

    /// Adds (or replaces) variant `name` with `value`.
    pub fn variant(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        self.variants.insert(name.into(), value.into());
        self
    }

    /// Serves `name` when no rule matches and there is no rollout.
    pub fn default_variant(mut self, name: impl Into<String>) -> Self {
        self.default_variant = name.into();
        self
    }

    /// Switches the flag on or off.
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Adds a rule serving `variant` when every condition of `when` holds.
    pub fn rule(mut self, when: Vec<Condition>, variant: impl Into<String>) -> Self {
        self.rules.push(Rule {
            when,
            serve: Serve::Variant(variant.into()),
        });
        self
    }

    /// Adds a rule serving `rollout` when every condition of `when` holds.
    pub fn rule_rollout(mut self, when: Vec<Condition>, rollout: Rollout) -> Self {
        self.rules.push(Rule {
            when,
            serve: Serve::Rollout(rollout),
        });
        self
    }

    /// Serves `rollout` to everyone no rule matched.
    pub fn rollout(mut self, rollout: Rollout) -> Self {
        self.rollout = Some(rollout);
        self
    }

    /// Describes the flag.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Checks the flag whole: the key and variant names, every value's type, the default
    /// variant, every rule's operator against its value, every rollout's variants and that
    /// its weights sum to 100. The error names the flag and where in it the problem is.
    pub fn check(&self) -> Result<()> {
        let op = op("save_flag");
        let bad = |at: &str, why: String| {
            let at = if at.is_empty() {
                String::new()
            } else {
                format!("{at}: ")
            };
            Err(op.invalid(&self.key, format!("{at}{why}")))
        };
        check_key(&self.key)?;
        if self.variants.is_empty() {
            return bad("variants", "a flag needs at least one variant".into());
        }
        for (name, value) in &self.variants {
            if !valid_name(name, 64) {
                return bad(
                    "variants",
                    format!(
                        "variant name {name:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
                    ),
                );
            }
            if !self.kind.holds(value) {
                return bad(
                    &format!("variants.{name}"),
                    format!("the flag is of type {}, the value is {value}", self.kind),
                );
            }
        }
        if !self.variants.contains_key(&self.default_variant) {
            return bad(
                "default_variant",
                format!(
                    "{:?} is not one of the variants ({})",
                    self.default_variant,
                    self.variant_names()
                ),
            );
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (j, c) in rule.when.iter().enumerate() {
                if let Err(why) = check_condition(c) {
                    return bad(&format!("rules[{i}].when[{j}]"), why);
                }
            }
            match &rule.serve {
                Serve::Variant(v) if !self.variants.contains_key(v) => {
                    return bad(
                        &format!("rules[{i}].variant"),
                        format!(
                            "{v:?} is not one of the variants ({})",
                            self.variant_names()
                        ),
                    );
                }
                Serve::Variant(_) => {}
                Serve::Rollout(r) => {
                    if let Err(why) = self.check_rollout(r) {
                        return bad(&format!("rules[{i}].rollout"), why);
                    }
                }
            }
        }
        if let Some(r) = &self.rollout
            && let Err(why) = self.check_rollout(r)
        {
            return bad("rollout", why);
        }
        Ok(())
    }

    fn variant_names(&self) -> String {
        self.variants
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn check_rollout(&self, r: &Rollout) -> std::result::Result<(), String> {
        if r.splits.is_empty() {
            return Err("a rollout needs at least one split".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for s in &r.splits {
            if !self.variants.contains_key(&s.variant) {
                return Err(format!(
                    "{:?} is not one of the variants ({})",
                    s.variant,
                    self.variant_names()
                ));
            }
            if !seen.insert(&s.variant) {
                return Err(format!("variant {:?} has two splits", s.variant));
            }
        }
        let total: u64 = r.splits.iter().map(|s| u64::from(s.weight)).sum();
        if total != 100 {
            return Err(format!(
                "the weights sum to {total} %, not 100 % ({})",
                r.splits
                    .iter()
                    .map(|s| format!("{} {}", s.variant, s.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if r.by.as_deref().is_some_and(str::is_empty) {
            return Err("`by` names no attribute".into());
        }
        if r.group.as_deref().is_some_and(str::is_empty) {
            return Err("`group` is empty".into());
        }
        Ok(())
    }
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a flag key: 1 to 128 letters, digits, `_`, `-` and `.`.
pub fn check_key(key: &str) -> Result<()> {
    if valid_name(key, 128) {
        Ok(())
    } else {
        Err(op("save_flag").invalid(
            key,
            "a flag key must be 1 to 128 letters, digits, '_', '-' or '.'",
        ))
    }
}

fn scalar(v: &Json) -> bool {
    v.is_string() || v.is_number() || v.is_boolean()
}

/// A semantic version as conditions read it: `1.2.3`, `v1.2.3`, `1.2.3-beta.1`.
pub(crate) fn semver(s: &str) -> Option<semver::Version> {
    semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok()
}

fn check_condition(c: &Condition) -> std::result::Result<(), String> {
    if c.attribute.is_empty() {
        return Err("the condition names no attribute".into());
    }
    let name = c.op.as_str();
    let v = &c.value;
    match c.op {
        Operator::Equals | Operator::NotEquals if !scalar(v) => Err(format!(
            "{name} compares with a string, number or boolean; the value is {v}"
        )),
        Operator::OneOf | Operator::NotOneOf => match v.as_array() {
            Some(list) if !list.is_empty() && list.iter().all(scalar) => Ok(()),
            _ => Err(format!(
                "{name} takes a non-empty list of strings, numbers or booleans; the value is {v}"
            )),
        },
        Operator::StartsWith | Operator::EndsWith | Operator::Contains if !v.is_string() => {
            Err(format!("{name} compares strings; the value is {v}"))
        }
        Operator::Lt | Operator::Lte | Operator::Gt | Operator::Gte if !v.is_number() => {
            Err(format!("{name} compares numbers; the value is {v}"))
        }
        Operator::SemverEq
        | Operator::SemverLt
        | Operator::SemverLte
        | Operator::SemverGt
        | Operator::SemverGte
            if v.as_str().and_then(semver).is_none() =>
        {
            Err(format!(
                "{name} compares semantic versions (such as \"2.3.0\"); the value is {v}"
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn refused(f: Flag, says: &str) {
        let e = f.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }

    #[test]
    fn a_flag_is_checked_whole() {
        Flag::boolean("a").check().unwrap();
        Flag::percentage("a", 5).check().unwrap();
        refused(
            Flag::boolean("a").rollout(Rollout::new([("on", 50), ("off", 40)])),
            "rollout: the weights sum to 90 %, not 100 %",
        );
        refused(
            Flag::boolean("a").default_variant("maybe"),
            "default_variant",
        );
        refused(
            Flag::boolean("a").variant("odd", "yes"),
            "variants.odd: the flag is of type boolean",
        );
        refused(
            Flag::boolean("a").rule(vec![Condition::new("age", Operator::Gt, "old")], "on"),
            "rules[0].when[0]: gt compares numbers",
        );
        refused(
            Flag::boolean("a").rule(
                vec![Condition::new("version", Operator::SemverGte, "two")],
                "on",
            ),
            "semver_gte compares semantic versions",
        );
        refused(
            Flag::boolean("a").rule(vec![Condition::new("c", Operator::OneOf, "NL")], "on"),
            "one_of takes a non-empty list",
        );
        refused(
            Flag::boolean("a").rule(vec![], "maybe"),
            "rules[0].variant: \"maybe\" is not one of the variants",
        );
        refused(
            Flag::boolean("a").rollout(Rollout::new([("on", 50), ("on", 50)])),
            "two splits",
        );
        refused(Flag::boolean("no spaces"), "flag key");
        refused(Flag::new("a", FlagType::String), "at least one variant");
    }

    #[test]
    fn flags_read_and_write_as_json() {
        let f = Flag::new("theme", FlagType::String)
            .variant("dark", "dark")
            .variant("light", "light")
            .default_variant("light")
            .rule(
                vec![Condition::new("country", Operator::OneOf, vec!["NL", "BE"])],
                "dark",
            )
            .rule_rollout(
                vec![Condition::new("beta", Operator::Equals, true)],
                Rollout::new([("dark", 30), ("light", 70)]).by("session"),
            );
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["rules"][0]["variant"], "dark");
        assert_eq!(json["rules"][1]["rollout"]["by"], "session");
        assert_eq!(json["type"], "string");
        let back: Flag = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
        back.check().unwrap();
    }
}
