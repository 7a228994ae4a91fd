//! Property: for any set of tasks and any worker count, every result arrives exactly once and
//! there is exactly one record per task.

mod support;

use std::collections::BTreeSet;

use pardo::{as_completed, ThreadPool};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_task_delivers_once_and_is_recorded_once(
        work in proptest::collection::vec(0u64..5_000, 0..120),
        workers in 1usize..5,
        unordered in any::<bool>(),
    ) {
        let pool = ThreadPool::builder().workers(workers).build().unwrap();
        let handles: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(i, &w)| pool.submit(move || { support::spin(w); i }))
            .collect();
        let mut got: Vec<usize> = if unordered {
            as_completed(handles).map(|(_, r)| r.unwrap()).collect()
        } else {
            handles.into_iter().map(|h| h.wait().unwrap()).collect()
        };
        got.sort();
        prop_assert_eq!(got, (0..work.len()).collect::<Vec<_>>());
        let records = pool.recorder().records();
        prop_assert_eq!(records.len(), work.len());
        let ids: BTreeSet<u64> = records.iter().map(|r| r.id.0).collect();
        prop_assert_eq!(ids.len(), work.len());
        prop_assert!(records.iter().all(|r| r.worker >= 1 && r.worker as usize <= workers));
    }
}
