//! The request body relay of a full-duplex exchange (`proxy::duplex`), shared by the
//! exchange's two h2 streams: whichever of them the pipeline waits on (the upstream stream
//! for response bytes, the client stream for flow-control capacity) polls it too, so that the
//! request body keeps moving for as long as the response direction waits, in the one task.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// A request body relay: `Ok` once the body is through, `Err` when it failed.
pub type Pump = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A [`Pump`] shared by the two streams of an exchange, dropped once it ended.
#[derive(Clone, Default)]
pub struct SharedPump(Rc<Cell<Option<Pump>>>);

impl std::fmt::Debug for SharedPump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPump")
            .field("running", &self.is_running())
            .finish()
    }
}

impl SharedPump {
    /// Shares `pump`.
    pub fn new(pump: Pump) -> Self {
        Self(Rc::new(Cell::new(Some(pump))))
    }

    /// Polls the pump if it still runs: ready with its error when it failed, pending while it
    /// runs and after it finished.
    pub fn poll_failure(&self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(mut pump) = self.0.take() else {
            return Poll::Pending;
        };
        match pump.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(e),
            Poll::Pending => {
                self.0.set(Some(pump));
                Poll::Pending
            }
        }
    }

    /// Whether the pump has not ended yet.
    pub fn is_running(&self) -> bool {
        let pump = self.0.take();
        let running = pump.is_some();
        self.0.set(pump);
        running
    }
}
