//! Concurrency control: reads what `monitor` measured and steers an executor's worker count.
