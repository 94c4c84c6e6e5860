//! [`Lanes`]: a bound on how many CRI reads are in flight at once.
//!
//! Each gRPC call holds an arena in gRPC's core for as long as it is in flight (~18 KiB for a
//! CRI read on this channel). When every pod syncs at the same moment (a restart adopting 100
//! running pods) all of them read the runtime at once, and the allocator keeps the peak of
//! those arenas long after they are freed (docs/PERFORMANCE.md). Reads — lists and statuses,
//! answered in a millisecond or two — therefore take one of a few lanes and wait for a free one.
//! Writes (run, create, start, stop, remove, pull) and streams are never held back: they may
//! take as long as a grace period or a pull, and one pod's must not wait for another's.

use std::sync::{Condvar, Mutex, PoisonError};

/// A counting semaphore: at most `capacity` holders of a [`Lane`] at once.
#[derive(Debug)]
pub struct Lanes {
    capacity: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One taken lane; dropping it frees the lane.
#[derive(Debug)]
pub struct Lane<'a> {
    lanes: &'a Lanes,
}

impl Lanes {
    /// `capacity` lanes (at least one).
    pub fn new(capacity: usize) -> Lanes {
        Lanes {
            capacity: capacity.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free lane and takes it.
    pub fn take(&self) -> Lane<'_> {
        // The counter stays consistent whatever a holder did, so a poisoned lock is still usable.
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        while *busy >= self.capacity {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy += 1;
        Lane { lanes: self }
    }

    /// Lanes taken now.
    pub fn busy(&self) -> usize {
        *self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Lane<'_> {
    fn drop(&mut self) {
        let mut busy = self
            .lanes
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *busy -= 1;
        drop(busy);
        self.lanes.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn no_more_than_capacity_hold_a_lane_at_once() {
        let lanes = Arc::new(Lanes::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (lanes, inside, most) = (lanes.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _lane = lanes.take();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert_eq!(lanes.busy(), 0);
    }

    #[test]
    fn a_dropped_lane_lets_a_waiter_in() {
        let lanes = Arc::new(Lanes::new(1));
        let first = lanes.take();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let lanes = lanes.clone();
            std::thread::spawn(move || {
                let _lane = lanes.take();
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
        assert_eq!(lanes.busy(), 0);
    }

    #[test]
    fn zero_capacity_means_one_lane() {
        let lanes = Lanes::new(0);
        let lane = lanes.take();
        assert_eq!(lanes.busy(), 1);
        drop(lane);
        assert_eq!(lanes.busy(), 0);
    }
}
