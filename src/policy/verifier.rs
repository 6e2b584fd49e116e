//! The password verifier pool: a few threads (`ringgate-verify-N`) that run the slow hash
//! verifications of `basic` policies (argon2, bcrypt: 20–80 ms each), so that a worker never
//! blocks on one.
//!
//! Workers hand a [`Verifier`] a password and its hash; the job goes into one bounded queue
//! shared by the pool's threads, and the worker's task awaits the answer ([`Pending`]) on a
//! oneshot channel while the worker serves its other connections. When the queue is full the
//! submission fails at once and the request is answered 503: a flood of wrong passwords costs
//! each attempt a queue slot at most, never a worker's time or unbounded memory.
//!
//! Only verifications that miss the worker's cache come here; a cached credential is
//! confirmed on the worker without a thread hop (see `policy::state`). Submitting allocates
//! (the job's copies and the answer channel): it happens once per credential per worker, or
//! per failed attempt.

use std::io;
use std::thread::JoinHandle;

use super::basic::verify_password;

/// One verification: the password and hash to check, and where the answer goes.
struct Job {
    password: Box<[u8]>,
    hash: Box<str>,
    answer: flume::Sender<bool>,
}

/// The pool's threads. Dropping the pool leaves them to finish: each exits once every
/// [`Verifier`] (the pool's and the workers') is gone and the queue is empty.
#[derive(Debug)]
pub struct VerifierPool {
    verifier: Verifier,
    threads: Vec<JoinHandle<()>>,
}

impl VerifierPool {
    /// Starts `threads` verifier threads fed by a queue of at most `queue` waiting jobs.
    pub fn start(threads: usize, queue: usize) -> io::Result<Self> {
        let (tx, rx) = flume::bounded::<Job>(queue.max(1));
        let handles = (0..threads.max(1))
            .map(|n| {
                let jobs = rx.clone();
                std::thread::Builder::new()
                    .name(format!("ringgate-verify-{n}"))
                    .spawn(move || run(&jobs))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(VerifierPool {
            verifier: Verifier { queue: tx },
            threads: handles,
        })
    }

    /// A handle for a worker.
    pub fn verifier(&self) -> Verifier {
        self.verifier.clone()
    }

    /// Drops the pool's handle and waits for the threads; call it after the workers (and
    /// with them their handles) are gone, or it waits for them.
    pub fn join(self) {
        let VerifierPool { verifier, threads } = self;
        drop(verifier);
        for thread in threads {
            // A panicked verifier already answered its callers (their channel closed).
            let _ = thread.join();
        }
    }
}

/// A verifier thread: verifies jobs until every handle is gone. A job whose requester has
/// gone (its client disconnected) is skipped.
fn run(jobs: &flume::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if job.answer.is_disconnected() {
            continue;
        }
        let verified = verify_password(&job.password, &job.hash);
        let _ = job.answer.send(verified);
    }
}

/// A worker's handle on the pool: submits verifications.
#[derive(Debug, Clone)]
pub struct Verifier {
    queue: flume::Sender<Job>,
}

impl Verifier {
    /// Queues a verification of `password` against `hash`; `None` when the queue is full
    /// (or the pool is gone): the caller answers "busy" rather than wait.
    pub fn submit(&self, password: &[u8], hash: &str) -> Option<Pending> {
        let (answer, receiver) = flume::bounded(1);
        let job = Job {
            password: password.into(),
            hash: hash.into(),
            answer,
        };
        self.queue.try_send(job).ok()?;
        Some(Pending { answer: receiver })
    }
}

/// The answer to a submitted verification.
#[derive(Debug)]
pub struct Pending {
    answer: flume::Receiver<bool>,
}

impl Pending {
    /// Waits (yielding to the worker's other tasks) for the verification: whether the
    /// password matched. A verifier that died without answering counts as a mismatch.
    pub async fn verified(&self) -> bool {
        self.answer.recv_async().await.unwrap_or(false)
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(future)
    }

    #[test]
    fn verifies_off_the_calling_thread() {
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        let pool = VerifierPool::start(1, 4).expect("pool");
        let verifier = pool.verifier();
        let good = verifier.submit(b"pw", &hash).expect("queued");
        let bad = verifier.submit(b"px", &hash).expect("queued");
        assert!(block_on(good.verified()));
        assert!(!block_on(bad.verified()));
        drop(verifier);
        pool.join();
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        // No thread takes jobs out of this queue.
        let (tx, _rx) = flume::bounded::<Job>(2);
        let verifier = Verifier { queue: tx };
        assert!(verifier.submit(b"a", "h").is_some());
        assert!(verifier.submit(b"b", "h").is_some());
        assert!(verifier.submit(b"c", "h").is_none());
    }

    #[test]
    fn a_gone_pool_answers_no_match() {
        let (tx, rx) = flume::bounded::<Job>(1);
        let verifier = Verifier { queue: tx };
        let pending = verifier.submit(b"a", "h").expect("queued");
        // The queue, with the job and its answer channel, goes with its last end.
        drop(rx);
        drop(verifier);
        assert!(!block_on(pending.verified()));
    }
}
