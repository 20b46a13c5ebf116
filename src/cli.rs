//! A command line for every stack program, with the commands and habits of Pulumi and
//! Terraform (see `docs/cli.md`).
//!
//! ```no_run
//! use mvi::stack::resources::{Bucket, BucketArgs};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     mvi::cli::Program::new("shop")
//!         .main(|stack| {
//!             let assets = Bucket::new(stack, "assets", BucketArgs::new("shop-assets"))?;
//!             stack.export("bucket", &assets.name)
//!         })
//!         .await
//! }
//! ```
//!
//! `shop preview`, `shop up --yes`, `shop destroy --yes`, `shop outputs --json`, ... Exit
//! codes: 0 done (or nothing to do), 1 an error, 2 changes or drift found under
//! `--expect-no-changes` (Terraform's `-detailed-exitcode`).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use mvi_core::stack::{
    BlobStore, Event, FileStore, Options, Plan, Props, Stack, StateStore, StepOp,
};
use mvi_core::{Cloud, Error, ErrorKind, Op, Result, Service};
use serde_json::Value;

/// Exit code: done, or nothing to do.
pub const EXIT_OK: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: changes (or drift) found under `--expect-no-changes`.
pub const EXIT_CHANGES: u8 = 2;

/// The backend a program runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The local simulator, with its state under `--root`.
    Local,
    /// AWS (credentials, region and endpoints from the environment, as every AWS SDK).
    Aws,
}

/// The command line (parsed with clap).
#[derive(Debug, Parser)]
#[command(about = "Preview, apply and destroy this program's stack", long_about = None)]
pub struct Cli {
    /// Where the resources are made.
    #[arg(
        long,
        env = "MVI_BACKEND",
        value_enum,
        default_value = "local",
        global = true
    )]
    pub backend: Backend,
    /// Where the stack's state lives: a folder, or `s3://bucket/prefix` (a bucket of the
    /// backend's Blob service). Default: `.mvi/stacks`.
    #[arg(long, env = "MVI_STATE", global = true)]
    pub state: Option<String>,
    /// The local simulator's state root. Default: `.mvi/cloud`.
    #[arg(long, env = "MVI_LOCAL_ROOT", global = true)]
    pub root: Option<PathBuf>,
    /// The local simulator's seed (ids are deterministic for a seed).
    #[arg(long, env = "MVI_SEED", global = true)]
    pub seed: Option<u64>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shows what `up` would do; changes nothing.
    Preview {
        /// Shows every changed property, old and new.
        #[arg(long)]
        diff: bool,
        /// Prints the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Exits with 2 if there are changes.
        #[arg(long)]
        expect_no_changes: bool,
        /// Reads the real resources first, and plans against them.
        #[arg(long)]
        refresh: bool,
        /// The resources it touches.
        #[command(flatten)]
        targets: Targets,
    },
    /// Creates, updates, replaces and deletes resources to match the program.
    Up {
        /// Applies without asking.
        #[arg(long, short)]
        yes: bool,
        /// Reads the real resources first (drifted ones are brought back).
        #[arg(long)]
        refresh: bool,
        /// At most this many provider calls at once.
        #[arg(long)]
        parallel: Option<usize>,
        /// Prints events and the result as JSON lines.
        #[arg(long)]
        json: bool,
        /// On the local backend: keeps the cloud running (containers, load balancers,
        /// databases) until Ctrl-C.
        #[arg(long)]
        serve: bool,
        /// The resources it touches.
        #[command(flatten)]
        targets: Targets,
    },
    /// Deletes every resource of the stack (or, with --target, some of them).
    Destroy {
        /// Destroys without asking.
        #[arg(long, short)]
        yes: bool,
        /// Prints events and the result as JSON lines.
        #[arg(long)]
        json: bool,
        /// The resources it touches.
        #[command(flatten)]
        targets: Targets,
    },
    /// Adopts an existing resource as the resource NAME the program declares: it is read
    /// and recorded, nothing is changed (the next `up` brings it to its declaration).
    Import {
        /// The resource type, such as mvi:blob:Bucket.
        #[arg(value_name = "TYPE")]
        type_name: String,
        /// The resource's name in the program.
        name: String,
        /// Its id in the cloud (a bucket's name, a VPC's id, ...).
        id: String,
        /// Records it unprotected (by default an imported resource is protected until an
        /// `up` records the declaration's own setting, as `pulumi import` does).
        #[arg(long)]
        no_protect: bool,
        /// Prints the recorded resource as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reads every real resource and records what changed out of band (drift).
    Refresh {
        /// Exits with 2 if anything drifted.
        #[arg(long)]
        expect_no_changes: bool,
        /// Prints the drift as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints the stack's outputs as of its last `up`.
    Outputs {
        /// As a JSON object.
        #[arg(long)]
        json: bool,
        /// Shows secret outputs (masked as `[secret]` otherwise).
        #[arg(long)]
        show_secrets: bool,
    },
    /// The stack's state.
    State {
        /// What to do with it.
        #[command(subcommand)]
        command: StateCommand,
    },
}

/// Which resources a `preview`, `up` or `destroy` touches (default: all).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Targets {
    /// Only this resource: its URN, its name, a URN pattern with `*`, or a component (all
    /// of its resources); repeat for more. The rest stays as recorded.
    #[arg(long = "target", short = 't', value_name = "URN")]
    pub targets: Vec<String>,
    /// With --target: the resources that depend on the targets too.
    #[arg(long, requires = "targets")]
    pub target_dependents: bool,
}

/// A `state` command.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Lists the resources the stack manages: URN, type and id.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Removes the stack's lock: a stale one (its process gone, or its lease expired), or,
    /// with `--force`, whoever holds it.
    Unlock {
        /// Removes it even if its holder may still be running.
        #[arg(long)]
        force: bool,
    },
}

/// A stack program: its name, its defaults, and the function that declares its resources.
#[derive(Debug, Clone)]
pub struct Program {
    name: String,
    root: PathBuf,
    state: String,
    seed: Option<u64>,
}

fn op(operation: &'static str) -> Op {
    Op::new(Service::Stack, operation)
}

impl Program {
    /// The program of stack `name`, with the default state folder (`.mvi/stacks`) and local
    /// root (`.mvi/cloud`).
    pub fn new(name: impl Into<String>) -> Self {
        Program {
            name: name.into(),
            root: PathBuf::from(".mvi/cloud"),
            state: ".mvi/stacks".into(),
            seed: None,
        }
    }

    /// The default local root (`--root` and `MVI_LOCAL_ROOT` override it).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// The default state location (`--state` and `MVI_STATE` override it).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = state.into();
        self
    }

    /// The default local seed (`--seed` and `MVI_SEED` override it).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Parses the process's arguments and runs the command; the exit code to return from
    /// `main`. Errors are printed on standard error.
    pub async fn main<F>(self, declare: F) -> std::process::ExitCode
    where
        F: Fn(&Stack) -> Result<()>,
    {
        let cli = Cli::parse();
        let mut out = std::io::stdout();
        let code = self.run(cli, declare, &mut out).await;
        std::process::ExitCode::from(code)
    }

    /// Runs `cli`'s command, printing on `out` (errors too, after `error: `); the exit code.
    pub async fn run<F>(&self, cli: Cli, declare: F, out: &mut (dyn Write + Send)) -> u8
    where
        F: Fn(&Stack) -> Result<()>,
    {
        match self.execute(cli, &declare, out).await {
            Ok(code) => code,
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                EXIT_ERROR
            }
        }
    }

    async fn open(&self, cli: &Cli) -> Result<Cloud> {
        match cli.backend {
            #[cfg(feature = "local")]
            Backend::Local => {
                let mut b = mvi_local::LocalCloud::builder()
                    .root(cli.root.clone().unwrap_or_else(|| self.root.clone()));
                if let Some(seed) = cli.seed.or(self.seed) {
                    b = b.seed(seed);
                }
                b.build().await
            }
            #[cfg(feature = "aws")]
            Backend::Aws => mvi_aws::AwsCloud::from_env().build().await,
            #[allow(unreachable_patterns)]
            other => Err(op("cli").unsupported(format!(
                "this program was built without the {other:?} backend (cargo feature \"{}\")",
                format!("{other:?}").to_lowercase()
            ))),
        }
    }

    fn store(&self, cli: &Cli, cloud: &Cloud) -> Result<Arc<dyn StateStore>> {
        let state = cli.state.clone().unwrap_or_else(|| self.state.clone());
        if let Some(rest) = state.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(op("cli").invalid(&state, "--state s3://... must name a bucket"));
            }
            let prefix = match prefix.trim_end_matches('/') {
                "" => String::new(),
                p => format!("{p}/"),
            };
            return Ok(Arc::new(BlobStore::new(
                cloud.blob()?.clone(),
                bucket,
                prefix,
            )));
        }
        Ok(Arc::new(FileStore::new(state)))
    }

    async fn execute<F>(&self, cli: Cli, declare: &F, out: &mut (dyn Write + Send)) -> Result<u8>
    where
        F: Fn(&Stack) -> Result<()>,
    {
        let cloud = self.open(&cli).await?;
        let store = self.store(&cli, &cloud)?;
        let stack = Stack::with_store(&self.name, cloud.clone(), store)?;
        declare(&stack)?;
        let w = |out: &mut (dyn Write + Send), text: &str| {
            writeln!(out, "{text}").map_err(|e| op("cli").internal("stdout", e))
        };
        match cli.command {
            Command::Preview {
                diff,
                json,
                expect_no_changes,
                refresh,
                targets,
            } => {
                let plan = stack.preview_with(options(refresh, None, &targets)).await?;
                if json {
                    w(out, &pretty(&plan.to_json()))?;
                } else {
                    w(out, &plan.to_string())?;
                    if diff {
                        w(out, &diffs(&plan))?;
                    }
                }
                Ok(if expect_no_changes && !plan.is_empty() {
                    EXIT_CHANGES
                } else {
                    EXIT_OK
                })
            }
            Command::Up {
                yes,
                refresh,
                parallel,
                json,
                serve,
                targets,
            } => {
                let opts = options(refresh, parallel, &targets);
                if !yes && !confirm(&stack, opts.clone(), "update", out).await? {
                    return Ok(EXIT_OK);
                }
                let started = Instant::now();
                let printer = progress(&stack, json, started);
                let report = stack.up_with(opts).await;
                let printed = printer.finish().await;
                // What happened is shown whether the run succeeded or not.
                write_lines(out, &printed)?;
                let report = report?;
                if json {
                    w(
                        out,
                        &serde_json::json!({
                            "kind": "done",
                            "plan": report.plan.to_json(),
                            "outputs": masked(&report.outputs, &report.secret_outputs, false),
                            "duration": report.duration.as_secs_f64(),
                        })
                        .to_string(),
                    )?;
                } else {
                    w(out, &summary(&report.plan, report.duration))?;
                    w(
                        out,
                        &outputs_text(&report.outputs, &report.secret_outputs, false),
                    )?;
                }
                if serve {
                    if cli.backend != Backend::Local {
                        return Err(op("cli").invalid(
                            "--serve",
                            "--serve keeps the local simulator running; on AWS the resources run by themselves",
                        ));
                    }
                    w(out, "serving until Ctrl-C ...")?;
                    let _ = out.flush();
                    tokio::signal::ctrl_c()
                        .await
                        .map_err(|e| op("cli").internal("signal", e))?;
                    w(
                        out,
                        "stopped (the resources stay declared; `destroy --yes` deletes them)",
                    )?;
                }
                Ok(EXIT_OK)
            }
            Command::Destroy { yes, json, targets } => {
                let opts = options(true, None, &targets);
                if !yes {
                    let state = stack.state().await?;
                    if !std::io::stdin().is_terminal() {
                        return Err(refuse_without_terminal("destroy"));
                    }
                    let what = if targets.targets.is_empty() {
                        format!("{} resource(s)", state.resources.len())
                    } else {
                        format!("the resources named by --target {:?}", targets.targets)
                    };
                    w(
                        out,
                        &format!("destroy deletes {what} of stack {}.", self.name),
                    )?;
                    if !ask(out, "Do you want to destroy them?")? {
                        return Ok(EXIT_OK);
                    }
                }
                let started = Instant::now();
                let printer = progress(&stack, json, started);
                let report = stack.destroy_with(opts).await;
                let printed = printer.finish().await;
                // What happened is shown whether the run succeeded or not.
                write_lines(out, &printed)?;
                let report = report?;
                if json {
                    w(
                        out,
                        &serde_json::json!({"kind": "done", "plan": report.plan.to_json(),
                            "duration": report.duration.as_secs_f64()})
                        .to_string(),
                    )?;
                } else {
                    w(out, &summary(&report.plan, report.duration))?;
                }
                Ok(EXIT_OK)
            }
            Command::Refresh {
                expect_no_changes,
                json,
            } => {
                let report = stack.refresh().await?;
                if json {
                    w(out, &pretty(&report.plan.to_json()))?;
                } else if report.plan.drift.is_empty() {
                    w(out, "no drift: every resource is as recorded")?;
                } else {
                    w(out, &report.plan.to_string())?;
                }
                Ok(if expect_no_changes && !report.plan.drift.is_empty() {
                    EXIT_CHANGES
                } else {
                    EXIT_OK
                })
            }
            Command::Import {
                type_name,
                name,
                id,
                no_protect,
                json,
            } => {
                let r = stack.import(&type_name, &name, &id, !no_protect).await?;
                let inputs = mvi_core::stack::masked(&r.inputs, &r.secret_inputs);
                if json {
                    w(
                        out,
                        &pretty(&serde_json::json!({
                            "type": r.type_name, "name": r.name, "id": r.id,
                            "protect": r.protect, "inputs": inputs,
                        })),
                    )?;
                } else {
                    w(
                        out,
                        &format!(
                            "imported {} {} (id {}){}; as it is: {}\nthe next `up` brings it to the program's declaration (`preview --diff` shows how)",
                            r.type_name,
                            r.name,
                            r.id,
                            if r.protect { ", protected" } else { "" },
                            Value::Object(inputs),
                        ),
                    )?;
                }
                Ok(EXIT_OK)
            }
            Command::Outputs { json, show_secrets } => {
                let state = stack.state().await?;
                if json {
                    w(
                        out,
                        &pretty(&masked(&state.exports, &state.secret_exports, show_secrets)),
                    )?;
                } else {
                    w(
                        out,
                        &outputs_text(&state.exports, &state.secret_exports, show_secrets),
                    )?;
                }
                Ok(EXIT_OK)
            }
            Command::State { command } => match command {
                StateCommand::List { json } => {
                    let state = stack.state().await?;
                    if json {
                        let list: Vec<Value> = state
                            .resources
                            .iter()
                            .map(|(urn, r)| {
                                serde_json::json!({"urn": urn, "type": r.type_name, "id": r.id})
                            })
                            .collect();
                        w(out, &pretty(&Value::Array(list)))?;
                    } else {
                        for (urn, r) in &state.resources {
                            w(out, &format!("{urn}  {}", r.id))?;
                        }
                    }
                    Ok(EXIT_OK)
                }
                StateCommand::Unlock { force } => {
                    match stack.unlock(force).await? {
                        Some(h) => w(out, &format!("removed the lock held by {h}"))?,
                        None => w(out, "the stack is not locked")?,
                    }
                    Ok(EXIT_OK)
                }
            },
        }
    }
}

fn options(refresh: bool, parallel: Option<usize>, targets: &Targets) -> Options {
    let mut o = Options::default();
    for t in &targets.targets {
        o = o.target(t);
    }
    if targets.target_dependents {
        o = o.target_dependents();
    }
    if !refresh {
        o = o.no_refresh();
    }
    if let Some(n) = parallel {
        o = o.parallelism(n);
    }
    o
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn refuse_without_terminal(command: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Service::Stack,
        "cli",
        format!(
            "{command} asks before changing anything, and there is no terminal to ask on: \
             run it with --yes to go ahead"
        ),
    )
}

/// On a terminal: shows the plan and asks. Without one: refuses (run with `--yes`).
async fn confirm(
    stack: &Stack,
    opts: Options,
    what: &str,
    out: &mut (dyn Write + Send),
) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(refuse_without_terminal("up"));
    }
    let plan = stack.preview_with(opts).await?;
    writeln!(out, "{plan}").map_err(|e| op("cli").internal("stdout", e))?;
    if plan.is_empty() {
        return Ok(true);
    }
    ask(out, &format!("Do you want to perform this {what}?"))
}

fn ask(out: &mut (dyn Write + Send), question: &str) -> Result<bool> {
    write!(out, "{question} [y/N] ").map_err(|e| op("cli").internal("stdout", e))?;
    let _ = out.flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| op("cli").internal("stdin", e))?;
    let yes = matches!(line.trim().to_lowercase().as_str(), "y" | "yes");
    if !yes {
        writeln!(out, "cancelled: nothing was changed")
            .map_err(|e| op("cli").internal("stdout", e))?;
    }
    Ok(yes)
}

/// Every changed property of the plan, old and new (secrets masked).
fn diffs(plan: &Plan) -> String {
    let mut s = String::new();
    for step in plan.steps.iter().filter(|s| s.op != StepOp::Same) {
        for d in &step.diffs {
            s.push_str(&format!("  {} {d}\n", step.name));
        }
    }
    s
}

/// `outputs` with the secret ones shown as `[secret]` unless `show`.
fn masked(outputs: &Props, secret: &BTreeSet<String>, show: bool) -> Value {
    Value::Object(if show {
        outputs.clone()
    } else {
        mvi_core::stack::masked(outputs, secret)
    })
}

fn outputs_text(outputs: &Props, secret: &BTreeSet<String>, show: bool) -> String {
    if outputs.is_empty() {
        return "no outputs".into();
    }
    let Value::Object(m) = masked(outputs, secret, show) else {
        return String::new();
    };
    let width = m.keys().map(String::len).max().unwrap_or(0);
    let mut s = String::from("Outputs:");
    for (k, v) in m {
        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        s.push_str(&format!("\n    {k:<width$}  {v}"));
    }
    s
}

fn summary(plan: &Plan, duration: std::time::Duration) -> String {
    let mut parts = Vec::new();
    for (op, word) in [
        (StepOp::Create, "created"),
        (StepOp::Update, "updated"),
        (StepOp::Replace, "replaced"),
        (StepOp::Delete, "deleted"),
        (StepOp::Import, "imported"),
        (StepOp::Same, "unchanged"),
    ] {
        let n = plan.count(op);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    if parts.is_empty() {
        parts.push("nothing to do".into());
    }
    format!("Resources: {}. Duration: {duration:.1?}", parts.join(", "))
}

fn write_lines(out: &mut (dyn Write + Send), lines: &[String]) -> Result<()> {
    for l in lines {
        writeln!(out, "{l}").map_err(|e| op("cli").internal("stdout", e))?;
    }
    Ok(())
}

/// Shows the stack's events as they come. On a terminal (without `--json`): a live display
/// on standard error, a spinner per resource in flight with its elapsed time, and a line per
/// step done. Otherwise the events are kept and written to the command's output at the end,
/// one line (or JSON object, with `--json`) per event.
struct Progress {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

/// Where the events go: kept lines, or the live display.
enum Sink {
    Kept { json: bool, lines: Vec<String> },
    Live(Live),
}

/// The live display: a spinner per step in flight, above the lines of the steps done.
struct Live {
    bars: indicatif::MultiProgress,
    in_flight: std::collections::HashMap<String, indicatif::ProgressBar>,
}

impl Live {
    fn new() -> Self {
        Live {
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            in_flight: Default::default(),
        }
    }

    fn show(&mut self, e: &Event, started: Instant) {
        match e {
            Event::Started { urn, op } => {
                let style = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
                let bar = self.bars.add(
                    indicatif::ProgressBar::new_spinner()
                        .with_style(style)
                        .with_message(format!("{op:<8} {}", short(urn))),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.in_flight.insert(urn.clone(), bar);
            }
            Event::Progress { urn, message } => {
                if let Some(bar) = self.in_flight.get(urn) {
                    bar.set_message(format!("{}: {message}", short(urn)));
                }
            }
            Event::Finished { urn, .. } | Event::Failed { urn, .. } => {
                if let Some(bar) = self.in_flight.remove(urn) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                let _ = self.bars.println(event_line(e, started));
            }
            Event::Skipped { .. } | Event::Notice { .. } => {
                let _ = self.bars.println(event_line(e, started));
            }
        }
    }
}

impl Sink {
    fn show(&mut self, e: Event, started: Instant) {
        match self {
            Sink::Kept { json: true, lines } => lines.push(e.to_json().to_string()),
            Sink::Kept { json: false, lines } => lines.push(event_line(&e, started)),
            Sink::Live(live) => live.show(&e, started),
        }
    }

    fn finish(self) -> Vec<String> {
        match self {
            Sink::Kept { lines, .. } => lines,
            Sink::Live(live) => {
                let _ = live.bars.clear();
                Vec::new()
            }
        }
    }
}

fn progress(stack: &Stack, json: bool, started: Instant) -> Progress {
    let mut events = stack.events();
    let mut sink = if !json && std::io::stderr().is_terminal() {
        Sink::Live(Live::new())
    } else {
        Sink::Kept {
            json,
            lines: Vec::new(),
        }
    };
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                got = events.recv() => match got {
                    Ok(e) => sink.show(e, started),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
                _ = &mut stopped => {
                    // Everything the run sent is in the channel by now.
                    while let Ok(e) = events.try_recv() {
                        sink.show(e, started);
                    }
                    break;
                }
            }
        }
        sink.finish()
    });
    Progress { stop, task }
}

impl Progress {
    /// The lines kept, with every event the finished run sent.
    async fn finish(self) -> Vec<String> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn short(urn: &str) -> &str {
    urn.rsplit("::").next().unwrap_or(urn)
}

fn event_line(e: &Event, started: Instant) -> String {
    let at = format!("[{:>6.1?}]", started.elapsed());
    match e {
        Event::Started { urn, op } => format!("{at} {op:<8} {} ...", short(urn)),
        Event::Finished { urn, op, duration } => {
            format!("{at} {op:<8} {} done in {duration:.1?}", short(urn))
        }
        Event::Failed { urn, op, error } => format!("{at} {op:<8} {} FAILED: {error}", short(urn)),
        Event::Skipped { urn, because } => format!(
            "{at} skipped  {} (because {} failed)",
            short(urn),
            short(because)
        ),
        Event::Progress { urn, message } => format!("{at}          {}: {message}", short(urn)),
        Event::Notice { message } => format!("{at} note: {message}"),
    }
}
