//! Schedules in EventBridge Scheduler: the schedule group, the target (ECS RunTask) and the cron
//! translation.

#[allow(clippy::wildcard_imports)]
use super::*;

impl EcsContainers {
    /// The schedule group of this handle's schedules: one per cluster, named as it.
    pub(super) fn group(&self) -> &str {
        &self.cluster
    }

    /// Creates the schedule group unless it exists. It is looked up first: CreateScheduleGroup
    /// of an existing group is a conflict on AWS (and moto replaces the group, dropping its
    /// schedules).
    pub(super) async fn ensure_group(&self, op: Op) -> Result<()> {
        if self.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let group = self.group();
        match self.scheduler.get_schedule_group().name(group).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let created = self
                    .scheduler
                    .create_schedule_group()
                    .name(group)
                    .tags(
                        aws_sdk_scheduler::types::Tag::builder()
                            .key("mvi:managed")
                            .value("true")
                            .build()
                            .map_err(|e| op.internal(group, e))?,
                    )
                    .send()
                    .await;
                match created {
                    Ok(_) => {}
                    // Another handle made it meanwhile.
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conflict_exception()) => {}
                    Err(e) => return Err(map(op, group, e)),
                }
            }
            Err(e) => return Err(map(op, group, e)),
        }
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Creates the schedule `name` (or updates it when `exists`), firing at `expression` (UTC,
    /// no flexible window) with `target`. A create that finds the schedule made meanwhile
    /// updates it, and an update that finds it gone creates it.
    pub(super) async fn send_schedule(
        &self,
        op: Op,
        name: &str,
        expression: &str,
        cron: &str,
        target: aws_sdk_scheduler::types::Target,
        exists: bool,
    ) -> Result<()> {
        use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState};
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| op.internal(name, e))?;
        let description = format!(
            "mvi schedule `{cron}` (UTC) of ECS cluster {}",
            self.cluster
        );
        // Create and update take the same fields, through builders of distinct types.
        macro_rules! send {
            ($request:expr) => {
                $request
                    .group_name(self.group())
                    .name(name)
                    .description(&description)
                    .schedule_expression(expression)
                    .schedule_expression_timezone("UTC")
                    .flexible_time_window(window.clone())
                    .state(ScheduleState::Enabled)
                    .target(target.clone())
                    .send()
                    .await
            };
        }
        let mut update = exists;
        for _ in 0..2 {
            if update {
                match send!(self.scheduler.update_schedule()) {
                    Ok(_) => return Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_resource_not_found_exception()) =>
                    {
                        update = false;
                    }
                    Err(e) => return Err(map(op, name, e)),
                }
            } else {
                match send!(self.scheduler.create_schedule()) {
                    Ok(_) => return Ok(()),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conflict_exception()) =>
                    {
                        update = true;
                    }
                    Err(e) => {
                        let e = map(op, name, e);
                        if e.is_not_found() {
                            // The group vanished: made again next time.
                            self.group_ready.store(false, Ordering::Release);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Err(op.precondition(
            name,
            "the schedule was created and deleted concurrently; try again",
        ))
    }

    /// The task definition a schedule starts, if the schedule exists.
    pub(super) async fn schedule_target(&self, op: Op, name: &str) -> Result<Option<String>> {
        match self
            .scheduler
            .get_schedule()
            .group_name(self.group())
            .name(name)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.target()
                    .and_then(|t| t.ecs_parameters())
                    .map(|p| p.task_definition_arn().to_owned())
                    .unwrap_or_default(),
            )),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(map(op, name, e)),
        }
    }

    /// The names of this handle's schedules (none if its group does not exist).
    pub(super) async fn schedule_names(&self, op: Op) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = match self
                .scheduler
                .list_schedules()
                .group_name(self.group())
                .set_next_token(token)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(map(op, self.group(), e)),
            };
            names.extend(
                out.schedules()
                    .iter()
                    .filter(|s| s.group_name() == Some(self.group()))
                    .filter_map(|s| s.name().map(str::to_owned)),
            );
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// An EventBridge Scheduler target running one Fargate task of `definition` in the cluster,
/// with the awsvpc configuration of `network`, started with `role`.
pub(super) fn scheduler_target(
    op: Op,
    name: &str,
    cluster_arn: &str,
    role: &str,
    definition: &str,
    network: &NetworkConfiguration,
) -> Result<aws_sdk_scheduler::types::Target> {
    use aws_sdk_scheduler::types as sch;
    let vpc = network.awsvpc_configuration();
    let public = vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled);
    let awsvpc = sch::AwsVpcConfiguration::builder()
        .set_subnets(vpc.map(|v| v.subnets().to_vec()))
        .set_security_groups(vpc.map(|v| v.security_groups().to_vec()))
        .assign_public_ip(if public {
            sch::AssignPublicIp::Enabled
        } else {
            sch::AssignPublicIp::Disabled
        })
        .build()
        .map_err(|e| op.internal(name, e))?;
    let ecs = sch::EcsParameters::builder()
        .task_definition_arn(definition)
        .task_count(1)
        .launch_type(sch::LaunchType::Fargate)
        .network_configuration(
            sch::NetworkConfiguration::builder()
                .awsvpc_configuration(awsvpc)
                .build(),
        )
        .build()
        .map_err(|e| op.internal(name, e))?;
    sch::Target::builder()
        .arn(cluster_arn)
        .role_arn(role)
        .ecs_parameters(ecs)
        .build()
        .map_err(|e| op.internal(name, e))
}

/// The EventBridge Scheduler expression of a five-field cron expression (UTC), checked with
/// the local backend's rules first. Scheduler's cron has six fields (`min hour day-of-month
/// month day-of-week year`), wants `?` in one day field, and numbers weekdays 1–7 from
/// Sunday (cron: 0–7, Sunday being 0 and 7): each field is rebuilt from the set of values it
/// matches, weekdays by name. Unsupported: both day fields restricted (cron runs when either
/// matches; Scheduler cannot say that) and `L`, `W` and `#`.
pub(super) fn scheduler_expression(op: Op, name: &str, cron: &str) -> Result<String> {
    let parsed = parse_cron(op, name, cron)?;
    let p = &parsed.pattern;
    let values = |c: &croner::CronComponent| -> Result<Vec<u16>> {
        if c.has_modifiers() {
            return Err(op.unsupported(format!(
                "schedule {name}: cron expression {cron:?} uses L, W or #, which this backend does not translate for EventBridge Scheduler"
            )));
        }
        Ok(c.values())
    };
    let minutes = render_field(&values(&p.minutes)?, 0, 59);
    let hours = render_field(&values(&p.hours)?, 0, 23);
    let months = render_field(&values(&p.months)?, 1, 12);
    let dom = values(&p.days)?;
    let dow = values(&p.days_of_week)?;
    let (dom, dow) = match (p.is_dom_wildcard(), p.is_dow_wildcard()) {
        (_, true) => (render_field(&dom, 1, 31), "?".to_owned()),
        (true, false) => ("?".to_owned(), render_weekdays(&dow)),
        (false, false) => {
            return Err(op.unsupported(format!(
                "schedule {name}: cron expression {cron:?} restricts both the day of month and the day of week (cron runs when either matches); EventBridge Scheduler takes one of them only"
            )));
        }
    };
    Ok(format!("cron({minutes} {hours} {dom} {months} {dow} *)"))
}

/// A field matching `vals` (sorted) of `lo..=hi`: `*`, `start/step` for a progression running
/// to the end, else a list of values and ranges.
pub(super) fn render_field(vals: &[u16], lo: u16, hi: u16) -> String {
    if vals.len() == usize::from(hi - lo + 1) {
        return "*".into();
    }
    if let [a, b, ..] = vals {
        let step = b - a;
        if step > 1
            && vals.windows(2).all(|w| w[1] - w[0] == step)
            && vals.last().is_some_and(|l| l + step > hi)
        {
            return format!("{a}/{step}");
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < vals.len() {
        let mut j = i;
        while j + 1 < vals.len() && vals[j + 1] == vals[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", vals[i], vals[j]));
        } else {
            parts.extend(vals[i..=j].iter().map(u16::to_string));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// Weekdays (cron's 0–6 from Sunday) by name: `*` for all, else names and ranges, which
/// mean the same in Scheduler's numbering (1–7 from Sunday).
pub(super) fn render_weekdays(days: &[u16]) -> String {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    if days.len() == 7 {
        return "*".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + 1 {
            j += 1;
        }
        let name = |d: u16| NAMES[usize::from(d % 7)];
        if j >= i + 2 {
            parts.push(format!("{}-{}", name(days[i]), name(days[j])));
        } else {
            parts.extend(days[i..=j].iter().map(|d| name(*d).to_owned()));
        }
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_expressions() {
        let x = |cron: &str| scheduler_expression(op("t"), "s", cron);
        for (cron, want) in [
            ("0 3 * * *", "cron(0 3 * * ? *)"),
            ("*/5 * * * *", "cron(0/5 * * * ? *)"),
            ("*/7 * * * *", "cron(0/7 * * * ? *)"),
            ("1-10/3 * * * *", "cron(1,4,7,10 * * * ? *)"),
            ("15,45 */2 * * *", "cron(15/30 0/2 * * ? *)"),
            ("30 2 * * 1-5", "cron(30 2 ? * MON-FRI *)"),
            ("0 0 * * 0", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 7", "cron(0 0 ? * SUN *)"),
            ("0 0 * * 5-7", "cron(0 0 ? * SUN,FRI,SAT *)"),
            ("0 0 * * 0-6", "cron(0 0 ? * * *)"),
            ("0 12 1,15 * *", "cron(0 12 1,15 * ? *)"),
            ("0 12 ? * *", "cron(0 12 * * ? *)"),
            ("0 9-17 * JAN-MAR sat", "cron(0 9-17 ? 1-3 SAT *)"),
            ("5 4 1-3,5 */2 *", "cron(5 4 1-3,5 1/2 ? *)"),
        ] {
            assert_eq!(x(cron).ok().as_deref(), Some(want), "{cron}");
        }
        for unsupported in [
            "0 0 1 * 1",
            "0 0 L * *",
            "0 0 * * 5L",
            "0 0 * * 1#2",
            "0 0 15W * *",
        ] {
            assert_eq!(
                x(unsupported).err().map(|e| e.kind()),
                Some(ErrorKind::Unsupported),
                "{unsupported}"
            );
        }
        assert_eq!(
            x("61 * * * *").err().map(|e| e.kind()),
            Some(ErrorKind::InvalidArgument)
        );
    }
}
