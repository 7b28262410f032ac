//! Self-contained HTML reports for `cohort-bench ... --report FILE.html`.
//!
//! A [`Report`] collects preformatted text, tables and figures (line charts, percentile charts,
//! bar charts) and renders them as one page with hand-written inline SVG: no external resources,
//! no JavaScript, so the reports of two runs can be opened side by side and compared by looking.
//! The page is polyglot XHTML (well-formed XML as well as HTML), and the same inputs always give
//! the same bytes. Non-finite values (and magnitudes above 1e300, so that ranges stay finite) are
//! skipped and empty or flat data gets a padded range: a chart never panics and never writes
//! `NaN` or `inf` into the SVG.

use std::fmt::Write as _;
use std::path::Path;

/// Series colours, cycled when a chart has more series than colours.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];
/// Minimum width of a figure, pixels.
const WIDTH: f64 = 720.0;
/// Height of a figure with few series, pixels.
const HEIGHT: f64 = 380.0;
/// Values of larger magnitude are treated like non-finite ones.
const LIMIT: f64 = 1e300;
/// Legend entries and bar labels longer than this many characters are shortened.
const LABEL_CHARS: usize = 24;
/// The page's style sheet (free of `<` and `&`, so it needs no escaping).
const CSS: &str = "
body { font-family: sans-serif; color: #222; margin: 2em; max-width: 1200px; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.15em; margin-top: 1.5em; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #eee; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure.plot { margin: 1.5em 0; }
figcaption { font-weight: bold; margin-bottom: 0.3em; }
svg { max-width: 100%; height: auto; }
";

/// An HTML page under construction: a title, then sections and figures in the order added.
#[derive(Debug, Clone)]
pub struct Report {
    title: String,
    sections: Vec<String>,
    figures: usize,
}

impl Report {
    /// An empty report whose page title and heading is `title`.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            sections: Vec::new(),
            figures: 0,
        }
    }

    /// A preformatted block (e.g. the configuration file, the command line). Escaped.
    pub fn text(&mut self, heading: &str, body: &str) {
        self.sections.push(format!(
            "<section>\n<h2>{}</h2>\n<pre>{}</pre>\n</section>\n",
            esc(heading),
            esc(body)
        ));
    }

    /// A table: header cells and rows of cells. Escaped; cells that parse as numbers are
    /// right-aligned.
    pub fn table(&mut self, heading: &str, header: &[&str], rows: &[Vec<String>]) {
        let mut s = format!("<section>\n<h2>{}</h2>\n<table>\n<thead><tr>", esc(heading));
        for cell in header {
            let _ = write!(s, "<th>{}</th>", esc(cell));
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            s.push_str("<tr>");
            for cell in row {
                let class = if cell.trim().parse::<f64>().is_ok() {
                    r#" class="num""#
                } else {
                    ""
                };
                let _ = write!(s, "<td{class}>{}</td>", esc(cell));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody>\n</table>\n</section>\n");
        self.sections.push(s);
    }

    /// One figure: a line chart. Each series is (name, points (x, y)), drawn in its order. The y
    /// axis always includes zero; each series gets a colour and a legend entry.
    pub fn line_chart(
        &mut self,
        title: &str,
        x_label: &str,
        y_label: &str,
        series: &[(String, Vec<(f64, f64)>)],
    ) {
        self.lines(title, x_label, y_label, series, None);
    }

    /// One figure: distributions as lines of percentiles, each series being
    /// (name, points (percentile 0..100, value)). The x axis is "percentile" and spans 0..100.
    pub fn percentile_chart(
        &mut self,
        title: &str,
        value_label: &str,
        series: &[(String, Vec<(f64, f64)>)],
    ) {
        self.lines(title, "percentile", value_label, series, Some((0.0, 100.0)));
    }

    /// One figure: a bar chart of (label, value) pairs (e.g. per-object throughput).
    pub fn bar_chart(&mut self, title: &str, y_label: &str, bars: &[(String, f64)]) {
        let n = bars.len();
        let rotate = n > 6;
        let w = WIDTH.max(92.0 + 36.0 * n as f64);
        let h = if rotate { HEIGHT + 50.0 } else { HEIGHT };
        let area = Area {
            l: 72.0,
            r: w - 20.0,
            t: 20.0,
            b: h - if rotate { 100.0 } else { 52.0 },
        };
        let values = bounds(bars.iter().map(|bar| bar.1).filter(|&v| usable(v)));
        let y = Axis::new(values.map(with_zero));
        let mut svg = String::new();
        grid_y(&mut svg, &area, &y, y_label);
        frame(&mut svg, &area);
        if values.is_none() {
            no_data(&mut svg, &area);
        }
        let slot = (area.r - area.l) / n.max(1) as f64;
        let zero = area.y(y.frac(0.0));
        for (i, (label, v)) in bars.iter().enumerate() {
            let cx = area.l + slot * (i as f64 + 0.5);
            if usable(*v) {
                let level = area.y(y.frac(*v));
                let (top, bottom) = (level.min(zero), level.max(zero));
                let _ = writeln!(
                    svg,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                    num(cx - slot * 0.35),
                    num(top),
                    num(slot * 0.7),
                    num(bottom - top),
                    PALETTE[0]
                );
                if n <= 30 {
                    let ty = if *v >= 0.0 { top - 4.0 } else { bottom + 12.0 };
                    let _ = writeln!(
                        svg,
                        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                        num(cx),
                        num(ty),
                        esc(&fmt_value(*v))
                    );
                }
            } else {
                let _ = writeln!(
                    svg,
                    r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">n/a</text>"##,
                    num(cx),
                    num(zero - 4.0)
                );
            }
            let (cx, ly) = (num(cx), num(area.b + 14.0));
            let text = label_text(label, LABEL_CHARS);
            let _ = if rotate {
                writeln!(
                    svg,
                    r#"<text transform="translate({cx},{ly}) rotate(-35)" dy="0.32em" text-anchor="end">{text}</text>"#
                )
            } else {
                writeln!(
                    svg,
                    r#"<text x="{cx}" y="{ly}" dy="0.32em" text-anchor="middle">{text}</text>"#
                )
            };
        }
        self.figure(title, w, h, &svg);
    }

    /// Number of figures added so far (each chart call adds exactly one `<svg>` figure).
    pub fn figures(&self) -> usize {
        self.figures
    }

    /// The whole page.
    pub fn to_html(&self) -> String {
        let title = esc(&self.title);
        let mut html = format!(
            "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n\
             <meta charset=\"utf-8\"/>\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n\
             <body>\n<h1>{title}</h1>\n"
        );
        html.push_str(&self.sections.concat());
        html.push_str("</body>\n</html>\n");
        html
    }

    /// Writes [`Report::to_html`] to `path`; the error names the path.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        std::fs::write(path, self.to_html())
            .map_err(|e| format!("cannot write the report {}: {e}", path.display()))
    }

    /// The line chart behind [`Report::line_chart`] and [`Report::percentile_chart`]; the x range
    /// covers `x_fixed` as well as the data.
    fn lines(
        &mut self,
        title: &str,
        x_label: &str,
        y_label: &str,
        series: &[(String, Vec<(f64, f64)>)],
        x_fixed: Option<(f64, f64)>,
    ) {
        let clean: Vec<(&str, Vec<(f64, f64)>)> = series
            .iter()
            .map(|(name, points)| {
                let kept = points
                    .iter()
                    .copied()
                    .filter(|&(x, y)| usable(x) && usable(y));
                (name.as_str(), kept.collect())
            })
            .collect();
        let xs = bounds(
            clean
                .iter()
                .flat_map(|(_, points)| points.iter().map(|p| p.0)),
        );
        let ys = bounds(
            clean
                .iter()
                .flat_map(|(_, points)| points.iter().map(|p| p.1)),
        );
        let has_data = xs.is_some();
        let xs = match (xs, x_fixed) {
            (Some((lo, hi)), Some((a, b))) => Some((lo.min(a), hi.max(b))),
            (found, None) => found,
            (None, fixed) => fixed,
        };
        let (x, y) = (Axis::new(xs), Axis::new(ys.map(with_zero)));
        let h = HEIGHT.max(100.0 + 18.0 * clean.len() as f64);
        let area = Area {
            l: 72.0,
            r: WIDTH - 168.0,
            t: 20.0,
            b: h - 52.0,
        };
        let mut svg = String::new();
        grid_y(&mut svg, &area, &y, y_label);
        grid_x(&mut svg, &area, &x, x_label);
        frame(&mut svg, &area);
        if !has_data {
            no_data(&mut svg, &area);
        }
        for (i, (name, points)) in clean.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let coords: Vec<String> = points
                .iter()
                .map(|&(px, py)| format!("{},{}", num(area.x(x.frac(px))), num(area.y(y.frac(py)))))
                .collect();
            if coords.len() > 1 {
                let _ = writeln!(
                    svg,
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.75" stroke-linejoin="round" points="{}"/>"#,
                    coords.join(" ")
                );
            }
            if coords.len() <= 50 {
                for (cx, cy) in coords.iter().filter_map(|c| c.split_once(',')) {
                    let _ = writeln!(
                        svg,
                        r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>"#
                    );
                }
            }
            let (lx, ly) = (area.r + 16.0, area.t + 8.0 + 18.0 * i as f64);
            let _ = writeln!(
                svg,
                r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{colour}" stroke-width="2.5"/><text x="{}" y="{}" dy="0.32em">{}</text>"#,
                num(lx),
                num(ly),
                num(lx + 18.0),
                num(ly),
                num(lx + 24.0),
                num(ly),
                label_text(name, LABEL_CHARS)
            );
        }
        self.figure(title, WIDTH, h, &svg);
    }

    /// Wraps `content` in `<figure><figcaption/><svg/></figure>` and counts the figure.
    fn figure(&mut self, title: &str, w: f64, h: f64, content: &str) {
        let (w, h) = (num(w), num(h));
        self.sections.push(format!(
            "<figure class=\"plot\"><figcaption>{}</figcaption>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" \
             font-size=\"11\" fill=\"#222\">\n{content}</svg></figure>\n",
            esc(title)
        ));
        self.figures += 1;
    }
}

/// The plotting area of a figure, pixels: left, right, top, bottom.
struct Area {
    l: f64,
    r: f64,
    t: f64,
    b: f64,
}

impl Area {
    /// The x pixel of a fraction (0 left, 1 right) of the area's width.
    fn x(&self, frac: f64) -> f64 {
        self.l + frac * (self.r - self.l)
    }

    /// The y pixel of a fraction (0 bottom, 1 top) of the area's height.
    fn y(&self, frac: f64) -> f64 {
        self.b - frac * (self.b - self.t)
    }
}

/// A linear axis: its range (always `lo < hi`), tick step and ticks.
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis covering `bounds` (0..1 without data), padded when the range is empty and
    /// widened to multiples of a 1/2/5 x 10^k step giving about 5 ticks.
    fn new(bounds: Option<(f64, f64)>) -> Self {
        let (mut lo, mut hi) = bounds.unwrap_or((0.0, 1.0));
        if !usable(lo) || !usable(hi) {
            (lo, hi) = (0.0, 1.0);
        }
        if lo > hi {
            std::mem::swap(&mut lo, &mut hi);
        }
        if hi - lo <= lo.abs().max(hi.abs()) * 1e-12 {
            if lo == 0.0 {
                hi = 1.0;
            } else {
                let pad = (lo.abs() * 0.1).max(f64::MIN_POSITIVE);
                (lo, hi) = (lo - pad, hi + pad);
            }
        }
        let step = nice_step((hi - lo) / 5.0);
        let (first, last) = ((lo / step).floor(), (hi / step).ceil());
        let count = last - first;
        if !(1.0..=40.0).contains(&count) {
            return Self {
                lo,
                hi,
                step: hi - lo,
                ticks: vec![lo, hi],
            };
        }
        let ticks = (0..=count as usize)
            .map(|i| (first + i as f64) * step)
            .collect();
        Self {
            lo: first * step,
            hi: last * step,
            step,
            ticks,
        }
    }

    /// Where `v` lies between `lo` (0) and `hi` (1); 0.5 if that is not a number.
    fn frac(&self, v: f64) -> f64 {
        let f = (v - self.lo) / (self.hi - self.lo);
        if f.is_finite() { f } else { 0.5 }
    }
}

/// The smallest 1, 2 or 5 x 10^k at least `raw` (1 for a useless `raw`).
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Whether a value can be plotted.
fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() <= LIMIT
}

/// The least and greatest of some values, `None` if there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A range widened to include zero.
fn with_zero((lo, hi): (f64, f64)) -> (f64, f64) {
    (lo.min(0.0), hi.max(0.0))
}

/// Horizontal grid lines with tick labels, and the rotated y axis label.
fn grid_y(svg: &mut String, area: &Area, y: &Axis, label: &str) {
    for &t in &y.ticks {
        let py = num(area.y(y.frac(t)));
        let _ = writeln!(
            svg,
            r##"<line x1="{}" y1="{py}" x2="{}" y2="{py}" stroke="#e4e4e4"/><text x="{}" y="{py}" dy="0.32em" text-anchor="end">{}</text>"##,
            num(area.l),
            num(area.r),
            num(area.l - 6.0),
            esc(&fmt_tick(t, y.step))
        );
    }
    let _ = writeln!(
        svg,
        r#"<text transform="rotate(-90)" x="{}" y="16" text-anchor="middle">{}</text>"#,
        num(-(area.t + area.b) / 2.0),
        esc(label)
    );
}

/// Vertical grid lines with tick labels, and the x axis label.
fn grid_x(svg: &mut String, area: &Area, x: &Axis, label: &str) {
    for &t in &x.ticks {
        let px = num(area.x(x.frac(t)));
        let _ = writeln!(
            svg,
            r##"<line x1="{px}" y1="{}" x2="{px}" y2="{}" stroke="#e4e4e4"/><text x="{px}" y="{}" text-anchor="middle">{}</text>"##,
            num(area.t),
            num(area.b),
            num(area.b + 16.0),
            esc(&fmt_tick(t, x.step))
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        num((area.l + area.r) / 2.0),
        num(area.b + 38.0),
        esc(label)
    );
}

/// The left and bottom axis lines.
fn frame(svg: &mut String, area: &Area) {
    let (l, r, t, b) = (num(area.l), num(area.r), num(area.t), num(area.b));
    let _ = writeln!(
        svg,
        r##"<path d="M{l},{t} L{l},{b} L{r},{b}" fill="none" stroke="#444"/>"##
    );
}

/// A "no data" note in the middle of the area.
fn no_data(svg: &mut String, area: &Area) {
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#888" font-size="14">no data</text>"##,
        num((area.l + area.r) / 2.0),
        num((area.t + area.b) / 2.0)
    );
}

/// Escapes text for XML content and attributes; control characters XML forbids become U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text shortened to `max` characters, with the whole text as a tooltip when shortened.
fn label_text(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return esc(s);
    }
    let short: String = s.chars().take(max.saturating_sub(1)).chain(['…']).collect();
    format!("<title>{}</title>{}", esc(s), esc(&short))
}

/// A number for an attribute: at most 2 decimals, no trailing zeros, 0 for non-finite values.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    trim_zeros(format!("{v:.2}"))
}

/// Removes trailing zeros after a decimal point, and the sign of a zero.
fn trim_zeros(mut s: String) -> String {
    if s.contains('.') {
        let len = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(len);
    }
    if s == "-0" { "0".to_string() } else { s }
}

/// The scale and suffix for a value: T, G, M, k or none.
fn unit(v: f64) -> (f64, &'static str) {
    match v.abs() {
        a if a >= 1e12 => (1e12, "T"),
        a if a >= 1e9 => (1e9, "G"),
        a if a >= 1e6 => (1e6, "M"),
        a if a >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    }
}

/// A tick label (1.5M, 20k, 0.25, 120) with as many decimals as the step needs.
fn fmt_tick(v: f64, step: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if v.abs() >= 1e15 {
        return format!("{v:.2e}");
    }
    let (scale, suffix) = unit(v);
    let decimals = (-(step / scale).log10()).ceil().clamp(0.0, 9.0) as usize;
    let x = v / scale;
    trim_zeros(format!("{x:.decimals$}")) + suffix
}

/// A value label with about 3 significant digits (1.5M, 123k, 0.0123).
fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    if v.abs() >= 1e15 {
        return format!("{v:.2e}");
    }
    let (scale, suffix) = unit(v);
    let x = v / scale;
    let decimals = (2.0 - x.abs().log10().floor()).clamp(0.0, 6.0) as usize;
    trim_zeros(format!("{x:.decimals$}")) + suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index of the `>` ending the tag opened at `start`, skipping quoted attribute values;
    /// `None` if the tag does not end or a `<` comes first.
    fn tag_end(doc: &str, start: usize) -> Option<usize> {
        let mut quote: Option<u8> = None;
        for (j, &c) in doc.as_bytes().iter().enumerate().skip(start + 1) {
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => {}
                (None, b'"' | b'\'') => quote = Some(c),
                (None, b'>') => return Some(j),
                (None, b'<') => return None,
                (None, _) => {}
            }
        }
        None
    }

    /// `s` starts with `&`: it must be a predefined or numeric character entity.
    fn check_entity(s: &str) -> Result<(), String> {
        let end = s
            .find(';')
            .filter(|&e| e <= 10)
            .ok_or_else(|| format!("raw & in {s:.20}"))?;
        let name = &s[1..end];
        let numeric = name
            .strip_prefix('#')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
        if numeric || matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") {
            Ok(())
        } else {
            Err(format!("bad entity &{name};"))
        }
    }

    /// The attributes of a start tag: `name="value"` or `name='value'`, separated by spaces.
    fn check_attrs(mut s: &str) -> Result<(), String> {
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(());
            }
            let eq = s
                .find('=')
                .ok_or_else(|| format!("attribute without value: {s}"))?;
            let name = &s[..eq];
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '_'))
            {
                return Err(format!("bad attribute name {name:?}"));
            }
            let after = &s[eq + 1..];
            let q = after
                .chars()
                .next()
                .filter(|&c| c == '"' || c == '\'')
                .ok_or_else(|| format!("unquoted attribute {name}"))?;
            let body = &after[1..];
            let close = body
                .find(q)
                .ok_or_else(|| format!("unterminated attribute {name}"))?;
            let value = &body[..close];
            if value.contains('<') {
                return Err(format!("< in attribute {name}"));
            }
            for (k, _) in value.match_indices('&') {
                check_entity(&value[k..])?;
            }
            s = &body[close + 1..];
            if !s.is_empty() && !s.starts_with(char::is_whitespace) {
                return Err(format!("no space after attribute {name}"));
            }
        }
    }

    /// A small well-formedness check: `<!DOCTYPE ...>` before one root element, matched tags,
    /// quoted attributes, `&` only in entities, no text outside the root.
    fn check_xml(doc: &str) -> Result<(), String> {
        let bytes = doc.as_bytes();
        let mut stack: Vec<&str> = Vec::new();
        let mut seen_root = false;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'<' => {
                    let end = tag_end(doc, i).ok_or_else(|| format!("unterminated tag at {i}"))?;
                    let tag = &doc[i + 1..end];
                    i = end + 1;
                    if let Some(decl) = tag.strip_prefix('!') {
                        if !decl.starts_with("DOCTYPE") || seen_root {
                            return Err(format!("unexpected <{tag}>"));
                        }
                    } else if let Some(name) = tag.strip_prefix('/') {
                        match stack.pop() {
                            Some(open) if open == name.trim_end() => {}
                            open => return Err(format!("</{name}> closes {open:?}")),
                        }
                    } else {
                        let inner = tag.strip_suffix('/').unwrap_or(tag);
                        let name_len = inner.find(char::is_whitespace).unwrap_or(inner.len());
                        let name = &inner[..name_len];
                        if name.is_empty()
                            || !name
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':')
                        {
                            return Err(format!("bad tag <{tag}>"));
                        }
                        if stack.is_empty() && seen_root {
                            return Err(format!("second root <{name}>"));
                        }
                        seen_root = true;
                        check_attrs(&inner[name_len..])?;
                        if !tag.ends_with('/') {
                            stack.push(name);
                        }
                    }
                }
                b'&' => {
                    check_entity(&doc[i..])?;
                    i += 1;
                }
                c => {
                    if stack.is_empty() && !c.is_ascii_whitespace() {
                        return Err(format!("text outside the root at {i}"));
                    }
                    i += 1;
                }
            }
        }
        match (stack.last(), seen_root) {
            (Some(open), _) => Err(format!("<{open}> is not closed")),
            (None, false) => Err("no root element".to_string()),
            (None, true) => Ok(()),
        }
    }

    fn sample() -> Report {
        let mut r = Report::new("Cohort run");
        r.text("Configuration", "[cluster]\nnodes = 3 # a < b && c > d\n");
        r.table(
            "Summary",
            &["metric", "value"],
            &[
                vec!["ops/s".to_string(), "125000".to_string()],
                vec!["p99 (ms)".to_string(), "1.25".to_string()],
            ],
        );
        let run = |k: f64| {
            (0..20_i32)
                .map(|i| (f64::from(i), k * 1000.0 + f64::from(i * i)))
                .collect::<Vec<_>>()
        };
        r.line_chart(
            "Throughput over time",
            "seconds",
            "ops/s",
            &[
                ("run A".to_string(), run(1.0)),
                ("run B".to_string(), run(1.5)),
            ],
        );
        let latencies = vec![(50.0, 1.0), (90.0, 2.5), (99.0, 7.0), (100.0, 12.0)];
        r.percentile_chart("Latency", "ms", &[("run A".to_string(), latencies)]);
        r.bar_chart(
            "Per object",
            "ops/s",
            &[("obj-1".to_string(), 1.5e6), ("obj-2".to_string(), 2e4)],
        );
        r
    }

    #[test]
    fn one_svg_per_figure() {
        let r = sample();
        assert_eq!(r.figures(), 3);
        assert_eq!(r.to_html().matches("<svg").count(), 3);
    }

    #[test]
    fn output_is_well_formed_xml() {
        assert_eq!(check_xml(&sample().to_html()), Ok(()));
    }

    #[test]
    fn checker_rejects_malformed_documents() {
        assert_eq!(
            check_xml("<!DOCTYPE html>\n<a x=\"1\"><b/>t &amp; u&#39;</a>\n"),
            Ok(())
        );
        assert!(check_xml("<a><b></a>").is_err());
        assert!(check_xml("<a><b>").is_err());
        assert!(check_xml("<a>x & y</a>").is_err());
        assert!(check_xml("<a x=1></a>").is_err());
        assert!(check_xml("<a></a><b></b>").is_err());
    }

    #[test]
    fn text_is_escaped() {
        let evil = "<script>&\"'";
        let mut r = Report::new(evil);
        r.text(evil, evil);
        r.table(evil, &[evil], &[vec![evil.to_string()]]);
        r.line_chart(
            evil,
            evil,
            evil,
            &[(evil.to_string(), vec![(1.0, 2.0), (2.0, 3.0)])],
        );
        r.bar_chart(evil, evil, &[(evil.to_string(), 1.0)]);
        let html = r.to_html();
        assert!(!html.contains("<script"));
        assert!(html.contains("&lt;script&gt;&amp;&quot;&#39;"));
        assert_eq!(check_xml(&html), Ok(()));
    }

    #[test]
    fn degenerate_inputs_are_drawn_without_nan() {
        let mut r = Report::new("degenerate");
        r.line_chart("nothing", "x", "y", &[]);
        r.line_chart("empty series", "x", "y", &[("a".to_string(), vec![])]);
        let bad = vec![
            (f64::NAN, 1.0),
            (1.0, f64::NAN),
            (f64::INFINITY, 2.0),
            (2.0, f64::NEG_INFINITY),
        ];
        r.line_chart(
            "bad points",
            "x",
            "y",
            &[
                ("missing".to_string(), bad),
                ("single".to_string(), vec![(3.0, 7.0)]),
            ],
        );
        r.line_chart(
            "flat",
            "x",
            "y",
            &[("flat".to_string(), vec![(1.0, 5.0), (1.0, 5.0)])],
        );
        r.line_chart(
            "huge",
            "x",
            "y",
            &[("h".to_string(), vec![(1e308, -1e308), (-1e300, 1e300)])],
        );
        r.line_chart(
            "tiny",
            "x",
            "y",
            &[("t".to_string(), vec![(0.0, 5e-324), (1.0, 5e-324)])],
        );
        r.percentile_chart("no percentiles", "ms", &[]);
        r.percentile_chart(
            "zero",
            "ms",
            &[("z".to_string(), vec![(0.0, 0.0), (100.0, 0.0)])],
        );
        r.bar_chart("no bars", "v", &[]);
        let odd = [
            ("missing", f64::NAN),
            ("zero", 0.0),
            ("neg", -3.0),
            ("big", f64::INFINITY),
        ];
        r.bar_chart("odd bars", "v", &odd.map(|(l, v)| (l.to_string(), v)));
        let many: Vec<(String, f64)> = (0..40_i32)
            .map(|i| (format!("object {i}"), f64::from(i)))
            .collect();
        r.bar_chart("many bars", "v", &many);
        assert_eq!(r.figures(), 11);
        let html = r.to_html();
        assert_eq!(html.matches("<svg").count(), 11);
        for part in html.split("<svg").skip(1) {
            let svg = part.split("</svg>").next().unwrap_or("");
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
        assert_eq!(check_xml(&html), Ok(()));
    }

    #[test]
    fn numbers_are_formatted_nicely() {
        assert_eq!(fmt_tick(1.5e6, 5e5), "1.5M");
        assert_eq!(fmt_tick(2e4, 5e3), "20k");
        assert_eq!(fmt_tick(0.25, 0.05), "0.25");
        assert_eq!(fmt_tick(120.0, 20.0), "120");
        assert_eq!(fmt_tick(-0.0, 1.0), "0");
        assert_eq!(fmt_value(123_456.0), "123k");
        assert_eq!(fmt_value(0.01234), "0.0123");
        assert_eq!(num(1.0 / 3.0), "0.33");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(-0.001), "0");
        assert_eq!(
            Axis::new(Some((0.0, 97.0))).ticks,
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        assert!(Axis::new(Some((4.0, 4.0))).ticks.len() > 1);
    }
}
