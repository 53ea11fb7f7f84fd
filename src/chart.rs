//! Charts drawn in pure Rust: a grouped bar chart — one group per category, one bar per
//! series — rendered as PNG (for Slack) or SVG (for pages) by plotters, with text set in
//! the embedded DejaVu Sans, so no system font, browser or native library is involved and
//! the same data gives the same bytes on every machine.
//!
//! A report declares its chart in its header (`chart = { x = "platform", y = ["revenue"],
//! rows = { row_type = "total" } }`); [`BarChart::from_result`] reads it off the answer.

use std::sync::Once;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::sql::ChartSpec;
use crate::warehouse::QueryResult;

/// The font every chart's text is set in (Bitstream Vera licence: `assets/fonts/`).
const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// The family name charts ask for; SVG readers fall back to their own sans-serif.
const FAMILY: &str = "sans-serif";
/// Categories drawn at most; later rows are left out and the title says so.
pub const MAX_CATEGORIES: usize = 40;
/// Characters kept of a category's label.
const LABEL_CHARS: usize = 14;
/// Series colours, in order (colour-blind-safe, after Okabe and Ito).
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(213, 94, 0),
];

/// Why a chart could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The header names a column the answer does not have.
    #[error("the chart's {role} column `{column}` is not in the answer (its columns: {columns})")]
    NoColumn {
        /// `x` or `y`.
        role: &'static str,
        /// The column named.
        column: String,
        /// The answer's columns, comma-separated.
        columns: String,
    },
    /// A `y` column holds something other than numbers.
    #[error("the chart's y column `{column}` is {found}, not a number")]
    NotNumeric {
        /// The column.
        column: String,
        /// Its type.
        found: String,
    },
    /// Drawing or encoding failed.
    #[error("the chart could not be drawn: {0}")]
    Draw(String),
}

/// One series: a value per category (`None` draws no bar).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend's name.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

/// A grouped bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// The caption.
    pub title: String,
    /// The categories, left to right.
    pub categories: Vec<String>,
    /// The series, drawn side by side within each category.
    pub series: Vec<Series>,
}

fn draw_error(err: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(err.to_string())
}

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is compiled in; a test renders with it, so this cannot fail at run time.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

/// A number for an axis: `1.2k`, `3.4M`, or as is.
fn axis_number(y: f64) -> String {
    let size = y.abs();
    if size >= 1e6 {
        format!("{:.1}M", y / 1e6)
    } else if size >= 1e4 {
        format!("{:.0}k", y / 1e3)
    } else if size >= 1e3 {
        format!("{:.1}k", y / 1e3)
    } else if y.fract() == 0.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

fn label(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

impl BarChart {
    /// The chart `spec` declares, read off `result`: the rows matching `spec.rows`, in
    /// order, at most [`MAX_CATEGORIES`]; `title` when the spec has none.
    pub fn from_result(
        spec: &ChartSpec,
        title: &str,
        result: &QueryResult,
    ) -> Result<BarChart, ChartError> {
        let schema = &result.schema;
        let column = |role: &'static str, name: &str| {
            schema.index_of(name).map_err(|_| ChartError::NoColumn {
                role,
                column: name.to_string(),
                columns: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        };
        let x = column("x", &spec.x)?;
        let mut ys = Vec::with_capacity(spec.y.len());
        for name in &spec.y {
            let index = column("y", name)?;
            let found = schema.field(index).data_type();
            if !found.is_numeric() {
                return Err(ChartError::NotNumeric {
                    column: name.clone(),
                    found: found.to_string(),
                });
            }
            ys.push(index);
        }
        let filters = spec
            .rows
            .iter()
            .map(|(name, value)| Ok((column("rows", name)?, value.as_str())))
            .collect::<Result<Vec<_>, ChartError>>()?;
        let options = FormatOptions::default().with_null("");
        let mut categories = Vec::new();
        let mut series: Vec<Series> = spec
            .y
            .iter()
            .map(|name| Series {
                name: name.replace('_', " "),
                values: Vec::new(),
            })
            .collect();
        let mut matching = 0usize;
        for batch in &result.batches {
            let text = |index: usize| {
                ArrayFormatter::try_new(batch.column(index).as_ref(), &options).map_err(draw_error)
            };
            let x_text = text(x)?;
            let filter_text = filters
                .iter()
                .map(|(index, value)| Ok((text(*index)?, *value)))
                .collect::<Result<Vec<_>, ChartError>>()?;
            let values = ys
                .iter()
                .map(|index| {
                    arrow::compute::cast(batch.column(*index), &DataType::Float64)
                        .map_err(draw_error)
                })
                .collect::<Result<Vec<_>, ChartError>>()?;
            for row in 0..batch.num_rows() {
                if !filter_text
                    .iter()
                    .all(|(f, value)| f.value(row).to_string() == *value)
                {
                    continue;
                }
                matching += 1;
                if categories.len() == MAX_CATEGORIES {
                    continue;
                }
                categories.push(category(&x_text.value(row).to_string()));
                for (s, array) in series.iter_mut().zip(&values) {
                    let numbers = array.as_primitive::<Float64Type>();
                    s.values
                        .push((!numbers.is_null(row)).then(|| numbers.value(row)));
                }
            }
        }
        let mut title = spec.title.clone().unwrap_or_else(|| title.to_string());
        if matching > categories.len() {
            title = format!("{title} (first {} of {matching})", categories.len());
        }
        Ok(BarChart {
            title,
            categories,
            series,
        })
    }

    /// The chart as a PNG image of `width` × `height` pixels.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
        let mut pixels = vec![0u8; width as usize * height as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
            self.draw(&root)?;
        }
        let mut png = Vec::new();
        let mut encoder = png::Encoder::new(&mut png, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(draw_error)?;
        writer.write_image_data(&pixels).map_err(draw_error)?;
        writer.finish().map_err(draw_error)?;
        Ok(png)
    }

    /// The chart as an SVG document of `width` × `height`.
    pub fn svg(&self, width: u32, height: u32) -> Result<String, ChartError> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
            self.draw(&root)?;
        }
        Ok(svg)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), ChartError> {
        register_font();
        root.fill(&WHITE).map_err(draw_error)?;
        let values = self.series.iter().flat_map(|s| s.values.iter().flatten());
        let (low, high) = values.fold((0f64, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let (low, high) = if high > low {
            (low * 1.1, high * 1.1)
        } else {
            (0.0, 1.0)
        };
        let n = self.categories.len().max(1) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((0..n - 1).into_segmented(), low..high)
            .map_err(draw_error)?;
        let categories = &self.categories;
        let category_label = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => categories
                .get(*i as usize)
                .map(|c| label(c))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let axis_label = |y: &f64| axis_number(*y);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(BLACK.mix(0.12))
            .x_labels(n as usize)
            .x_label_formatter(&category_label)
            .y_label_formatter(&axis_label)
            .label_style((FAMILY, 12))
            .draw()
            .map_err(draw_error)?;
        let segment = f64::from(chart.plotting_area().dim_in_pixel().0) / f64::from(n);
        let k = self.series.len().max(1) as f64;
        for (j, series) in self.series.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            let j = j as f64;
            let left = (segment * (0.1 + 0.8 * j / k)).round() as u32;
            let right = (segment * (0.1 + 0.8 * (k - j - 1.0) / k)).round() as u32;
            let bars = series.values.iter().enumerate().filter_map(|(i, v)| {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), (*v)?),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, left, right);
                Some(bar)
            });
            chart
                .draw_series(bars)
                .map_err(draw_error)?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        if self.series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FAMILY, 12))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_error)?;
        }
        root.present().map_err(draw_error)
    }
}

/// A category as shown: dates without a midnight time, timestamps to the minute.
fn category(text: &str) -> String {
    match text.split_once('T') {
        Some((date, "00:00:00")) => date.to_string(),
        Some((date, time)) if date.len() == 10 => {
            format!("{date} {}", time.get(..5).unwrap_or(time))
        }
        _ => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn result() -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("platform", DataType::Utf8, false),
            Field::new("row_type", DataType::Utf8, false),
            Field::new("sent", DataType::Int64, true),
            Field::new("revenue", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    "iterable",
                    "iterable",
                    "dotdigital",
                    "smartrmail",
                ])),
                Arc::new(StringArray::from(vec![
                    "campaign", "total", "total", "total",
                ])),
                Arc::new(Int64Array::from(vec![Some(5), Some(1200), Some(800), None])),
                Arc::new(Float64Array::from(vec![1.0, 3500.5, 1200.0, 90.0])),
            ],
        )
        .expect("batch");
        QueryResult {
            schema,
            batches: vec![batch],
        }
    }

    fn spec(y: &[&str]) -> ChartSpec {
        ChartSpec {
            title: None,
            x: "platform".into(),
            y: y.iter().map(|s| (*s).to_string()).collect(),
            rows: [("row_type".to_string(), "total".to_string())].into(),
        }
    }

    #[test]
    fn a_chart_reads_the_chosen_rows_in_order() {
        let chart =
            BarChart::from_result(&spec(&["sent", "revenue"]), "Weekly", &result()).expect("chart");
        assert_eq!(chart.title, "Weekly");
        assert_eq!(chart.categories, ["iterable", "dotdigital", "smartrmail"]);
        assert_eq!(chart.series[0].name, "sent");
        assert_eq!(chart.series[0].values, [Some(1200.0), Some(800.0), None]);
        assert_eq!(
            chart.series[1].values,
            [Some(3500.5), Some(1200.0), Some(90.0)]
        );
    }

    #[test]
    fn columns_the_answer_lacks_or_that_are_not_numbers_are_named() {
        let missing = BarChart::from_result(&spec(&["opens"]), "W", &result()).unwrap_err();
        assert!(
            missing.to_string().contains("`opens` is not in the answer")
                && missing
                    .to_string()
                    .contains("platform, row_type, sent, revenue"),
            "{missing}"
        );
        let text = BarChart::from_result(&spec(&["row_type"]), "W", &result()).unwrap_err();
        assert!(matches!(text, ChartError::NotNumeric { .. }), "{text}");
    }

    #[test]
    fn the_png_decodes_to_the_size_asked_with_bars_in_the_series_colour() {
        let chart =
            BarChart::from_result(&spec(&["revenue"]), "Revenue", &result()).expect("chart");
        let png = chart.png(640, 320).expect("png");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().expect("png header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("frame");
        assert_eq!((info.width, info.height), (640, 320));
        let RGBColor(r, g, b) = PALETTE[0];
        let bar_pixels = pixels.chunks(3).filter(|p| *p == [r, g, b]).count();
        let white = pixels.chunks(3).filter(|p| *p == [255, 255, 255]).count();
        assert!(bar_pixels > 1_000, "bars drawn: {bar_pixels} pixels");
        assert!(white > 640 * 320 / 2, "mostly background: {white} pixels");
        let dark = pixels
            .chunks(3)
            .filter(|p| p.iter().all(|c| *c < 80))
            .count();
        assert!(dark > 200, "text and axes drawn: {dark} dark pixels");
    }

    #[test]
    fn the_same_chart_gives_the_same_bytes_and_an_svg_with_its_labels() {
        let chart =
            BarChart::from_result(&spec(&["sent", "revenue"]), "Weekly", &result()).expect("chart");
        assert_eq!(
            chart.png(400, 200).expect("png"),
            chart.png(400, 200).expect("png")
        );
        let svg = chart.svg(400, 200).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("dotdigital") && svg.contains("Weekly"));
    }

    #[test]
    fn many_rows_keep_the_first_categories_and_say_so() {
        let values: Vec<i64> = (0..50).collect();
        let names: Vec<String> = values.iter().map(|v| format!("day {v}")).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("day", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(names)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .expect("batch");
        let spec = ChartSpec {
            title: Some("Rows a day".into()),
            x: "day".into(),
            y: vec!["rows".into()],
            rows: Default::default(),
        };
        let result = QueryResult {
            schema,
            batches: vec![batch],
        };
        let chart = BarChart::from_result(&spec, "ignored", &result).expect("chart");
        assert_eq!(chart.categories.len(), MAX_CATEGORIES);
        assert_eq!(chart.title, "Rows a day (first 40 of 50)");
        assert_eq!(category("2026-11-23T00:00:00"), "2026-11-23");
        assert_eq!(category("2026-11-23T08:30:00"), "2026-11-23 08:30");
    }
}
