//! Targeted runs: `Options::target` limits a preview, `up` or `destroy` to some resources,
//! as Pulumi's `--target`. Everything outside the selection is left exactly as recorded: not
//! created, updated, replaced or deleted; its recorded outputs feed the selected resources.
//!
//! A run that would break what it leaves alone is refused before it changes anything: a
//! selected resource that depends on one that does not exist yet, and a selected resource
//! to be replaced or deleted while unselected resources depend on it (they would be left on
//! the old one, or block its delete). `Options::target_dependents` selects those too.

use std::collections::BTreeSet;

use super::plan::{Step, StepOp};
use super::state::StateDoc;
use super::{Declared, op};
use crate::error::Result;

/// The resources a run touches: all, or a set of URNs.
pub(super) struct Selection(Option<BTreeSet<String>>);

/// The URN a state key stands for: a replaced copy (`<urn>#replaced#<n>`) belongs to `<urn>`.
fn base(key: &str) -> &str {
    key.split('#').next().unwrap_or(key)
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `target` names the resource `urn` (named `name` in the program): its URN, its
/// name, a `*` pattern of its URN, or a component it is inside (the component's URN or name).
fn names(target: &str, urn: &str, name: &str) -> bool {
    if target == urn || target == name || (target.contains('*') && glob(target, urn)) {
        return true;
    }
    // A component's URN ends with its full name; its resources' names start with it.
    let component = match target.split_once("::mvi:component:") {
        Some((_, rest)) => rest.rsplit("::").next().unwrap_or(rest),
        None => target,
    };
    name.strip_prefix(component)
        .is_some_and(|rest| rest.starts_with('/'))
}

impl Selection {
    /// Every resource.
    pub(super) fn all() -> Self {
        Selection(None)
    }

    /// The resources `targets` name among the declared and the recorded ones (every target
    /// must name at least one), with, if `dependents`, everything that depends on them.
    pub(super) fn of(
        targets: &[String],
        dependents: bool,
        decls: &[Declared],
        doc: &StateDoc,
    ) -> Result<Self> {
        if targets.is_empty() {
            return Ok(Self::all());
        }
        // (URN, name, dependencies) of every resource a target may name.
        let known: Vec<(&str, &str, &BTreeSet<String>)> = decls
            .iter()
            .map(|d| (d.urn.as_str(), d.name.as_str(), &d.deps))
            .chain(
                doc.resources
                    .iter()
                    .filter(|(k, _)| base(k) == k.as_str())
                    .map(|(k, r)| (k.as_str(), r.name.as_str(), &r.deps)),
            )
            .collect();
        let mut selected = BTreeSet::new();
        for t in targets {
            let mut matched = false;
            for (urn, name, _) in &known {
                if names(t, urn, name) {
                    matched = true;
                    selected.insert(urn.to_string());
                }
            }
            if !matched {
                return Err(op("target").not_found(
                    t,
                    "no resource of the stack (declared or recorded) has this URN or name",
                ));
            }
        }
        if dependents {
            loop {
                let more: Vec<String> = known
                    .iter()
                    .filter(|(urn, _, deps)| {
                        !selected.contains(*urn) && deps.iter().any(|d| selected.contains(d))
                    })
                    .map(|(urn, _, _)| urn.to_string())
                    .collect();
                if more.is_empty() {
                    break;
                }
                selected.extend(more);
            }
        }
        Ok(Selection(Some(selected)))
    }

    /// Whether the run touches the resource recorded or declared under `key`.
    pub(super) fn contains(&self, key: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(base(key)))
    }

    /// The recorded resources the run must not delete: those `declared`, and every one
    /// outside the selection.
    pub(super) fn keep(
        &self,
        doc: &StateDoc,
        declared: impl IntoIterator<Item = String>,
    ) -> BTreeSet<String> {
        let mut keep: BTreeSet<String> = declared.into_iter().collect();
        if self.0.is_some() {
            keep.extend(doc.resources.keys().filter(|k| !self.contains(k)).cloned());
        }
        keep
    }

    /// Refuses a targeted run that would break what it leaves alone (see the module's
    /// documentation), given the `steps` it would take.
    pub(super) fn check(&self, decls: &[Declared], doc: &StateDoc, steps: &[Step]) -> Result<()> {
        if self.0.is_none() {
            return Ok(());
        }
        for d in decls.iter().filter(|d| self.contains(&d.urn)) {
            if let Some(dep) = d
                .deps
                .iter()
                .find(|u| !self.contains(u) && !doc.resources.contains_key(*u))
            {
                return Err(op("target").precondition(
                    &d.name,
                    format!("it depends on {dep}, which does not exist yet and is not targeted: target it too"),
                ));
            }
        }
        for s in steps {
            let what = match s.op {
                StepOp::Replace => "replaced",
                StepOp::Delete => "deleted",
                _ => continue,
            };
            let urn = base(&s.urn);
            let mut left: BTreeSet<&str> = doc
                .resources
                .iter()
                .filter(|(k, r)| !self.contains(k) && r.deps.contains(urn))
                .map(|(_, r)| r.name.as_str())
                .collect();
            left.extend(
                decls
                    .iter()
                    .filter(|d| !self.contains(&d.urn) && d.deps.contains(urn))
                    .map(|d| d.name.as_str()),
            );
            if !left.is_empty() {
                let left: Vec<&str> = left.into_iter().collect();
                return Err(op("target").precondition(
                    &s.name,
                    format!(
                        "it would be {what}, and {} depend(s) on it but are not targeted: \
                         target them too, or select dependents as well (--target-dependents)",
                        left.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*c", "ac"));
        assert!(glob("*", ""));
        assert!(glob("s::mvi:vpc:*::main", "s::mvi:vpc:Subnet::main"));
        assert!(!glob("a*c", "ab"));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
        assert!(!glob("abc", "abcd"));
    }

    #[test]
    fn a_target_names_a_urn_a_name_a_pattern_or_a_component() {
        let urn = "shop::mvi:blob:Bucket::web/assets";
        assert!(names(urn, urn, "web/assets"));
        assert!(names("web/assets", urn, "web/assets"));
        assert!(names("shop::mvi:blob:*", urn, "web/assets"));
        assert!(names("web", urn, "web/assets"));
        assert!(names(
            "shop::mvi:component:WebService::web",
            urn,
            "web/assets"
        ));
        assert!(!names("we", urn, "web/assets"));
        assert!(!names("assets", urn, "web/assets"));
        assert!(!names("shop::mvi:kv:*", urn, "web/assets"));
    }
}
