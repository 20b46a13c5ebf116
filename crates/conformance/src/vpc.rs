//! VPC cases.

use mvi_core::Tags;
use mvi_core::vpc::{Direction, Peer, Rule};

use crate::{Ctx, Outcome, ensure, expect_err};

/// Every VPC case, as tests against `$target`.
#[macro_export]
macro_rules! vpc_cases {
    ($target:expr) => {
        $crate::__cases! { $target;
            vpc_create_list_delete => $crate::vpc::create_list_delete;
            vpc_invalid_cidr_refused => $crate::vpc::invalid_cidr_refused;
            vpc_subnets_in_zones => $crate::vpc::subnets_in_zones;
            vpc_subnet_outside_vpc_refused => $crate::vpc::subnet_outside_vpc_refused;
            vpc_overlapping_subnets_refused => $crate::vpc::overlapping_subnets_refused;
            vpc_unknown_zone_refused => $crate::vpc::unknown_zone_refused;
            vpc_unknown_vpc_not_found => $crate::vpc::unknown_vpc_not_found;
            vpc_delete_with_subnets_refused => $crate::vpc::delete_with_subnets_refused;
            vpc_security_group_rules => $crate::vpc::security_group_rules;
            vpc_duplicate_group_name_refused => $crate::vpc::duplicate_group_name_refused;
            vpc_bad_rules_refused => $crate::vpc::bad_rules_refused;
            vpc_referenced_group_delete_refused => $crate::vpc::referenced_group_delete_refused;
            vpc_state_survives_reopen => $crate::vpc::state_survives_reopen [Reopen];
        }
    };
}

fn tcp(port: u16, peer: Peer) -> Rule {
    Rule {
        direction: Direction::Ingress,
        from_port: port,
        to_port: port,
        peer,
    }
}

fn tags(ctx: &Ctx) -> Tags {
    [("Name".to_string(), ctx.name("vpc"))].into()
}

/// A VPC is created with its block, listed, and deleted.
pub async fn create_list_delete(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.10.0.0/16", tags(ctx)).await?;
    ensure!(vpc.cidr == "10.10.0.0/16", "cidr {}", vpc.cidr);
    ensure!(
        net.list_vpcs().await?.iter().any(|v| v.id == vpc.id),
        "new VPC not listed"
    );
    net.delete_vpc(&vpc.id).await?;
    ensure!(
        !net.list_vpcs().await?.iter().any(|v| v.id == vpc.id),
        "deleted VPC still listed"
    );
    Ok(())
}

/// Malformed blocks, host bits and prefixes outside /16../28 are InvalidArgument.
pub async fn invalid_cidr_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    for bad in [
        "10.0.0.1/16",
        "10.0.0.0",
        "10.0.0.0/8",
        "10.0.0.0/29",
        "not-a-cidr",
        "10.0.0.0/99",
        // As EC2: no leading zeros, no sign.
        "10.0.0.0/016",
        "10.0.0.0/+16",
    ] {
        let err = expect_err!(net.create_vpc(bad, tags(ctx)).await, InvalidArgument);
        ensure!(
            err.to_string().contains(bad),
            "error does not name {bad}: {err}"
        );
    }
    Ok(())
}

/// Subnets are created inside the VPC in the listed zones, and listed per VPC.
pub async fn subnets_in_zones(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zones = net.list_zones().await?;
    ensure!(zones.len() >= 2, "need two zones, got {zones:?}");
    let vpc = net.create_vpc("10.20.0.0/16", tags(ctx)).await?;
    let a = net
        .create_subnet(&vpc.id, "10.20.1.0/24", &zones[0], true)
        .await?;
    let b = net
        .create_subnet(&vpc.id, "10.20.2.0/24", &zones[1], false)
        .await?;
    ensure!(
        a.zone == zones[0] && b.zone == zones[1],
        "zones {} {}",
        a.zone,
        b.zone
    );
    ensure!(a.public && !b.public, "public flags lost");
    let mut listed: Vec<String> = net
        .list_subnets(&vpc.id)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    listed.sort();
    let mut want = vec![a.id.clone(), b.id.clone()];
    want.sort();
    ensure!(listed == want, "listed {listed:?}, want {want:?}");
    net.delete_subnet(&a.id).await?;
    net.delete_subnet(&b.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// A subnet outside its VPC's block is InvalidArgument.
pub async fn subnet_outside_vpc_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zone = net.list_zones().await?.remove(0);
    let vpc = net.create_vpc("10.30.0.0/16", tags(ctx)).await?;
    expect_err!(
        net.create_subnet(&vpc.id, "10.31.0.0/24", &zone, false)
            .await,
        InvalidArgument
    );
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// Two subnets of one VPC may not overlap.
pub async fn overlapping_subnets_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zone = net.list_zones().await?.remove(0);
    let vpc = net.create_vpc("10.40.0.0/16", tags(ctx)).await?;
    let a = net
        .create_subnet(&vpc.id, "10.40.0.0/24", &zone, false)
        .await?;
    expect_err!(
        net.create_subnet(&vpc.id, "10.40.0.128/25", &zone, false)
            .await,
        InvalidArgument
    );
    net.delete_subnet(&a.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// A zone the region does not have is InvalidArgument.
pub async fn unknown_zone_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.50.0.0/16", tags(ctx)).await?;
    expect_err!(
        net.create_subnet(&vpc.id, "10.50.1.0/24", "mars-1z", false)
            .await,
        InvalidArgument
    );
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// Operations on a VPC, subnet or group that does not exist are NotFound.
pub async fn unknown_vpc_not_found(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zone = net.list_zones().await?.remove(0);
    expect_err!(
        net.create_subnet("vpc-0123456789abcdef0", "10.0.1.0/24", &zone, false)
            .await,
        NotFound
    );
    expect_err!(net.delete_vpc("vpc-0123456789abcdef0").await, NotFound);
    expect_err!(
        net.delete_subnet("subnet-0123456789abcdef0").await,
        NotFound
    );
    expect_err!(
        net.describe_security_group("sg-0123456789abcdef0").await,
        NotFound
    );
    Ok(())
}

/// A VPC that still has subnets cannot be deleted.
pub async fn delete_with_subnets_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zone = net.list_zones().await?.remove(0);
    let vpc = net.create_vpc("10.60.0.0/16", tags(ctx)).await?;
    let sub = net
        .create_subnet(&vpc.id, "10.60.1.0/24", &zone, false)
        .await?;
    expect_err!(net.delete_vpc(&vpc.id).await, PreconditionFailed);
    net.delete_subnet(&sub.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// Rules are added, shown, refused twice, and revoked.
pub async fn security_group_rules(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.70.0.0/16", tags(ctx)).await?;
    let lb = net.create_security_group(&vpc.id, &ctx.name("lb")).await?;
    let app = net.create_security_group(&vpc.id, &ctx.name("app")).await?;
    let from_lb = tcp(8080, Peer::Group(lb.id.clone()));
    let https = tcp(443, Peer::Cidr("0.0.0.0/0".into()));
    net.authorize(&app.id, from_lb.clone()).await?;
    net.authorize(&lb.id, https.clone()).await?;
    let described = net.describe_security_group(&app.id).await?;
    ensure!(
        described.rules.contains(&from_lb),
        "rule missing: {:?}",
        described.rules
    );
    expect_err!(net.authorize(&app.id, from_lb.clone()).await, AlreadyExists);
    net.revoke(&app.id, from_lb.clone()).await?;
    ensure!(
        !net.describe_security_group(&app.id)
            .await?
            .rules
            .contains(&from_lb),
        "revoked rule still there"
    );
    expect_err!(net.revoke(&app.id, from_lb).await, NotFound);
    net.revoke(&lb.id, https).await?;
    net.delete_security_group(&app.id).await?;
    net.delete_security_group(&lb.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// Two groups of one VPC cannot share a name.
pub async fn duplicate_group_name_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.80.0.0/16", tags(ctx)).await?;
    let name = ctx.name("web");
    let g = net.create_security_group(&vpc.id, &name).await?;
    expect_err!(
        net.create_security_group(&vpc.id, &name).await,
        AlreadyExists
    );
    net.delete_security_group(&g.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// Reversed port ranges, bad blocks and unknown peer groups are refused.
pub async fn bad_rules_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.90.0.0/16", tags(ctx)).await?;
    let g = net.create_security_group(&vpc.id, &ctx.name("g")).await?;
    let reversed = Rule {
        direction: Direction::Ingress,
        from_port: 90,
        to_port: 80,
        peer: Peer::Cidr("10.0.0.0/8".into()),
    };
    expect_err!(net.authorize(&g.id, reversed).await, InvalidArgument);
    expect_err!(
        net.authorize(&g.id, tcp(80, Peer::Cidr("10.0.0.0/99".into())))
            .await,
        InvalidArgument
    );
    expect_err!(
        net.authorize(&g.id, tcp(80, Peer::Group("sg-0123456789abcdef0".into())))
            .await,
        NotFound
    );
    ensure!(
        net.describe_security_group(&g.id).await?.rules.is_empty(),
        "a refused rule was kept"
    );
    net.delete_security_group(&g.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// A group that another group's rule refers to cannot be deleted.
pub async fn referenced_group_delete_refused(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let vpc = net.create_vpc("10.100.0.0/16", tags(ctx)).await?;
    let lb = net.create_security_group(&vpc.id, &ctx.name("lb")).await?;
    let app = net.create_security_group(&vpc.id, &ctx.name("app")).await?;
    let rule = tcp(80, Peer::Group(lb.id.clone()));
    net.authorize(&app.id, rule.clone()).await?;
    expect_err!(net.delete_security_group(&lb.id).await, PreconditionFailed);
    net.revoke(&app.id, rule).await?;
    net.delete_security_group(&lb.id).await?;
    net.delete_security_group(&app.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}

/// VPCs, subnets and rules survive a restart.
pub async fn state_survives_reopen(ctx: &mut Ctx) -> Outcome {
    let net = ctx.cloud().networks()?.clone();
    let zone = net.list_zones().await?.remove(0);
    let vpc = net.create_vpc("10.110.0.0/16", tags(ctx)).await?;
    let sub = net
        .create_subnet(&vpc.id, "10.110.1.0/24", &zone, true)
        .await?;
    let g = net.create_security_group(&vpc.id, &ctx.name("g")).await?;
    let rule = tcp(5432, Peer::Cidr("10.110.0.0/16".into()));
    net.authorize(&g.id, rule.clone()).await?;
    drop(net);
    ctx.reopen().await?;
    let net = ctx.cloud().networks()?.clone();
    ensure!(
        net.list_vpcs().await?.iter().any(|v| v.id == vpc.id),
        "VPC lost"
    );
    ensure!(
        net.list_subnets(&vpc.id).await? == vec![sub.clone()],
        "subnet lost"
    );
    ensure!(
        net.describe_security_group(&g.id).await?.rules == vec![rule],
        "rule lost"
    );
    net.delete_security_group(&g.id).await?;
    net.delete_subnet(&sub.id).await?;
    net.delete_vpc(&vpc.id).await?;
    Ok(())
}
