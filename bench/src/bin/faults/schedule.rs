//! When the faults happen: scaled to the run's duration, all of them while
//! messages are being sent (one that begins after the load is counted: it
//! proves nothing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::load::Tally;
use crate::target::Target;

/// The fault schedule, scaled to the run's duration.
pub async fn inject(
    target: Arc<Target>,
    tally: Arc<Tally>,
    sending: Arc<AtomicBool>,
    args: Args,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let at = |fraction: f64| start + args.duration.mul_f64(fraction);
    // A fault that begins after the load ended proves nothing: count it.
    let begin = |what: &str| {
        eprintln!("fault: {what}");
        if !sending.load(Ordering::SeqCst) {
            tally.faults_after_load.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Containers take longer to kill and start than local processes.
    let kill_every = match target.as_ref() {
        Target::Local { .. } => Duration::from_secs(3),
        Target::Compose(_) => Duration::from_secs(5),
    };
    let killer = {
        let (target, tally, sending) = (target.clone(), tally.clone(), sending.clone());
        tokio::spawn(async move {
            let mut round = 0usize;
            while sending.load(Ordering::SeqCst) {
                tokio::time::sleep(kill_every).await;
                if !sending.load(Ordering::SeqCst) {
                    break;
                }
                round += 1;
                match target.kill_consumer(round).await {
                    Ok(true) => {
                        tally.consumer_kills.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => break,
                    Err(e) => eprintln!("cannot kill and restart a consumer: {e:#}"),
                }
            }
        })
    };

    let names = target.fault_names();
    tokio::time::sleep_until(at(0.15).into()).await;
    begin(names[1]);
    target.restart_rabbit().await?;
    tally.rabbit_app_restarts.fetch_add(1, Ordering::Relaxed);

    tokio::time::sleep_until(at(0.35).into()).await;
    begin(names[2]);
    target.kill_rabbit().await?;
    tally.rabbit_hard_kills.fetch_add(1, Ordering::Relaxed);

    tokio::time::sleep_until(at(0.55).into()).await;
    begin(&format!("{} for {:?}", names[3], args.pg_down));
    target.stop_postgres(args.pg_down).await?;
    tally.pg_restarts.fetch_add(1, Ordering::Relaxed);

    // Keep killing consumers until the load is done.
    while sending.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    killer.await?;
    Ok(())
}

/// The webhook receiver goes down for 5 s at 40 % of the run: notifications
/// owed then are retried until it is back.
pub async fn receiver_outage(receiver: Arc<e2e::Receiver>, duration: Duration) {
    tokio::time::sleep(duration.mul_f64(0.4)).await;
    receiver.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    receiver.restart().await;
}
