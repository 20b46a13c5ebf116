//! An mvi load balancer in front of one target, for the benchmark: creates a target group
//! with the target (first argument, `127.0.0.1:18080` by default), a load balancer with an
//! HTTP listener (second argument, the port; 0 picks one), prints its URL once the target is
//! healthy, and serves until killed. State is in memory.

use std::time::Duration;

use mvi::lb::{ListenerSpec, LoadBalancerSpec, Protocol, TargetGroupSpec, TargetHealth};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Worker threads: unset, a multi-thread runtime with one worker per core (what
    // `#[tokio::main]` gives a program); `LB_THREADS=0` a current-thread runtime, one thread as
    // nginx's `worker_processes 1`; `LB_THREADS=N` N workers (see docs/lb.md).
    let threads: Option<usize> = std::env::var("LB_THREADS")
        .ok()
        .and_then(|t| t.parse().ok());
    let mut rt = match threads {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    rt.enable_all().build()?.block_on(run())?;
    Ok(())
}

async fn run() -> mvi::Result<()> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let cloud = mvi::local::LocalCloud::builder()
        .in_memory()
        .build()
        .await?;
    let lb = cloud.load_balancers()?.clone();
    let mut group = TargetGroupSpec::new("bench", Protocol::Http);
    group.health_check.interval = Duration::from_millis(500);
    group.health_check.timeout = Duration::from_millis(500);
    lb.create_target_group(group).await?;
    lb.register_targets("bench", vec![target]).await?;
    let info = lb
        .create_load_balancer(LoadBalancerSpec::new(
            "bench",
            vec![ListenerSpec {
                protocol: Protocol::Http,
                port,
                forward: vec![("bench".into(), 1)],
            }],
        ))
        .await?;
    while !lb
        .target_health("bench")
        .await?
        .iter()
        .any(|t| t.health == TargetHealth::Healthy)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for url in &info.urls {
        println!("{url}");
    }
    std::future::pending::<()>().await;
    Ok(())
}
