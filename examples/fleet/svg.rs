//! The fleet picture, as SVG text: per second, records accepted (solid) and rejected
//! (dashed) against the record quota; below, the largest pod's lag; and, when the pods
//! export them, the mean effective in-flight limit and flush interval. One colour per
//! mode, the overload shaded. No plotting crate: a few polylines suffice.

use std::fmt::Write as _;

use crate::fleet::{Mode, Run};

const WIDTH: f64 = 900.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: (f64, f64) = (40.0, 300.0);
const BOTTOM: (f64, f64) = (350.0, 500.0);
/// The gauges' panel, drawn only when the pods export them.
const GAUGES: (f64, f64) = (550.0, 680.0);

fn colour(mode: Mode) -> &'static str {
    match mode {
        Mode::Fixed => "#c0392b",
        Mode::Adaptive => "#2471a3",
    }
}

/// One scenario's runs (one per mode) in one chart.
pub fn chart(runs: &[&Run]) -> String {
    let mut s = String::new();
    let Some(first) = runs.first() else {
        return s;
    };
    let t_max = runs
        .iter()
        .flat_map(|r| r.seconds.iter().map(|x| x.t + 1.0))
        .fold(10.0, f64::max);
    let rate_max = runs
        .iter()
        .flat_map(|r| r.seconds.iter())
        .map(|x| x.counts.records_accepted.max(x.counts.records_rejected()) as f64)
        .fold(first.plan.quota.records_per_second as f64, f64::max);
    let rate_max = nice_ceiling(rate_max * 1.05);
    let lag_max = runs
        .iter()
        .flat_map(|r| r.samples.iter().map(|x| x.max_lag_seconds))
        .fold(5.0, f64::max);
    let lag_max = nice_ceiling(lag_max * 1.05);
    let with_gauges = runs.iter().any(|r| !r.gauges.is_empty());
    let height = if with_gauges {
        GAUGES.1 + 50.0
    } else {
        BOTTOM.1 + 50.0
    };
    let gauge_max = runs
        .iter()
        .flat_map(|r| r.gauges.iter())
        .map(|g| g.in_flight_limit.max(g.flush_interval_seconds))
        .fold(1.0, f64::max);
    let gauge_max = nice_ceiling(gauge_max * 1.05);
    let y_gauges = |v: f64| GAUGES.1 - (GAUGES.1 - GAUGES.0) * v / gauge_max;
    let x = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * t / t_max;
    let y_top = |v: f64| TOP.1 - (TOP.1 - TOP.0) * v / rate_max;
    let y_bottom = |v: f64| BOTTOM.1 - (BOTTOM.1 - BOTTOM.0) * v / lag_max;

    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15">{}: {} pods, records per second (solid accepted, dashed rejected) and largest lag</text>"#,
        first.plan.scenario.name(),
        first.plan.pods
    );
    let (o1, o2) = first.overload;
    let panels: &[(f64, f64)] = if with_gauges {
        &[TOP, BOTTOM, GAUGES]
    } else {
        &[TOP, BOTTOM]
    };
    for &(y1, y2) in panels {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{y1}" width="{:.1}" height="{}" fill="#eeeeee"/>"##,
            x(o1),
            x(o2) - x(o1),
            y2 - y1
        );
    }
    axes(&mut s, TOP, rate_max, "records/s", t_max, &x);
    axes(&mut s, BOTTOM, lag_max, "lag (s)", t_max, &x);
    if with_gauges {
        axes(&mut s, GAUGES, gauge_max, "in flight, flush (s)", t_max, &x);
    }
    let quota = first.plan.quota.records_per_second as f64;
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{:.1}" y1="{q:.1}" y2="{q:.1}" stroke="#555" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" fill="#555">record quota</text>"##,
        WIDTH - RIGHT,
        WIDTH - RIGHT - 80.0,
        y_top(quota) - 4.0,
        q = y_top(quota)
    );
    for run in runs {
        let c = colour(run.plan.mode);
        let accepted: Vec<(f64, f64)> = run
            .seconds
            .iter()
            .map(|p| (x(p.t + 0.5), y_top(p.counts.records_accepted as f64)))
            .collect();
        let rejected: Vec<(f64, f64)> = run
            .seconds
            .iter()
            .map(|p| (x(p.t + 0.5), y_top(p.counts.records_rejected() as f64)))
            .collect();
        let lag: Vec<(f64, f64)> = run
            .samples
            .iter()
            .map(|p| (x(p.t), y_bottom(p.max_lag_seconds)))
            .collect();
        polyline(&mut s, &accepted, c, "");
        polyline(&mut s, &rejected, c, r#" stroke-dasharray="5 4""#);
        polyline(&mut s, &lag, c, "");
        let limit: Vec<(f64, f64)> = run
            .gauges
            .iter()
            .map(|g| (x(g.t), y_gauges(g.in_flight_limit)))
            .collect();
        let flush: Vec<(f64, f64)> = run
            .gauges
            .iter()
            .map(|g| (x(g.t), y_gauges(g.flush_interval_seconds)))
            .collect();
        polyline(&mut s, &limit, c, "");
        polyline(&mut s, &flush, c, r#" stroke-dasharray="5 4""#);
    }
    for (i, run) in runs.iter().enumerate() {
        let y = TOP.0 + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            LEFT + 10.0,
            y - 4.0,
            colour(run.plan.mode),
            LEFT + 28.0,
            run.plan.mode.name()
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds (grey: offered 1.5× the record quota{})</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        height - 12.0,
        if with_gauges {
            "; bottom: mean in-flight limit solid, flush interval dashed"
        } else {
            ""
        }
    );
    s.push_str("</svg>\n");
    s
}

fn axes(
    s: &mut String,
    (y1, y2): (f64, f64),
    v_max: f64,
    label: &str,
    t_max: f64,
    x: &dyn Fn(f64) -> f64,
) {
    let _ = writeln!(
        s,
        r##"<path d="M{LEFT},{y1} V{y2} H{:.1}" fill="none" stroke="#333"/>"##,
        WIDTH - RIGHT
    );
    for i in 0..=4 {
        let v = v_max * f64::from(i) / 4.0;
        let y = y2 - (y2 - y1) * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            tick(v)
        );
    }
    let step = nice_step(t_max / 8.0);
    let mut t = 0.0;
    while t <= t_max {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            y2 + 15.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{label}</text>"#,
        (y1 + y2) / 2.0,
        (y1 + y2) / 2.0
    );
}

/// An axis label: whole numbers bare, others with up to two decimals.
fn tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// The next of 1, 2, 4, 5 or 8 times a power of ten at or above `v`, so that the
/// four axis divisions fall on round numbers.
fn nice_ceiling(v: f64) -> f64 {
    let scale = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 4.0, 5.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * scale)
}

fn nice_step(rough: f64) -> f64 {
    [5.0, 10.0, 20.0, 30.0, 60.0, 120.0]
        .into_iter()
        .find(|&s| s >= rough)
        .unwrap_or(300.0)
}

fn polyline(s: &mut String, points: &[(f64, f64)], colour: &str, extra: &str) {
    let mut p = String::new();
    for (x, y) in points {
        let _ = write!(p, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"{extra}/>"#,
        p.trim_end()
    );
}
