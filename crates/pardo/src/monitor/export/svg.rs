//! The HTML report's charts, drawn as inline SVG strings from the records and samples.
//!
//! Every chart is a `<svg id="…">` with a fixed `viewBox` (so it scales with the page) whose
//! marks carry a `<title>`, which every browser shows on hover. Sizes are bounded whatever the
//! run's size: the timeline draws one bar per task only while tasks fit the pixels, and
//! otherwise one cell per slot and time column; the scatter plots at most [`SCATTER_POINTS`]
//! tasks; lines are decimated to at most [`COLUMNS`] points.

use std::fmt::Write as _;

use super::trace::{assign_tracks, Track};
use crate::monitor::{format_duration, Sample, TaskRecord};
use crate::task::Outcome;

/// Width of every chart's viewBox.
const WIDTH: f64 = 1000.0;
/// Room on the left for row labels and axis numbers.
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
/// Plot width in viewBox units (≈ pixels at the page's usual width).
const PLOT: f64 = WIDTH - LEFT - RIGHT;
/// Columns the timeline is cut into when it is aggregated, and at most as many points per line.
pub(crate) const COLUMNS: usize = 240;
/// Most rows the timeline draws; more slots share rows.
const MAX_ROWS: usize = 64;
/// Most tasks drawn one bar each on the timeline.
pub(crate) const MAX_BARS: usize = 4000;
/// Most tasks drawn on the CPU-against-wall scatter.
pub(crate) const SCATTER_POINTS: usize = 2000;
const ROW: f64 = 16.0;
const AXIS: f64 = 24.0;

/// The colour of an outcome on every chart.
pub(crate) fn colour(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "#3a9d5d",
        Outcome::Failed => "#d7403a",
        Outcome::Panicked => "#8c1c13",
        Outcome::TimedOut => "#e89a2c",
        Outcome::Killed => "#8e44ad",
        Outcome::Cancelled => "#9aa0a6",
    }
}

/// Every outcome, in legend order.
pub(crate) const OUTCOMES: [Outcome; 6] = [
    Outcome::Ok,
    Outcome::Failed,
    Outcome::TimedOut,
    Outcome::Killed,
    Outcome::Panicked,
    Outcome::Cancelled,
];

/// Escapes text for HTML and SVG element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Adds `rate × overlap` of each `(start_ns, end_ns, rate)` span to the `cols` equal columns
/// of `0..span_ns` and returns each column's mean level: with rate 1, the mean number of spans
/// active in the column. Linear in spans plus columns (a difference array covers the columns
/// a span fills whole).
pub(crate) fn spread(
    spans: impl Iterator<Item = (u64, u64, f64)>,
    span_ns: u64,
    cols: usize,
) -> Vec<f64> {
    let mut level = vec![0.0f64; cols];
    if cols == 0 || span_ns == 0 {
        return level;
    }
    let mut diff = vec![0.0f64; cols + 1];
    let per_col = span_ns as f64 / cols as f64;
    let n = cols as f64;
    for (start, end, rate) in spans {
        let s = (start as f64 / per_col).clamp(0.0, n);
        let e = (end as f64 / per_col).clamp(0.0, n);
        if e <= s {
            continue;
        }
        let i0 = (s.floor() as usize).min(cols - 1);
        let i1 = e.floor() as usize;
        if i1 <= i0 {
            level[i0] += rate * (e - s);
            continue;
        }
        level[i0] += rate * ((i0 + 1) as f64 - s);
        if i1 < cols {
            level[i1] += rate * (e - i1 as f64);
        }
        diff[i0 + 1] += rate;
        diff[i1] -= rate;
    }
    let mut run = 0.0;
    for (l, d) in level.iter_mut().zip(&diff) {
        run += d;
        *l += run;
    }
    level
}

/// Maps nanoseconds since the start to the plot's x.
fn x_of(ns: u64, span_ns: u64) -> f64 {
    LEFT + ns as f64 / span_ns.max(1) as f64 * PLOT
}

/// Time ticks along the bottom of a plot of `height`.
fn time_axis(svg: &mut String, span_ns: u64, top: f64, height: f64) {
    let y = top + height;
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
        LEFT + PLOT
    );
    for i in 0..=5u64 {
        let at = span_ns / 5 * i;
        let x = x_of(at, span_ns);
        let _ = write!(
            svg,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{y}\"/>\
             <text class=\"lbl\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{}\">{}</text>",
            y + 14.0,
            if i == 5 { "end" } else { "middle" },
            esc(&format_duration(at))
        );
    }
}

fn open(svg: &mut String, id: &str, height: f64, label: &str) {
    let _ = write!(
        svg,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {height:.0}\" role=\"img\" \
         aria-label=\"{}\">",
        esc(label)
    );
}

/// One task's hover text.
fn task_title(r: &TaskRecord) -> String {
    let mut t = format!(
        "task {} (attempt {}) on slot {}: {}\n{} ran {}, CPU {}",
        r.id.0,
        r.attempt,
        r.worker,
        r.outcome.as_str(),
        if r.input.is_empty() { "-" } else { &r.input },
        format_duration(r.wall_ns()),
        format_duration(r.cpu_ns())
    );
    if let Some(c) = r.exit_code {
        let _ = write!(t, ", exit {c}");
    }
    if let Some(s) = r.signal {
        let _ = write!(t, ", signal {s}");
    }
    if let Some(b) = r.max_rss_bytes {
        let _ = write!(t, ", peak RSS {:.1} MiB", b as f64 / 1048576.0);
    }
    let _ = write!(
        t,
        "\nstarted at {}, queued {}",
        format_duration(r.started_ns),
        format_duration(r.queue_wait_ns())
    );
    esc(&t)
}

/// What the timeline drew, for the page to say.
pub(crate) struct Timeline {
    pub(crate) svg: String,
    /// `None` when every task has its own bar; else why and how it was aggregated.
    pub(crate) aggregated: Option<String>,
}

/// The Gantt chart: a row per slot (or per overlap lane), a bar per task coloured by outcome —
/// or, when tasks outnumber the pixels, a cell per slot and time column whose opacity is how
/// busy the slot was and whose colour is the worst outcome that started in it.
pub(crate) fn timeline(records: &[TaskRecord], span_ns: u64) -> Timeline {
    let tracks = assign_tracks(records);
    let mut rows: Vec<Track> = tracks.clone();
    rows.sort_unstable();
    rows.dedup();
    let most_per_slot = {
        let mut per = std::collections::BTreeMap::<u32, usize>::new();
        for r in records {
            *per.entry(r.worker).or_default() += 1;
        }
        per.values().copied().max().unwrap_or(0)
    };
    let aggregate =
        records.len() > MAX_BARS || most_per_slot > PLOT as usize || rows.len() > MAX_ROWS;
    if aggregate {
        return aggregated_timeline(records, span_ns);
    }
    let height = rows.len().max(1) as f64 * ROW + AXIS;
    let mut svg = String::new();
    open(&mut svg, "gantt", height, "timeline per slot");
    for (i, t) in rows.iter().enumerate() {
        let y = i as f64 * ROW;
        let name = match (t.slot, t.lane) {
            (0, _) => "not started".to_owned(),
            (s, 0) => format!("slot {s}"),
            (s, k) => format!("slot {s}·{k}"),
        };
        let _ = write!(
            svg,
            "<text class=\"lbl\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>",
            LEFT - 6.0,
            y + ROW * 0.7
        );
    }
    for (r, t) in records.iter().zip(&tracks) {
        let row = rows.binary_search(t).unwrap_or(0);
        let x = x_of(r.started_ns, span_ns);
        // At least a hairline, so a task shorter than a pixel still shows.
        let w = (x_of(r.finished_ns.max(r.started_ns), span_ns) - x).max(0.5);
        let _ = write!(
            svg,
            "<rect class=\"task\" x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" \
             fill=\"{}\"><title>{}</title></rect>",
            row as f64 * ROW + 2.0,
            ROW - 4.0,
            colour(r.outcome),
            task_title(r)
        );
    }
    time_axis(&mut svg, span_ns, 0.0, rows.len().max(1) as f64 * ROW);
    svg.push_str("</svg>");
    Timeline {
        svg,
        aggregated: None,
    }
}

fn aggregated_timeline(records: &[TaskRecord], span_ns: u64) -> Timeline {
    let first = records.iter().map(|r| r.worker).min().unwrap_or(0) as usize;
    let slots = records.iter().map(|r| r.worker).max().unwrap_or(0) as usize + 1 - first;
    let per_row = slots.div_ceil(MAX_ROWS).max(1);
    let rows = slots.div_ceil(per_row);
    let row_of = |slot: u32| (slot as usize - first) / per_row;
    // Busy level per row and column, and per cell the tasks started and the worst outcome.
    let mut busy = Vec::with_capacity(rows);
    for row in 0..rows {
        busy.push(spread(
            records
                .iter()
                .filter(|r| r.ran() && row_of(r.worker) == row)
                .map(|r| (r.started_ns, r.finished_ns, 1.0)),
            span_ns,
            COLUMNS,
        ));
    }
    let mut started = vec![0u64; rows * COLUMNS];
    let mut bad = vec![0u64; rows * COLUMNS];
    let mut worst = vec![Outcome::Ok; rows * COLUMNS];
    for r in records {
        let col = ((r.started_ns as f64 / span_ns.max(1) as f64 * COLUMNS as f64) as usize)
            .min(COLUMNS - 1);
        let cell = row_of(r.worker) * COLUMNS + col;
        started[cell] += 1;
        if !r.outcome.is_ok() {
            bad[cell] += 1;
            if worst[cell].is_ok() || r.outcome != Outcome::Cancelled {
                worst[cell] = r.outcome;
            }
        }
    }
    let height = rows as f64 * ROW + AXIS;
    let col_w = PLOT / COLUMNS as f64;
    let mut svg = String::new();
    open(&mut svg, "gantt", height, "timeline per slot, aggregated");
    for (row, busy) in busy.iter().enumerate() {
        let y = row as f64 * ROW;
        let (lo, hi) = (
            first + row * per_row,
            first + ((row + 1) * per_row - 1).min(slots - 1),
        );
        let name = if lo == hi {
            format!("slot {lo}")
        } else {
            format!("slots {lo}–{hi}")
        };
        let _ = write!(
            svg,
            "<text class=\"lbl\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{name}</text>",
            LEFT - 6.0,
            y + ROW * 0.7
        );
        let slots_here = (hi + 1 - lo) as f64;
        for (col, &level) in busy.iter().enumerate() {
            let cell = row * COLUMNS + col;
            let level = (level / slots_here).clamp(0.0, 1.0);
            if level <= 0.0 && started[cell] == 0 {
                continue;
            }
            let from = span_ns as f64 * col as f64 / COLUMNS as f64;
            let to = span_ns as f64 * (col + 1) as f64 / COLUMNS as f64;
            let _ = write!(
                svg,
                "<rect class=\"cell\" x=\"{:.2}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" \
                 fill=\"{}\" fill-opacity=\"{:.2}\"><title>{}, {}–{}: {} started, {} not ok, \
                 {:.0}% busy</title></rect>",
                LEFT + col as f64 * col_w,
                y + 2.0,
                col_w,
                ROW - 4.0,
                colour(worst[cell]),
                level.max(0.15),
                esc(&name),
                format_duration(from as u64),
                format_duration(to as u64),
                started[cell],
                bad[cell],
                level * 100.0
            );
        }
    }
    time_axis(&mut svg, span_ns, 0.0, rows as f64 * ROW);
    svg.push_str("</svg>");
    let why = format!(
        "{} tasks outnumber the timeline's pixels, so it is aggregated: each cell is {} of {}, \
         its opacity how busy the slot was then, its colour the worst outcome that started in \
         it (hover for counts).",
        records.len(),
        format_duration(span_ns / COLUMNS as u64),
        if per_row == 1 {
            "one slot".to_owned()
        } else {
            format!("{per_row} slots")
        }
    );
    Timeline {
        svg,
        aggregated: Some(why),
    }
}

/// `(at_ns, value)` points of a line.
pub(crate) type Points = Vec<(u64, f64)>;

/// One line of a line chart: a name, a colour and `(at_ns, value)` points.
pub(crate) struct Line {
    pub(crate) name: &'static str,
    pub(crate) colour: &'static str,
    pub(crate) points: Points,
}

/// A line chart over the run's time with a legend, on a scale from 0 to the largest value.
pub(crate) fn lines(id: &str, label: &str, span_ns: u64, series: &[Line], unit: &str) -> String {
    let height = 180.0;
    let top = 18.0;
    let plot_h = height - top - AXIS;
    let max = series
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut svg = String::new();
    open(&mut svg, id, height, label);
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = top + plot_h - plot_h * i as f64 / 4.0;
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
             <text class=\"lbl\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>",
            LEFT + PLOT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let mut legend_x = LEFT;
    for l in series {
        let _ = write!(
            svg,
            "<rect x=\"{legend_x:.0}\" y=\"2\" width=\"10\" height=\"10\" fill=\"{}\"/>\
             <text class=\"lbl\" x=\"{:.0}\" y=\"11\">{} ({})</text>",
            l.colour,
            legend_x + 14.0,
            l.name,
            esc(unit)
        );
        legend_x += 160.0;
        if l.points.is_empty() {
            continue;
        }
        let stride = l.points.len().div_ceil(COLUMNS * 2).max(1);
        let mut d = String::new();
        for (i, &(at, v)) in l.points.iter().step_by(stride).enumerate() {
            let x = x_of(at, span_ns);
            let y = top + plot_h - v / max * plot_h;
            let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { " L" });
        }
        let _ = write!(
            svg,
            "<path class=\"series\" d=\"{d}\" stroke=\"{}\"><title>{}</title></path>",
            l.colour, l.name
        );
    }
    time_axis(&mut svg, span_ns, top, plot_h);
    svg.push_str("</svg>");
    svg
}

/// The mean number of tasks running and the mean cores their CPU kept busy, per column, as
/// line points at each column's middle.
pub(crate) fn running_and_cpu(records: &[TaskRecord], span_ns: u64) -> (Points, Points) {
    let ran = || records.iter().filter(|r| r.ran());
    let running = spread(
        ran().map(|r| (r.started_ns, r.finished_ns, 1.0)),
        span_ns,
        COLUMNS,
    );
    let cpu = spread(
        ran().map(|r| {
            let wall = r.wall_ns().max(1) as f64;
            (r.started_ns, r.finished_ns, r.cpu_ns() as f64 / wall)
        }),
        span_ns,
        COLUMNS,
    );
    let mid = |c: usize| ((c as f64 + 0.5) * span_ns as f64 / COLUMNS as f64) as u64;
    let pts = |v: Vec<f64>| {
        v.into_iter()
            .enumerate()
            .map(|(c, v)| (mid(c), v))
            .collect()
    };
    (pts(running), pts(cpu))
}

/// Queued, target and live concurrency, and machine CPU in cores, from the samples.
pub(crate) fn from_samples(samples: &[Sample], cores: usize) -> [Points; 3] {
    let queued = samples.iter().map(|s| (s.at_ns, s.queued as f64)).collect();
    let target = samples
        .iter()
        .map(|s| (s.at_ns, s.target_workers as f64))
        .collect();
    let machine = super::trace::cpu_use(samples, cores)
        .into_iter()
        .filter_map(|(at, _, m)| Some((at, m?)))
        .collect();
    [queued, target, machine]
}

/// Histogram of task run times on log-spaced bins.
pub(crate) fn histogram(records: &[TaskRecord]) -> String {
    const BINS: usize = 30;
    let walls: Vec<u64> = records
        .iter()
        .filter(|r| r.ran())
        .map(|r| r.wall_ns().max(1))
        .collect();
    let height = 200.0;
    let top = 10.0;
    let plot_h = height - top - AXIS;
    let mut svg = String::new();
    open(&mut svg, "histogram", height, "histogram of task durations");
    let (Some(&lo), Some(&hi)) = (walls.iter().min(), walls.iter().max()) else {
        svg.push_str("<text class=\"lbl\" x=\"500\" y=\"100\">no task ran</text></svg>");
        return svg;
    };
    let (llo, lhi) = (
        (lo as f64).ln(),
        (hi as f64).ln().max((lo as f64).ln() + 1e-9),
    );
    let bin_of = |w: u64| {
        (((w as f64).ln() - llo) / (lhi - llo) * BINS as f64)
            .floor()
            .clamp(0.0, (BINS - 1) as f64) as usize
    };
    let mut counts = [0u64; BINS];
    for &w in &walls {
        counts[bin_of(w)] += 1;
    }
    let edge = |i: usize| (llo + (lhi - llo) * i as f64 / BINS as f64).exp() as u64;
    let most = counts.iter().copied().max().unwrap_or(1).max(1);
    let bw = PLOT / BINS as f64;
    for (i, &n) in counts.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let h = n as f64 / most as f64 * plot_h;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
             <title>{}–{}: {n} tasks</title></rect>",
            LEFT + i as f64 * bw + 1.0,
            top + plot_h - h,
            bw - 2.0,
            esc(&format_duration(edge(i))),
            esc(&format_duration(edge(i + 1)))
        );
    }
    let base = top + plot_h;
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>\
         <text class=\"lbl\" x=\"{LEFT}\" y=\"{:.0}\">{}</text>\
         <text class=\"lbl\" x=\"{}\" y=\"{:.0}\" text-anchor=\"end\">{} (log scale)</text>\
         <text class=\"lbl\" x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{most}</text>",
        LEFT + PLOT,
        base + 14.0,
        esc(&format_duration(lo)),
        LEFT + PLOT,
        base + 14.0,
        esc(&format_duration(hi)),
        LEFT - 6.0,
        top + 8.0
    );
    svg.push_str("</svg>");
    svg
}

/// CPU time against wall time per task, with the CPU = wall diagonal; at most
/// [`SCATTER_POINTS`] tasks, evenly picked. Returns the SVG and the stride used.
pub(crate) fn scatter(records: &[TaskRecord]) -> (String, usize) {
    let ran: Vec<&TaskRecord> = records.iter().filter(|r| r.ran()).collect();
    let stride = ran.len().div_ceil(SCATTER_POINTS).max(1);
    let size = 320.0;
    let side = size - AXIS - 10.0;
    let max_wall = ran.iter().map(|r| r.wall_ns()).max().unwrap_or(0);
    let max_cpu = ran.iter().map(|r| r.cpu_ns()).max().unwrap_or(0);
    let max = max_wall.max(max_cpu).max(1) as f64;
    let mut svg = String::new();
    open(
        &mut svg,
        "scatter",
        size,
        "CPU time against wall time per task",
    );
    let (x0, y0) = (LEFT, 10.0 + side);
    let _ = write!(
        svg,
        "<line class=\"axis\" x1=\"{x0}\" y1=\"{y0}\" x2=\"{:.1}\" y2=\"{y0}\"/>\
         <line class=\"axis\" x1=\"{x0}\" y1=\"10\" x2=\"{x0}\" y2=\"{y0}\"/>\
         <line class=\"diag\" x1=\"{x0}\" y1=\"{y0}\" x2=\"{:.1}\" y2=\"10\"><title>CPU = wall \
         (one core busy all the time)</title></line>\
         <text class=\"lbl\" x=\"{:.1}\" y=\"{:.0}\" text-anchor=\"end\">wall {}</text>\
         <text class=\"lbl\" x=\"{:.0}\" y=\"18\" text-anchor=\"end\">CPU {}</text>",
        x0 + side,
        x0 + side,
        x0 + side,
        y0 + 16.0,
        esc(&format_duration(max as u64)),
        x0 - 6.0,
        esc(&format_duration(max as u64)),
    );
    for r in ran.iter().step_by(stride) {
        let x = x0 + r.wall_ns() as f64 / max * side;
        let y = y0 - r.cpu_ns() as f64 / max * side;
        let _ = write!(
            svg,
            "<circle class=\"pt\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>",
            colour(r.outcome),
            task_title(r)
        );
    }
    svg.push_str("</svg>");
    (svg, stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskId;

    #[test]
    fn spread_gives_the_mean_level_per_column() {
        // 0..100 in 4 columns of 25: one span over all, one over 10..60 at rate 2.
        let level = spread([(0, 100, 1.0), (10, 60, 2.0)].into_iter(), 100, 4);
        let want = [1.0 + 2.0 * 15.0 / 25.0, 3.0, 1.0 + 2.0 * 10.0 / 25.0, 1.0];
        for (got, want) in level.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{level:?}");
        }
    }

    #[test]
    fn the_timeline_draws_a_bar_per_task_until_tasks_outnumber_pixels() {
        let few: Vec<TaskRecord> = (0..10u64)
            .map(|i| TaskRecord::new(TaskId(i + 1), (i % 2) as u32 + 1, 0, i * 10, i * 10 + 9))
            .collect();
        let t = timeline(&few, 100);
        assert!(t.aggregated.is_none());
        assert_eq!(t.svg.matches("<rect class=\"task\"").count(), 10);

        // Four slots, each busy 9 ns of every 10.
        let many: Vec<TaskRecord> = (0..10_000u64)
            .map(|i| {
                let at = i / 4 * 10;
                TaskRecord::new(TaskId(i + 1), (i % 4) as u32 + 1, 0, at, at + 9)
            })
            .collect();
        let t = timeline(&many, 25_000);
        assert!(t.aggregated.as_deref().unwrap().contains("aggregated"));
        assert!(t.svg.contains(">slot 1<") && !t.svg.contains(">slot 0<"));
        let opacities: Vec<f64> = t
            .svg
            .split("fill-opacity=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
            .collect();
        assert_eq!(
            opacities.len(),
            4 * COLUMNS,
            "every slot busy in every column"
        );
        assert!(
            opacities.iter().all(|&o| (0.85..=0.95).contains(&o)),
            "{opacities:?}"
        );
    }

    #[test]
    fn escaping_covers_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
