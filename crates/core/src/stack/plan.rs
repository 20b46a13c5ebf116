//! What a preview shows and an `up` did: steps with property-level diffs, and their
//! rendering as text.

use std::fmt;

use serde_json::Value;

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepOp {
    /// Nothing: it matches its declaration.
    Same,
    /// Created.
    Create,
    /// Changed in place.
    Update,
    /// Deleted and created again (a property that cannot change in place changed).
    Replace,
    /// Deleted (no longer declared).
    Delete,
    /// Adopted: an existing resource is imported by id.
    Import,
    /// Recorded as it really is (refresh).
    Refresh,
}

impl StepOp {
    fn symbol(self) -> &'static str {
        match self {
            StepOp::Same => " ",
            StepOp::Create => "+",
            StepOp::Update => "~",
            StepOp::Replace => "+-",
            StepOp::Delete => "-",
            StepOp::Import => "=",
            StepOp::Refresh => "~",
        }
    }

    fn word(self) -> &'static str {
        match self {
            StepOp::Same => "same",
            StepOp::Create => "create",
            StepOp::Update => "update",
            StepOp::Replace => "replace",
            StepOp::Delete => "delete",
            StepOp::Import => "import",
            StepOp::Refresh => "refresh",
        }
    }
}

impl fmt::Display for StepOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A property's value as shown: secrets and unknowns never show a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// Absent.
    None,
    /// A value.
    Value(Value),
    /// A secret (never shown).
    Secret,
    /// Known only after the resources it depends on are applied.
    Unknown,
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::None => f.write_str("(none)"),
            Shown::Value(v) => write!(f, "{v}"),
            Shown::Secret => f.write_str("[secret]"),
            Shown::Unknown => f.write_str("(known after apply)"),
        }
    }
}

/// One property that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct PropDiff {
    /// The property's name.
    pub name: String,
    /// What it was.
    pub old: Shown,
    /// What it will be.
    pub new: Shown,
    /// Whether this change forces a replacement.
    pub replaces: bool,
}

impl fmt::Display for PropDiff {
    /// `name: old => new`, and `  (forces replacement)` when it does (secrets as `[secret]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} => {}", self.name, self.old, self.new)?;
        if self.replaces {
            write!(f, "  (forces replacement)")?;
        }
        Ok(())
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The resource's URN.
    pub urn: String,
    /// Its type.
    pub type_name: String,
    /// Its name in the program.
    pub name: String,
    /// The component it belongs to (a URN), if any.
    pub parent: Option<String>,
    /// What happens.
    pub op: StepOp,
    /// The properties that change.
    pub diffs: Vec<PropDiff>,
}

/// A resource whose real state differs from the recorded one (found by refresh).
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    /// The resource's URN.
    pub urn: String,
    /// Deleted out of band.
    pub deleted: bool,
    /// Properties changed out of band (recorded → real).
    pub diffs: Vec<PropDiff>,
}

/// What a preview found, or what an `up`/`destroy` did, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The stack.
    pub stack: String,
    /// Steps, in the order they run (or ran).
    pub steps: Vec<Step>,
    /// Drift found by the refresh before planning.
    pub drift: Vec<Drift>,
}

impl Plan {
    /// How many steps do `op`.
    pub fn count(&self, op: StepOp) -> usize {
        self.steps.iter().filter(|s| s.op == op).count()
    }

    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.steps.iter().all(|s| s.op == StepOp::Same)
    }

    /// The step of the resource named `name`, if any.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }
}

impl fmt::Display for Plan {
    /// A rendering like `pulumi preview`'s: one line a resource, changes listed under it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Stack {}:", self.stack)?;
        for d in &self.drift {
            if d.deleted {
                writeln!(f, " !  drift: {} was deleted out of band", d.urn)?;
            } else {
                let names: Vec<&str> = d.diffs.iter().map(|p| p.name.as_str()).collect();
                writeln!(
                    f,
                    " !  drift: {} changed out of band: {}",
                    d.urn,
                    names.join(", ")
                )?;
            }
        }
        writeln!(f, "     {:<32} {:<28} Plan", "Type", "Name")?;
        let mut shown_components: Vec<&str> = Vec::new();
        for s in &self.steps {
            if let Some(parent) = s.parent.as_deref()
                && !shown_components.contains(&parent)
            {
                shown_components.push(parent);
                // `<stack>::mvi:component:<Type>::<name>`
                let mut parts = parent.splitn(3, "::").skip(1);
                let (ty, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(parent));
                writeln!(f, "     {ty:<32} {name}")?;
            }
            let indent = if s.parent.is_some() { "  " } else { "" };
            let info = if s.diffs.is_empty() || !matches!(s.op, StepOp::Update | StepOp::Replace) {
                String::new()
            } else {
                let names: Vec<String> = s
                    .diffs
                    .iter()
                    .map(|d| format!("{}{}", if d.replaces { "*" } else { "~" }, d.name))
                    .collect();
                format!("   [diff: {}]", names.join(" "))
            };
            writeln!(
                f,
                " {:<3} {:<32} {:<28} {}{}",
                s.op.symbol(),
                s.type_name,
                format!("{indent}{}", s.name),
                s.op.word(),
                info
            )?;
            // Property lines for changes to existing resources; a create lists its
            // properties only in the step's `diffs` (as `pulumi preview` without --diff),
            // but the outputs a provider knows ahead (`outputs.policy`) for every step.
            let all = matches!(s.op, StepOp::Update | StepOp::Replace);
            for d in s
                .diffs
                .iter()
                .filter(|d| all || d.name.starts_with("outputs."))
            {
                writeln!(f, "       {indent}{d}")?;
            }
        }
        let mut parts = Vec::new();
        for op in [
            StepOp::Create,
            StepOp::Update,
            StepOp::Replace,
            StepOp::Delete,
            StepOp::Import,
        ] {
            let n = self.count(op);
            if n > 0 {
                parts.push(format!("{n} to {}", op.word()));
            }
        }
        let same = self.count(StepOp::Same);
        if same > 0 {
            parts.push(format!("{same} unchanged"));
        }
        if parts.is_empty() {
            parts.push("no resources".into());
        }
        writeln!(f, "Resources: {}", parts.join(", "))
    }
}

/// A progress event of a running operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A step started.
    Started {
        /// The resource.
        urn: String,
        /// What is done.
        op: StepOp,
    },
    /// A step finished.
    Finished {
        /// The resource.
        urn: String,
        /// What was done.
        op: StepOp,
        /// How long it took.
        duration: std::time::Duration,
    },
    /// A step failed.
    Failed {
        /// The resource.
        urn: String,
        /// What was tried.
        op: StepOp,
        /// Why.
        error: String,
    },
    /// A step did not run because a resource it depends on failed.
    Skipped {
        /// The resource.
        urn: String,
        /// The failed dependency.
        because: String,
    },
    /// A running step says how it is going (a deployment's replica healthy, weight set,
    /// analysis passed, rollback).
    Progress {
        /// The resource.
        urn: String,
        /// One sentence.
        message: String,
    },
    /// The engine says something about the whole run (a stale lock taken over).
    Notice {
        /// One sentence.
        message: String,
    },
}

impl Shown {
    /// The value as a JSON string (`[secret]`, `(known after apply)`), or null for none.
    fn to_json(&self) -> Value {
        match self {
            Shown::None => Value::Null,
            other => Value::String(other.to_string()),
        }
    }
}

fn diffs_json(diffs: &[PropDiff]) -> Value {
    diffs
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name, "old": d.old.to_json(), "new": d.new.to_json(), "replaces": d.replaces,
            })
        })
        .collect()
}

impl Plan {
    /// The plan as JSON (what `preview --json` prints and the Python `Plan` holds): the
    /// stack, the steps and the drift with their diffs (secrets as `[secret]`), and the text.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "stack": self.stack,
            "steps": self.steps.iter().map(|s| serde_json::json!({
                "urn": s.urn, "type_name": s.type_name, "name": s.name, "parent": s.parent,
                "op": s.op.to_string(), "diffs": diffs_json(&s.diffs),
            })).collect::<Vec<_>>(),
            "drift": self.drift.iter().map(|d| serde_json::json!({
                "urn": d.urn, "deleted": d.deleted, "diffs": diffs_json(&d.diffs),
            })).collect::<Vec<_>>(),
            "text": self.to_string(),
        })
    }
}

impl Event {
    /// The event as JSON: `kind` (started, finished, failed, skipped, progress, notice),
    /// `urn`, `op`, and `duration` (seconds), `error` or `message` as the kind has them.
    pub fn to_json(&self) -> Value {
        match self {
            Event::Started { urn, op } => {
                serde_json::json!({"kind": "started", "urn": urn, "op": op.to_string()})
            }
            Event::Finished { urn, op, duration } => serde_json::json!({
                "kind": "finished", "urn": urn, "op": op.to_string(),
                "duration": {"secs": duration.as_secs(), "nanos": duration.subsec_nanos()},
            }),
            Event::Failed { urn, op, error } => serde_json::json!(
                {"kind": "failed", "urn": urn, "op": op.to_string(), "error": error}
            ),
            Event::Skipped { urn, because } => serde_json::json!(
                {"kind": "skipped", "urn": urn, "op": "skip", "error": format!("skipped: {because} failed")}
            ),
            Event::Progress { urn, message } => serde_json::json!(
                {"kind": "progress", "urn": urn, "op": "progress", "message": message}
            ),
            Event::Notice { message } => serde_json::json!(
                {"kind": "notice", "urn": "", "op": "notice", "message": message}
            ),
        }
    }
}
