//! Polls a connection again in place when it wakes itself while being polled.
//!
//! hyper's HTTP/1 connection wakes its own task on every request with a body: the handler,
//! taking the body, wakes the connection's reader (the same task, in the middle of its poll).
//! tokio then queues the task again and wakes another worker thread to run it, a system call
//! and a thread hop for nothing. [`RepollInPlace`] gives the connection a waker of its own:
//! a wake that comes while the connection is being polled only marks it, and the connection
//! is polled again right away (at most [`MAX_REPOLLS`] times, then it yields to the runtime as
//! before); a wake at any other time wakes the task as usual.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls in a row before the task yields to the runtime (as hyper's own loop does).
const MAX_REPOLLS: usize = 16;

/// A future polled again in place when it wakes itself during its poll.
pub(crate) struct RepollInPlace<F> {
    inner: Pin<Box<F>>,
    wake: Arc<SelfWake>,
    waker: Waker,
}

impl<F> RepollInPlace<F> {
    pub(crate) fn new(inner: F) -> Self {
        let wake = Arc::new(SelfWake::default());
        RepollInPlace {
            inner: Box::pin(inner),
            waker: Waker::from(wake.clone()),
            wake,
        }
    }
}

#[derive(Default)]
struct SelfWake {
    /// Whether the inner future is being polled now.
    polling: AtomicBool,
    /// Whether it was woken since its poll began.
    woken: AtomicBool,
    /// The task's own waker.
    task: AtomicWaker,
}

impl Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Sequentially consistent with the poller's "not polling, then was I woken?": either
        // it sees this mark and polls again, or this sees it has stopped and wakes the task.
        self.woken.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

impl<F: Future> Future for RepollInPlace<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.wake.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..MAX_REPOLLS {
            // Cleared before polling starts: a wake in between finds no poll and wakes the
            // task (spurious at worst), never a lost one.
            this.wake.woken.store(false, SeqCst);
            this.wake.polling.store(true, SeqCst);
            let out = this.inner.as_mut().poll(&mut inner_cx);
            this.wake.polling.store(false, SeqCst);
            if out.is_ready() || !this.wake.woken.load(SeqCst) {
                return out;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that wakes itself `n` times during its polls, then is ready.
    struct WakesItself(usize);

    impl Future for WakesItself {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the polls the runtime makes of `F`.
    struct Counted<F> {
        inner: Pin<Box<F>>,
        polls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl<F: Future> Future for Counted<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            self.polls.fetch_add(1, SeqCst);
            self.inner.as_mut().poll(cx)
        }
    }

    /// How many times the runtime polled `f` until it was ready.
    async fn polls_of<F: Future>(f: F) -> (F::Output, usize) {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = Counted {
            inner: Box::pin(f),
            polls: polls.clone(),
        }
        .await;
        (out, polls.load(SeqCst))
    }

    #[tokio::test]
    async fn self_wakes_are_polled_in_place_and_other_wakes_reach_the_task() {
        // Without it, each self-wake is one more poll by the runtime.
        assert_eq!(polls_of(WakesItself(5)).await.1, 6);
        // With it, five self-wakes are one poll.
        assert_eq!(polls_of(RepollInPlace::new(WakesItself(5))).await.1, 1);
        // More than MAX_REPOLLS: the task yields to the runtime, is woken, and finishes.
        let (_, polls) = polls_of(RepollInPlace::new(WakesItself(3 * MAX_REPOLLS))).await;
        assert_eq!(polls, 4);
        // A wake from elsewhere, after the poll: the task is woken.
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let waiting = tokio::spawn(polls_of(RepollInPlace::new(rx)));
        tokio::task::yield_now().await;
        tx.send(7).unwrap();
        let (got, polls) = waiting.await.unwrap();
        assert_eq!(got.unwrap(), 7);
        assert!(polls >= 2, "polled {polls} times");
    }
}
