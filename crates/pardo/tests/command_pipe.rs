//! `--pipe` / `--pipepart` splitting: no byte lost, duplicated, or cut inside a record, for
//! random records and block sizes; and the runner holds only a bounded number of blocks.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use pardo::command::pipe::{Blocks, Parts, Split};
use pardo::command::{Block, Events, JobDone, RunControl, RunOptions, Runner, Stdin, Template};
use pardo::monitor::{Recorder, Retention, RunRecord};
use proptest::prelude::*;

/// Records of random lengths over a small alphabet that holds the separators' bytes, so
/// near-misses (a recstart byte without a recend before it) are common.
fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop::collection::vec(prop::sample::select(b"ab>x".to_vec()), 0..40),
        0..60,
    )
}

/// `header_lines` header lines, then `body`; and the header's length.
fn with_header(header_lines: usize, body: Vec<u8>) -> (Vec<u8>, usize) {
    let mut input = Vec::new();
    for i in 0..header_lines {
        input.extend_from_slice(format!("header {i}\n").as_bytes());
    }
    let head = input.len();
    input.extend(body);
    (input, head)
}

/// The records, each led by `recstart` and ended by `recend` (the last one only if `trailing`).
fn join(recs: &[Vec<u8>], recend: &[u8], recstart: &[u8], trailing: bool) -> Vec<u8> {
    let mut input = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        input.extend_from_slice(recstart);
        input.extend_from_slice(r);
        if trailing || i + 1 < recs.len() {
            input.extend_from_slice(recend);
        }
    }
    input
}

fn boundaries(input: &[u8], recend: &[u8], recstart: &[u8]) -> Vec<usize> {
    let pat: Vec<u8> = [recend, recstart].concat();
    (0..input.len().saturating_sub(pat.len() - 1))
        .filter(|&m| input[m..].starts_with(&pat))
        .map(|m| m + recend.len())
        .filter(|&c| c > 0)
        .collect()
}

/// The block ends as positions in the input (the header taken off).
fn ends(blocks: &[Vec<u8>], header: usize) -> Vec<usize> {
    let mut at = header;
    blocks
        .iter()
        .map(|b| {
            at += b.len() - header;
            at
        })
        .collect()
}

fn separators() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        Just((b"\n".to_vec(), Vec::new())),
        Just((b"\n".to_vec(), b">".to_vec())),
        Just((Vec::new(), b">".to_vec())),
        Just((b"ab\n".to_vec(), Vec::new())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn blocks_cover_the_input_at_record_boundaries(
        recs in records(),
        (recend, recstart) in separators(),
        trailing in any::<bool>(),
        block in 1usize..120,
        records_per_job in prop::option::of(1usize..6),
        header_lines in 0usize..2,
    ) {
        let (input, head) = with_header(header_lines, join(&recs, &recend, &recstart, trailing));
        let split = Split {
            block,
            recend: recend.clone(),
            recstart: recstart.clone(),
            records: records_per_job,
            header_lines,
        };
        let got: Vec<Vec<u8>> = Blocks::new(&input[..], split)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let cuts = boundaries(&input[head..], &recend, &recstart);
        let mut body = input[..head].to_vec();
        for b in &got {
            prop_assert!(b.len() > head, "an empty block");
            prop_assert_eq!(&b[..head], &input[..head], "the header leads every block");
            body.extend_from_slice(&b[head..]);
        }
        prop_assert_eq!(&body, &input, "blocks joined are the input");
        let ends = ends(&got, head);
        let mut start = head;
        for (i, &end) in ends.iter().enumerate() {
            let last = i + 1 == ends.len();
            let rel = |p: usize| p - head;
            if !last {
                prop_assert!(cuts.contains(&rel(end)), "cut at {} is inside a record", rel(end));
            }
            let inside = cuts.iter().filter(|&&c| c > rel(start) && c < rel(end)).count();
            match records_per_job {
                Some(n) if !last => prop_assert_eq!(inside + 1, n, "-N records per block"),
                Some(n) => prop_assert!(inside < n),
                None => {
                    // At most a block, unless it is one record; and no room for one more.
                    prop_assert!(end - start <= block || inside == 0, "block too large");
                    if !last {
                        let next = cuts.iter().copied().find(|&c| c > rel(end))
                            .unwrap_or(input.len() - head);
                        prop_assert!(next - rel(start) > block || end - start > block,
                            "the next record would have fit");
                    }
                }
            }
            start = end;
        }
    }

    #[test]
    fn parts_cover_the_file_at_record_boundaries(
        recs in records(),
        (recend, recstart) in separators(),
        trailing in any::<bool>(),
        block in 1usize..120,
        header_lines in 0usize..2,
    ) {
        let (input, head) = with_header(header_lines, join(&recs, &recend, &recstart, trailing));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&input).unwrap();
        let split = Split { block, recend: recend.clone(), recstart: recstart.clone(), records: None, header_lines };
        let parts: Vec<_> = Parts::new(f, split).unwrap().collect::<Result<_, _>>().unwrap();
        let cuts = boundaries(&input[head..], &recend, &recstart);
        let mut at = head as u64;
        for (i, p) in parts.iter().enumerate() {
            prop_assert_eq!(p.offset, at, "parts are contiguous");
            prop_assert!(p.len > 0);
            prop_assert_eq!(&p.header[..], &input[..head]);
            at += p.len;
            if i + 1 < parts.len() {
                prop_assert!(cuts.contains(&(at as usize - head)), "cut inside a record");
                // As GNU parallel: the part runs to the first boundary from its block's edge on.
                prop_assert!(p.len >= block as u64, "a part shorter than a block");
                let edge = p.offset as usize + block - head;
                let first = cuts.iter().copied().find(|&c| c - recend.len() >= edge);
                prop_assert_eq!(first, Some(at as usize - head), "not the first cut past the edge");
            }
        }
        prop_assert_eq!(at, input.len() as u64, "parts end at the end of the file");
    }
}

/// Counts blocks taken from the input and jobs done; at every job's end, the blocks taken
/// but not done must stay within what the runner's queues and slots can hold.
struct Bound {
    pulled: Arc<AtomicUsize>,
    done: AtomicUsize,
    most: AtomicUsize,
    seen: Mutex<Vec<u8>>,
}

impl Events for Bound {
    fn done(&self, d: JobDone<'_>) -> std::io::Result<()> {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let held = self.pulled.load(Ordering::SeqCst).saturating_sub(done);
        self.most.fetch_max(held, Ordering::SeqCst);
        self.seen
            .lock()
            .unwrap()
            .extend(d.finished.stdout.to_vec()?);
        Ok(())
    }
}

#[test]
fn blocks_in_flight_are_bounded_by_the_slots() {
    let slots = 3;
    let total = 400;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pulled);
    let stdins = (0..total).map(move |i| {
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(Stdin::Bytes(Block::new(format!("{i}\n").into_bytes())))
    });
    let events = Bound {
        pulled,
        done: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        seen: Mutex::new(Vec::new()),
    };
    let recorder = Recorder::new(
        RunRecord::now("command", slots),
        true,
        Retention::SummaryOnly,
    );
    let runner = Runner::new(
        Template::parse_piped(&["cat".into()]),
        RunOptions {
            slots,
            ..RunOptions::default()
        },
        recorder,
    );
    let outcome = runner
        .run_piped(stdins, &events, &RunControl::new().unwrap())
        .unwrap();
    assert_eq!(outcome.jobs, total as u64);
    // Two queues of `slots` each, `slots` running, one in the reader's hand, one in the main
    // loop's: nothing more may be held, however long the input.
    let bound = 3 * slots + 2;
    let most = events.most.load(Ordering::SeqCst);
    assert!(
        most <= bound,
        "{most} blocks held at once, more than {bound}"
    );
    let mut lines: Vec<u64> = String::from_utf8(events.seen.into_inner().unwrap())
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        (0..total as u64).collect::<Vec<_>>(),
        "every block ran once"
    );
}
