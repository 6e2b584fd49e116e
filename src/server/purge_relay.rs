//! The purge relay: hands the purges one worker caused (an unsafe request's invalidation)
//! to every other worker, and an operator's purges (admin API) to every worker, counting
//! what went. Workers never talk to each other: a purge goes through here, off their path.
//! With `[redis]`, purges are also published to the other instances sharing it (see
//! `cache_sync`), and theirs applied here.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::worker::Command;
use crate::cache::Purge;

/// Longest wait for every worker's count of an operator's purge.
const PURGE_REPLY: Duration = Duration::from_secs(2);

/// Sends `purge` to every worker except `except`; with `counts`, each worker reports how
/// many entries it removed there.
pub(super) fn broadcast(
    workers: &[flume::Sender<Command>],
    purge: &Arc<Purge>,
    except: Option<usize>,
    counts: Option<&Sender<usize>>,
) -> usize {
    let mut sent = 0;
    for (id, tx) in workers.iter().enumerate() {
        if Some(id) != except
            && tx
                .send(Command::Purge(Arc::clone(purge), counts.cloned()))
                .is_ok()
        {
            sent += 1;
        }
    }
    sent
}

/// Applies an operator's purge on every worker and sums what went (workers that do not
/// answer within [`PURGE_REPLY`] count as 0).
pub(super) fn purge_all(workers: &[flume::Sender<Command>], purge: Purge) -> usize {
    let (tx, rx) = crossbeam_channel::unbounded();
    let sent = broadcast(workers, &Arc::new(purge), None, Some(&tx));
    let deadline = Instant::now() + PURGE_REPLY;
    (0..sent)
        .map_while(|_| rx.recv_deadline(deadline).ok())
        .sum()
}

/// Starts the relay of workers' purges: each goes to every other worker, and to `publish`
/// (other instances) when set. Ends when every worker dropped its sender.
pub(super) fn start(
    workers: Vec<flume::Sender<Command>>,
    from_workers: Receiver<(usize, Purge)>,
    publish: Option<Sender<Purge>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringgate-purges".into())
        .spawn(move || {
            for (origin, purge) in from_workers {
                let purge = Arc::new(purge);
                broadcast(&workers, &purge, Some(origin), None);
                if let Some(publish) = &publish {
                    let _ = publish.try_send((*purge).clone());
                }
            }
        })
}
