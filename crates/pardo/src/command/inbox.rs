//! [`Inbox`]: the inputs read ahead of the runner's slots, handed straight from the input
//! thread to whichever slot is free.
//!
//! A bounded queue with two kinds of waiting kept cheap at the launch rate of trivial jobs
//! (thousands a second): a slot that finds an item takes it without waking anybody, and the
//! input thread, once the queue is full, is woken only after half of it has been taken, so it
//! reads a run of inputs per wakeup instead of one. Slots wait only when the queue is empty.
//! Both sides see an end: the input thread [`end`](Inbox::end)s it, the slots
//! [`close`](Inbox::close) it, and [`nudge`](Inbox::nudge) makes waiting slots look at their
//! stop condition again.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use crate::sync::{lock, wait};

/// See the [module docs](self).
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    /// Slots wait here for an item, the end, or a nudge.
    ready: Condvar,
    /// The input thread waits here for room.
    room: Condvar,
    cap: usize,
}

struct State<T> {
    items: VecDeque<T>,
    /// Items taken so far: the last one's number in input order (from 1).
    taken: u64,
    /// No more items will come.
    ended: bool,
    /// Nobody takes items any more; pushing fails.
    closed: bool,
    /// The input thread waits for room and has not been woken yet.
    reader_waits: bool,
    /// Slots waiting for an item.
    takers: usize,
}

impl<T> Inbox<T> {
    /// An inbox holding at most `cap` items (at least 1).
    pub(crate) fn new(cap: usize) -> Inbox<T> {
        let cap = cap.max(1);
        Inbox {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap),
                taken: 0,
                ended: false,
                closed: false,
                reader_waits: false,
                takers: 0,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            cap,
        }
    }

    /// Adds `item`, waiting while the inbox is full; false (the item dropped) once it is closed.
    pub(crate) fn push(&self, item: T) -> bool {
        let mut st = lock(&self.state);
        while st.items.len() >= self.cap && !st.closed {
            st.reader_waits = true;
            st = wait(&self.room, st);
        }
        st.reader_waits = false;
        if st.closed {
            return false;
        }
        st.items.push_back(item);
        if st.takers > 0 {
            self.ready.notify_one();
        }
        true
    }

    /// No more items will come; slots take what is left, then learn of the end.
    pub(crate) fn end(&self) {
        lock(&self.state).ended = true;
        self.ready.notify_all();
    }

    /// How many items are waiting, once the inputs ended (`None` before: more may come).
    pub(crate) fn left_after_end(&self) -> Option<usize> {
        let st = lock(&self.state);
        st.ended.then_some(st.items.len())
    }

    /// Nobody will take items any more: what is queued is dropped and the next push fails.
    pub(crate) fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        st.items.clear();
        drop(st);
        self.room.notify_all();
    }

    /// Makes every waiting slot look at its stop condition again. Set the condition first.
    pub(crate) fn nudge(&self) {
        let _st = lock(&self.state);
        self.ready.notify_all();
    }

    /// The next item with its number in input order (from 1), waiting while the inbox is
    /// empty; `None` once the inputs ended and every item was taken, or as soon as `stop`
    /// returns true (it is asked under the inbox's lock, before every look and after every
    /// wakeup).
    pub(crate) fn take(&self, stop: &dyn Fn() -> bool) -> Option<(u64, T)> {
        let mut st = lock(&self.state);
        loop {
            if stop() {
                return None;
            }
            if let Some(item) = st.items.pop_front() {
                st.taken += 1;
                // Refill in runs: the input thread wakes once half the inbox was taken.
                if st.reader_waits && st.items.len() < self.cap.div_ceil(2) {
                    st.reader_waits = false;
                    self.room.notify_one();
                }
                return Some((st.taken, item));
            }
            if st.ended {
                return None;
            }
            st.takers += 1;
            st = wait(&self.ready, st);
            st.takers -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    fn never() -> bool {
        false
    }

    #[test]
    fn items_come_out_numbered_in_input_order_then_the_end() {
        let inbox = Inbox::new(2);
        assert!(inbox.push("a"));
        assert!(inbox.push("b"));
        inbox.end();
        assert_eq!(inbox.take(&never), Some((1, "a")));
        assert_eq!(inbox.take(&never), Some((2, "b")));
        assert_eq!(inbox.take(&never), None);
    }

    #[test]
    fn the_reader_waits_for_room_and_never_holds_more_than_the_bound() {
        let inbox = Arc::new(Inbox::new(4));
        let most = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (inbox, most) = (Arc::clone(&inbox), Arc::clone(&most));
            std::thread::spawn(move || {
                for i in 0..1000u32 {
                    assert!(inbox.push(i));
                    let held = lock(&inbox.state).items.len();
                    most.fetch_max(held, Ordering::SeqCst);
                }
                inbox.end();
            })
        };
        let mut seen = Vec::new();
        while let Some((seq, item)) = inbox.take(&never) {
            assert_eq!(seq, u64::from(item) + 1);
            seen.push(item);
        }
        reader.join().unwrap();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn a_nudge_lets_a_waiting_slot_see_its_stop_condition() {
        let inbox: Arc<Inbox<u8>> = Arc::new(Inbox::new(1));
        let stop = Arc::new(AtomicBool::new(false));
        let slot = {
            let (inbox, stop) = (Arc::clone(&inbox), Arc::clone(&stop));
            std::thread::spawn(move || inbox.take(&|| stop.load(Ordering::SeqCst)))
        };
        // Until the slot waits inside `take` for an item that will never come.
        while lock(&inbox.state).takers == 0 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::SeqCst);
        inbox.nudge();
        assert_eq!(slot.join().unwrap(), None);
    }

    #[test]
    fn a_closed_inbox_refuses_items_and_frees_a_waiting_reader() {
        let inbox = Arc::new(Inbox::new(1));
        assert!(inbox.push(1));
        let reader = {
            let inbox = Arc::clone(&inbox);
            std::thread::spawn(move || inbox.push(2))
        };
        // The reader is blocked (the inbox is full) or not yet there; either way it ends.
        inbox.close();
        assert!(!reader.join().unwrap());
        assert!(!inbox.push(3));
    }
}
