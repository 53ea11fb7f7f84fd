//! `reports/winback_results.sql` against a synthetic experiment whose every figure is
//! computed here, independently of the SQL: two sequences, cohorts in different weeks,
//! a control group per cohort, orders inside and outside each person's window (before
//! assignment, after it, cancelled, test), and a few huge orders the 99th-percentile cap
//! must tame. Each row's counts, rates, lifts, intervals and verdict are checked.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::{DateTime, Datelike, Duration, Utc};
use mailroom::normalize::TableSchema;
use mailroom::sql::SqlFile;
use mailroom::warehouse::local::LocalWarehouse;
use mailroom::warehouse::{LoadId, QueryEngine};

use crate::sql_golden::{jsonl_batch, winback_enrollments_table};
use crate::support::{commit_batch, utc};

const NOW: &str = "2026-11-01T00:00:00Z";
const WINDOW_DAYS: i64 = 30;

/// One person of the experiment.
struct Person {
    email: String,
    sequence: &'static str,
    arm: &'static str,
    assigned_at: DateTime<Utc>,
    /// Orders: (created, value, cancelled, test).
    orders: Vec<(DateTime<Utc>, f64, bool, bool)>,
}

/// The experiment: deterministic, with treatment converting more in one sequence only.
fn experiment() -> Vec<Person> {
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut people = Vec::new();
    let cohorts = [
        ("winback-a", "2026-08-04T06:00:00Z", 0.30, 0.15),
        ("winback-a", "2026-09-15T06:00:00Z", 0.25, 0.12),
        ("winback-b", "2026-09-16T06:00:00Z", 0.10, 0.10),
        ("winback-b", "2026-10-20T06:00:00Z", 0.20, 0.20),
    ];
    for (c, (sequence, start, p_treat, p_hold)) in cohorts.iter().enumerate() {
        for i in 0..220 {
            let arm = if i % 5 == 0 { "holdout" } else { "treatment" };
            let assigned_at = utc(start) + Duration::hours(rng.i64(0..72));
            let p = if arm == "treatment" {
                *p_treat
            } else {
                *p_hold
            };
            let mut orders = Vec::new();
            if rng.f64() < p {
                for _ in 0..rng.u32(1..=2) {
                    let value = if rng.u32(0..100) == 0 {
                        5_000.0
                    } else {
                        f64::from(rng.u32(2_000..20_000)) / 100.0
                    };
                    orders.push((
                        assigned_at + Duration::hours(rng.i64(1..WINDOW_DAYS * 24 - 1)),
                        value,
                        false,
                        false,
                    ));
                }
            }
            // Orders no window counts: before, after, cancelled, test.
            orders.push((assigned_at - Duration::days(3), 55.0, false, false));
            if i % 7 == 0 {
                orders.push((
                    assigned_at + Duration::days(WINDOW_DAYS + 2),
                    66.0,
                    false,
                    false,
                ));
                orders.push((assigned_at + Duration::days(2), 77.0, true, false));
                orders.push((assigned_at + Duration::days(3), 88.0, false, true));
            }
            people.push(Person {
                email: format!("p{c}x{i}@example.com"),
                sequence,
                arm,
                assigned_at,
                orders,
            });
        }
    }
    people
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn load(warehouse: &mut LocalWarehouse, table: &TableSchema, lines: Vec<String>) {
    let load = LoadId {
        source: "test".into(),
        stream: table.name.to_string(),
        run_id: "results".into(),
    };
    commit_batch(
        warehouse,
        load,
        table,
        jsonl_batch(table, &lines.join("\n")),
    )
    .await
    .expect("load");
}

/// One row of the report as computed here.
#[derive(Debug, Default)]
struct Expected {
    n: [f64; 2],
    buyers: [f64; 2],
    sum: [f64; 2],
    sum_sq: [f64; 2],
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

#[tokio::test]
async fn every_figure_matches_an_independent_computation() {
    let people = experiment();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = LocalWarehouse::open(dir.path()).expect("warehouse");
    let enrollments = people
        .iter()
        .map(|p| {
            format!(
                r#"{{"email_normalized": "{}", "platform": "smartrmail", "sequence": "{}", "arm": "{}", "outcome": "{}", "assigned_at": "{}", "run_id": "r"}}"#,
                p.email,
                p.sequence,
                p.arm,
                if p.arm == "treatment" { "enrolled" } else { "held_out" },
                iso(p.assigned_at)
            )
        })
        .collect();
    load(&mut warehouse, &winback_enrollments_table(), enrollments).await;
    let mut id = 0;
    let mut orders = Vec::new();
    for p in &people {
        for (created, value, cancelled, test) in &p.orders {
            id += 1;
            let cancelled = if *cancelled {
                format!(r#", "cancelled_at": "{}""#, iso(*created))
            } else {
                String::new()
            };
            orders.push(format!(
                r#"{{"id": {id}, "email": "{0}", "email_normalized": "{0}", "created_at": "{1}", "updated_at": "{1}", "test": {test}, "total_price": "{value:.2}"{cancelled}}}"#,
                p.email,
                iso(*created)
            ));
        }
    }
    load(
        &mut warehouse,
        &mailroom::sources::shopify::tables::orders_table(),
        orders,
    )
    .await;

    // The report, as a job would run it.
    let engine = QueryEngine::Local(LocalWarehouse::reader(warehouse.root()));
    let file =
        SqlFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/winback_results.sql"))
            .expect("report");
    let sql = file
        .render(utc(NOW), &BTreeMap::new(), &engine.table_names())
        .expect("render");
    let answer = engine.run(&sql).await.expect("report runs");

    // The same figures, here: windows, the per-sequence 99th-percentile cap (the largest
    // value whose percent rank is at most 0.99), then sums per arm.
    let now = utc(NOW);
    let in_window = |p: &Person| -> Vec<f64> {
        p.orders
            .iter()
            .filter(|(t, _, cancelled, test)| {
                *t >= p.assigned_at
                    && *t < p.assigned_at + Duration::days(WINDOW_DAYS)
                    && *t < now
                    && !cancelled
                    && !test
            })
            .map(|(_, v, ..)| *v)
            .collect()
    };
    let mut caps: BTreeMap<&str, f64> = BTreeMap::new();
    for sequence in ["winback-a", "winback-b"] {
        let mut values: Vec<f64> = people
            .iter()
            .filter(|p| p.sequence == sequence)
            .flat_map(&in_window)
            .collect();
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let cap = values
            .iter()
            .enumerate()
            .filter(|(i, v)| {
                // Percent rank: (rank - 1) / (n - 1), ties sharing their first rank.
                let rank = values.iter().position(|x| x == *v).unwrap_or(*i);
                (rank as f64) / ((n - 1) as f64) <= 0.99
            })
            .map(|(_, v)| *v)
            .fold(f64::MIN, f64::max);
        caps.insert(sequence, cap);
    }
    let mut expected: BTreeMap<(String, &str), Expected> = BTreeMap::new();
    for p in &people {
        let date = p.assigned_at.date_naive();
        let monday = date - Duration::days(i64::from(date.weekday().num_days_from_monday()));
        let row = expected
            .entry((monday.to_string(), p.sequence))
            .or_default();
        let arm = usize::from(p.arm == "holdout");
        let values = in_window(p);
        let revenue: f64 = values.iter().map(|v| v.min(caps[p.sequence])).sum();
        row.n[arm] += 1.0;
        row.buyers[arm] += f64::from(u8::from(!values.is_empty()));
        row.sum[arm] += revenue;
        row.sum_sq[arm] += revenue * revenue;
    }

    assert_eq!(answer.num_rows(), expected.len());
    let batch = arrow::compute::concat_batches(&answer.schema, &answer.batches).expect("one batch");
    let float = |name: &str, row: usize| -> Option<f64> {
        let column =
            arrow::compute::cast(batch.column_by_name(name).expect(name), &DataType::Float64)
                .expect("cast");
        let values = column.as_primitive::<Float64Type>();
        (!values.is_null(row)).then(|| values.value(row))
    };
    let int = |name: &str, row: usize| -> f64 {
        let column =
            arrow::compute::cast(batch.column_by_name(name).expect(name), &DataType::Int64)
                .expect("cast");
        column.as_primitive::<Int64Type>().value(row) as f64
    };
    let text = |name: &str, row: usize| -> String {
        arrow::util::display::ArrayFormatter::try_new(
            batch.column_by_name(name).expect(name).as_ref(),
            &Default::default(),
        )
        .expect("format")
        .value(row)
        .to_string()
    };
    let close = |name: &str, row: usize, want: f64, digits: i32| {
        let got = float(name, row).unwrap_or(f64::NAN);
        let tolerance = 0.5 * 10f64.powi(-digits) + 1e-9;
        assert!(
            (got - round(want, digits)).abs() <= tolerance,
            "row {row} {name}: {got} vs {want}"
        );
    };
    let z = 1.959964_f64;
    for (row, ((week, sequence), e)) in expected.iter().enumerate() {
        assert_eq!(text("cohort_week", row), *week);
        assert_eq!(text("sequence", row), *sequence);
        assert_eq!(
            (int("treated", row), int("held_out", row)),
            (e.n[0], e.n[1])
        );
        assert_eq!(
            (int("treated_buyers", row), int("held_out_buyers", row)),
            (e.buyers[0], e.buyers[1])
        );
        let p = [e.buyers[0] / e.n[0], e.buyers[1] / e.n[1]];
        let rpr = [e.sum[0] / e.n[0], e.sum[1] / e.n[1]];
        let var = [
            (e.sum_sq[0] - e.sum[0] * e.sum[0] / e.n[0]) / (e.n[0] - 1.0),
            (e.sum_sq[1] - e.sum[1] * e.sum[1] / e.n[1]) / (e.n[1] - 1.0),
        ];
        close("treated_conversion", row, p[0], 4);
        close("held_out_conversion", row, p[1], 4);
        close("treated_revenue_per_recipient", row, rpr[0], 2);
        close("held_out_revenue_per_recipient", row, rpr[1], 2);
        let lift = p[0] - p[1];
        let se = (p[0] * (1.0 - p[0]) / e.n[0] + p[1] * (1.0 - p[1]) / e.n[1]).sqrt();
        close("conversion_lift", row, lift, 4);
        close("conversion_lift_low", row, lift - z * se, 4);
        close("conversion_lift_high", row, lift + z * se, 4);
        close("relative_lift", row, lift / p[1], 4);
        let (a, b) = (var[0] / e.n[0], var[1] / e.n[1]);
        let df = (a + b).powi(2) / (a * a / (e.n[0] - 1.0) + b * b / (e.n[1] - 1.0));
        let t = z
            + (z.powi(3) + z) / (4.0 * df)
            + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df);
        let rpr_lift = rpr[0] - rpr[1];
        let rpr_se = (a + b).sqrt();
        close("revenue_per_recipient_lift", row, rpr_lift, 2);
        close(
            "revenue_per_recipient_lift_low",
            row,
            rpr_lift - t * rpr_se,
            2,
        );
        close(
            "revenue_per_recipient_lift_high",
            row,
            rpr_lift + t * rpr_se,
            2,
        );
        close("incremental_revenue", row, rpr_lift * e.n[0], 2);
        close(
            "incremental_revenue_low",
            row,
            (rpr_lift - t * rpr_se) * e.n[0],
            2,
        );
        close(
            "incremental_revenue_high",
            row,
            (rpr_lift + t * rpr_se) * e.n[0],
            2,
        );
        let verdict = text("verdict", row);
        let (low, high) = (lift - z * se, lift + z * se);
        let bound = |x: f64| format!("{:.1}", round(100.0 * x, 1));
        let wanted = if low > 0.0 {
            format!(
                "lift: +{} pts (CI {} … {} pts)",
                bound(lift),
                bound(low),
                bound(high)
            )
        } else if high < 0.0 {
            format!(
                "fewer buyers than the control group: {} pts (CI {} … {} pts)",
                bound(lift),
                bound(low),
                bound(high)
            )
        } else {
            format!(
                "no detectable lift (CI {} … {} pts)",
                bound(low),
                bound(high)
            )
        };
        assert_eq!(verdict, wanted, "row {row}");
    }
    // The experiment has both answers: a real lift and none.
    let verdicts: Vec<String> = (0..batch.num_rows()).map(|r| text("verdict", r)).collect();
    assert!(
        verdicts.iter().any(|v| v.starts_with("lift")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.iter().any(|v| v.starts_with("no detectable lift")),
        "{verdicts:?}"
    );
}
