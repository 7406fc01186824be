//! The graph as SVG, laid out by berth itself: the host on top with its
//! uplinks and published ports, a column per network (its bridge, subnet,
//! gateway and flags, then a box per namespace that is on it alone), and
//! below them the namespaces on several networks, each drawn once with a
//! line to each of its networks. Text is monospace, so a box's width
//! follows from its longest line.

use super::model::{more_hint, more_label, EndpointNode, Graph, NetworkNode};

const FONT: f64 = 12.0;
/// Width of one character at `FONT` (monospace fonts are 0.6 em wide).
const CHAR_W: f64 = 7.25;
const LINE_H: f64 = 16.0;
const PAD: f64 = 8.0;
const MARGIN: f64 = 20.0;
const COLUMN_GAP: f64 = 40.0;
const COLUMN_PAD: f64 = 10.0;
const BOX_GAP: f64 = 10.0;
/// Published ports the host box lists before summarising the rest.
const HOST_PORT_LINES: usize = 16;
const COLORS: &[&str] = &[
    "#1f6fb2", "#2a9d3c", "#c0392b", "#8e44ad", "#b8860b", "#16a2b8", "#d35400", "#6c7a89",
];
const GREY: &str = "#555555";
/// Published ports: a colour no network gets.
const PORT: &str = "#a0206e";

/// The characters XML gives a meaning to, escaped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of text in a box.
struct Line {
    text: String,
    bold: bool,
    color: &'static str,
}

fn plain(text: impl Into<String>) -> Line {
    Line {
        text: text.into(),
        bold: false,
        color: "#000000",
    }
}

fn bold(text: impl Into<String>) -> Line {
    Line {
        text: text.into(),
        bold: true,
        color: "#000000",
    }
}

fn colored(text: impl Into<String>, color: &'static str) -> Line {
    Line {
        text: text.into(),
        bold: false,
        color,
    }
}

/// A box of lines; placed once its size is known.
struct TextBox {
    lines: Vec<Line>,
    x: f64,
    y: f64,
    w: f64,
}

impl TextBox {
    fn new(lines: Vec<Line>) -> TextBox {
        let w = natural_width(&lines);
        TextBox {
            lines,
            x: 0.0,
            y: 0.0,
            w,
        }
    }

    fn h(&self) -> f64 {
        self.lines.len() as f64 * LINE_H + 2.0 * PAD
    }
}

fn natural_width(lines: &[Line]) -> f64 {
    let chars = lines
        .iter()
        .map(|l| l.text.chars().count())
        .max()
        .unwrap_or(0);
    chars as f64 * CHAR_W + 2.0 * PAD
}

/// What is written, in drawing order.
#[derive(Default)]
struct Canvas {
    body: String,
}

impl Canvas {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, style: &str) {
        self.body += &format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"6\" {style}/>\n"
        );
    }

    fn line(&mut self, from: (f64, f64), to: (f64, f64), color: &str, dashed: bool) {
        let dash = if dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        self.body += &format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"1.5\"{dash}/>\n",
            from.0, from.1, to.0, to.1
        );
    }

    fn text(&mut self, x: f64, y: f64, line: &Line, size: f64, anchor: &str) {
        let weight = if line.bold {
            " font-weight=\"bold\""
        } else {
            ""
        };
        self.body += &format!(
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{}\" text-anchor=\"{anchor}\"{weight}>{}</text>\n",
            line.color,
            escape(&line.text)
        );
    }

    /// A small label on a white ground, centred on `at` (over a line).
    fn label(&mut self, at: (f64, f64), text: &str) {
        let w = text.chars().count() as f64 * 6.1 + 8.0;
        self.body += &format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"#ffffff\"/>\n",
            at.0 - w / 2.0,
            at.1 - 7.0
        );
        self.text(at.0, at.1 + 3.5, &colored(text, GREY), 10.0, "middle");
    }

    fn text_box(&mut self, b: &TextBox, style: &str) {
        self.rect(b.x, b.y, b.w, b.h(), style);
        for (i, l) in b.lines.iter().enumerate() {
            let y = b.y + PAD + (i as f64 + 1.0) * LINE_H - 4.0;
            self.text(b.x + PAD, y, l, FONT, "start");
        }
    }
}

/// A network's column: its header, the boxes of the namespaces on it
/// alone, and the summary of what is left out.
struct Column {
    header: TextBox,
    boxes: Vec<(TextBox, bool)>,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    color: &'static str,
}

fn network_header(n: &NetworkNode) -> Vec<Line> {
    let mut lines = vec![bold(format!("network {}", n.name))];
    let bridge = match n.bridge_up {
        Some(false) => format!("bridge {} (missing or down)", n.bridge),
        _ => format!("bridge {}", n.bridge),
    };
    lines.push(plain(bridge));
    lines.push(plain(format!("subnet {}", n.subnet)));
    lines.push(plain(format!("gateway {}", n.gateway)));
    let mut words = n.flags.words();
    if let Some(o) = &n.owner {
        words.push(format!("owner {o}"));
    }
    // Flags a few to a line, so that a long list does not widen the column.
    let mut current = String::new();
    for w in words {
        if !current.is_empty() && current.len() + w.len() + 2 > 30 {
            lines.push(colored(std::mem::take(&mut current), GREY));
        }
        if !current.is_empty() {
            current += ", ";
        }
        current += &w;
    }
    if !current.is_empty() {
        lines.push(colored(current, GREY));
    }
    lines
}

fn endpoint_lines(e: &EndpointNode) -> Vec<Line> {
    let mut lines = vec![bold(e.name.clone())];
    if let Some(o) = e.owner_label() {
        lines.push(colored(o, GREY));
    }
    if e.netns != e.name {
        lines.push(plain(format!("netns {}", e.netns)));
    }
    lines.push(plain(format!("{} {}", e.ifname, e.address)));
    lines.push(plain(format!("mac {}", e.mac)));
    for p in &e.ports {
        lines.push(colored(format!("{} -> {}", p.host, p.inside), PORT));
    }
    if e.status != "up" {
        lines.push(colored(format!("({})", e.status), "#c0392b"));
    }
    lines
}

pub fn render(graph: &Graph) -> String {
    let mut canvas = Canvas::default();
    let shared = graph.shared();

    // Title and notes.
    let mut title = vec![bold(format!(
        "berth graph: {} network(s), {} endpoint(s)",
        graph.networks.len(),
        graph.endpoint_count()
    ))];
    if let Some(dir) = &graph.no_state {
        title.push(colored(
            format!("berth has no state yet ({dir}): nothing made so far"),
            GREY,
        ));
    }
    if let Some(why) = &graph.facts_missing {
        title.push(colored(format!("link states unknown: {why}"), GREY));
    }
    let title_w = natural_width(&title);
    let mut y = MARGIN;
    let title_y = y;
    y += title.len() as f64 * LINE_H + 10.0;

    // The host.
    let mut host_lines = vec![bold("host")];
    for u in &graph.uplinks {
        let mut s = format!("uplink {}", u.ifname);
        if !u.addresses.is_empty() {
            s += &format!(" {}", u.addresses.join(", "));
        }
        host_lines.push(plain(s));
        if let Some(gw) = &u.default_via {
            host_lines.push(colored(format!("  default via {gw}"), GREY));
        }
        if !u.networks.is_empty() {
            host_lines.push(colored(
                format!("  uplink of {}", u.networks.join(", ")),
                GREY,
            ));
        }
        if u.up == Some(false) {
            host_lines.push(colored("  (missing or down)", "#c0392b"));
        }
    }
    let ports = graph.ports();
    let hidden_ports: usize = graph.networks.iter().map(|n| n.hidden_ports).sum();
    if !ports.is_empty() || hidden_ports > 0 {
        host_lines.push(bold("published ports"));
        for (p, e) in ports.iter().take(HOST_PORT_LINES) {
            host_lines.push(colored(
                format!("{} -> {} {}:{}", p.host, e.name, e.ip(), p.inside),
                PORT,
            ));
        }
        let more = ports.len().saturating_sub(HOST_PORT_LINES) + hidden_ports;
        if more > 0 {
            host_lines.push(colored(
                format!("... and {more} more (berth port NAME)"),
                GREY,
            ));
        }
    }
    let mut host = TextBox::new(host_lines);
    host.y = y;
    y += host.h() + 60.0;

    // The networks' columns.
    let columns_y = y;
    let mut columns: Vec<Column> = Vec::new();
    let mut x = MARGIN;
    for (ni, n) in graph.networks.iter().enumerate() {
        let color = COLORS[ni % COLORS.len()];
        let mut header = TextBox::new(network_header(n));
        let mut boxes: Vec<(TextBox, bool)> = n
            .endpoints
            .iter()
            .enumerate()
            .filter(|&(ei, _)| !Graph::is_shared(&shared, ni, ei))
            .map(|(_, e)| (TextBox::new(endpoint_lines(e)), false))
            .collect();
        let on_shared = n.endpoints.len() - boxes.len();
        if on_shared > 0 {
            boxes.push((
                TextBox::new(vec![colored(
                    format!("{on_shared} namespace(s) below"),
                    GREY,
                )]),
                true,
            ));
        }
        if n.hidden > 0 {
            boxes.push((
                TextBox::new(vec![bold(more_label(n)), colored(more_hint(&n.name), GREY)]),
                true,
            ));
        }
        if n.endpoints.is_empty() && n.hidden == 0 {
            boxes.push((TextBox::new(vec![colored("no endpoints", GREY)]), true));
        }
        let inner = boxes.iter().map(|(b, _)| b.w).fold(header.w, f64::max);
        header.w = inner;
        header.x = x + COLUMN_PAD;
        header.y = columns_y + COLUMN_PAD;
        let mut by = header.y + header.h() + BOX_GAP;
        for (b, _) in &mut boxes {
            b.w = inner;
            b.x = x + COLUMN_PAD;
            b.y = by;
            by += b.h() + BOX_GAP;
        }
        let w = inner + 2.0 * COLUMN_PAD;
        columns.push(Column {
            header,
            boxes,
            x,
            y: columns_y,
            w,
            h: by - columns_y - BOX_GAP + COLUMN_PAD,
            color,
        });
        x += w + COLUMN_GAP;
    }
    let mut right = x - COLUMN_GAP;
    let mut bottom = columns.iter().map(|c| c.y + c.h).fold(columns_y, f64::max);
    let mut empty = None;
    if graph.networks.is_empty() {
        let mut b = TextBox::new(vec![
            bold("no networks"),
            colored("berth network create NAME makes one", GREY),
        ]);
        b.x = MARGIN;
        b.y = columns_y;
        right = b.x + b.w;
        bottom = b.y + b.h();
        empty = Some(b);
    }

    // Namespaces on several networks, each below the middle of its networks.
    let shared_y = bottom + 70.0;
    let mut shared_boxes: Vec<TextBox> = Vec::new();
    let mut next_x = MARGIN;
    for s in &shared {
        let mut lines = vec![bold(format!("netns {}", s.netns))];
        let first = &graph.networks[s.at[0].0].endpoints[s.at[0].1];
        if let Some(o) = first.owner_label() {
            lines.push(colored(o, GREY));
        }
        for &(ni, ei) in &s.at {
            let e = &graph.networks[ni].endpoints[ei];
            let color = COLORS[ni % COLORS.len()];
            lines.push(colored(
                format!("{} {} on {}", e.ifname, e.address, graph.networks[ni].name),
                color,
            ));
            lines.push(plain(format!("  mac {}  ({})", e.mac, e.name)));
            for p in &e.ports {
                lines.push(colored(format!("  {} -> {}", p.host, p.inside), PORT));
            }
            if e.status != "up" {
                lines.push(colored(format!("  ({})", e.status), "#c0392b"));
            }
        }
        let mut b = TextBox::new(lines);
        let centre =
            s.at.iter()
                .map(|&(ni, _)| columns[ni].x + columns[ni].w / 2.0)
                .sum::<f64>()
                / s.at.len() as f64;
        b.x = (centre - b.w / 2.0).max(next_x);
        b.y = shared_y;
        next_x = b.x + b.w + COLUMN_GAP / 2.0;
        right = right.max(b.x + b.w);
        shared_boxes.push(b);
    }
    if !shared_boxes.is_empty() {
        bottom = shared_boxes
            .iter()
            .map(|b| b.y + b.h())
            .fold(bottom, f64::max);
    }

    // The legend.
    let mut legend = vec![bold("legend")];
    legend.push(plain(
        "solid line: a bridge of the host / an endpoint on a network",
    ));
    if graph.networks.iter().any(|n| n.flags.internal) {
        legend.push(plain(
            "dashed line: internal network, no way out of the host",
        ));
    }
    if let Some(note) = graph.isolation_note() {
        legend.push(plain(note));
    }
    let mut legend = TextBox::new(legend);
    legend.x = MARGIN;
    legend.y = bottom + 30.0;

    let width = right
        .max(MARGIN + host.w)
        .max(MARGIN + legend.w)
        .max(MARGIN + title_w)
        + MARGIN;
    let height = legend.y + legend.h() + MARGIN;
    host.x = ((width - host.w) / 2.0).max(MARGIN);

    // Drawing: edges first, so that boxes sit on top of them.
    let host_bottom = (host.x + host.w / 2.0, host.y + host.h());
    for (n, c) in graph.networks.iter().zip(&columns) {
        let top = (c.x + c.w / 2.0, c.y);
        if n.flags.internal {
            canvas.line(host_bottom, top, GREY, true);
            let middle = ((host_bottom.0 + top.0) / 2.0, (host_bottom.1 + top.1) / 2.0);
            canvas.label(middle, "internal: no way out");
        } else {
            canvas.line(host_bottom, top, c.color, false);
        }
    }
    if let Some(b) = &empty {
        canvas.line(host_bottom, (b.x + b.w / 2.0, b.y), GREY, true);
    }
    for (ni, c) in columns.iter().enumerate() {
        let mine: Vec<(usize, usize)> = shared
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.at.iter()
                    .enumerate()
                    .filter(move |(_, at)| at.0 == ni)
                    .map(move |(k, _)| (si, k))
            })
            .collect();
        for (j, &(si, k)) in mine.iter().enumerate() {
            let from = (
                c.x + c.w * (j as f64 + 1.0) / (mine.len() as f64 + 1.0),
                c.y + c.h,
            );
            let b = &shared_boxes[si];
            let count = shared[si].at.len() as f64;
            let to = (b.x + b.w * (k as f64 + 1.0) / (count + 1.0), b.y);
            canvas.line(from, to, c.color, false);
        }
    }

    for (i, l) in title.iter().enumerate() {
        canvas.text(
            MARGIN,
            title_y + (i as f64 + 1.0) * LINE_H - 4.0,
            l,
            FONT,
            "start",
        );
    }
    canvas.text_box(
        &host,
        "fill=\"#f4f4f4\" stroke=\"#333333\" stroke-width=\"1.5\"",
    );
    for c in &columns {
        canvas.rect(
            c.x,
            c.y,
            c.w,
            c.h,
            &format!(
                "fill=\"{}\" fill-opacity=\"0.08\" stroke=\"{}\" stroke-width=\"2\"",
                c.color, c.color
            ),
        );
        canvas.text_box(
            &c.header,
            &format!(
                "fill=\"{}\" fill-opacity=\"0.18\" stroke=\"{}\"",
                c.color, c.color
            ),
        );
        for (b, summary) in &c.boxes {
            let style = if *summary {
                "fill=\"#ffffff\" stroke=\"#999999\" stroke-dasharray=\"4 3\""
            } else {
                "fill=\"#ffffff\" stroke=\"#777777\""
            };
            canvas.text_box(b, style);
        }
    }
    if let Some(b) = &empty {
        canvas.text_box(
            b,
            "fill=\"#ffffff\" stroke=\"#999999\" stroke-dasharray=\"4 3\"",
        );
    }
    for b in &shared_boxes {
        canvas.text_box(
            b,
            "fill=\"#ffffff\" stroke=\"#333333\" stroke-width=\"1.5\"",
        );
    }
    canvas.text_box(&legend, "fill=\"#fafafa\" stroke=\"#cccccc\"");

    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans Mono, monospace\">\n\
         <title>berth graph</title>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n{}</svg>\n",
        canvas.body
    )
}
