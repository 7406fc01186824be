//! How lists are shown, the way Docker users expect: text tables whose
//! columns fit their content, `-q` (names only), `--filter key=value` and
//! `--format` (`json`, or a Go-template subset such as
//! `table {{.Name}}\t{{.Subnet}}`).
//!
//! Rows come in as JSON objects (the same views `--json` prints), so every
//! field a user can see in JSON can be filtered on and formatted.

use serde_json::Value;

use crate::error::{Error, Result};

/// One column of a text table: its heading and the JSON field it shows.
pub struct Column {
    pub heading: &'static str,
    pub field: &'static str,
}

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub quiet: bool,
    pub filters: Vec<String>,
    pub format: Option<String>,
    pub json: bool,
}

/// A filter: `key=value`, checked against the row's field `key`.
struct Filter {
    key: String,
    value: String,
}

fn parse_filters(filters: &[String], keys: &[&str]) -> Result<Vec<Filter>> {
    filters
        .iter()
        .map(|f| {
            let (key, value) = f.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "invalid filter {f:?}: expected KEY=VALUE (keys: {})",
                    keys.join(", ")
                ))
            })?;
            if !keys.contains(&key) {
                return Err(Error::invalid(format!(
                    "unknown filter key {key:?} (keys: {})",
                    keys.join(", ")
                )));
            }
            Ok(Filter {
                key: key.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

/// The text of a field: strings bare, everything else as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Whether `key` is the field a template or filter calls `name`: case
/// and underscores do not count (`.EndpointCount` is `endpoint_count`).
fn same_field(key: &str, name: &str) -> bool {
    // Compared letter by letter: a table asks this for every cell.
    let mut a = key.bytes().filter(|b| *b != b'_');
    let mut b = name.bytes().filter(|b| *b != b'_');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

/// A row's field by name (see [`same_field`]); the key spelled as asked
/// (every column of a table) is one lookup.
fn field<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    let row = row.as_object()?;
    row.get(name).or_else(|| {
        row.iter()
            .find(|(k, _)| same_field(k, name))
            .map(|(_, v)| v)
    })
}

fn matches(row: &Value, f: &Filter) -> bool {
    let Some(v) = field(row, &f.key) else {
        return false;
    };
    let t = text(v);
    // `name` matches a part of the name, as Docker's does; others exactly.
    if f.key == "name" {
        t.contains(&f.value)
    } else {
        t == f.value
    }
}

/// One `{{...}}` of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// `{{.Field}}`: the field's text.
    Field(String),
    /// `{{json .Field}}`: the field as JSON.
    JsonField(String),
    /// `{{json .}}`: the whole row as JSON.
    JsonRow,
}

/// A Go-template subset: literal text and actions, with `\t` and `\n`
/// written out (as shells pass them) turned into the characters.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Result<Action, String>>,
}

impl Template {
    /// Parses `text`, refusing what this subset cannot do and fields that
    /// no row has (`fields`), so that a typo fails even on an empty list.
    /// `{{.X}}` shows what the default table shows under the heading X
    /// (`{{.Ports}}` is `ps`'s PORTS column, `0.0.0.0:8080->80/tcp`), and
    /// `{{json .X}}` the field itself (`ps`'s list of port objects).
    pub fn parse(text: &str, fields: &[String], columns: &[Column]) -> Result<Template> {
        if !text.contains("{{") {
            return Err(Error::invalid(format!(
                "unknown --format {text:?}: use `table`, `json`, or a template such as '{{{{.Name}}}}'"
            )));
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Err(unescape(&rest[..start])));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| Error::invalid(format!("unclosed {{{{ in --format {text:?}")))?;
            let action = after[..end].trim();
            let field_of = |name: &str| -> Result<String> {
                let name = name.strip_prefix('.').unwrap_or(name);
                match fields.iter().find(|f| same_field(f, name)) {
                    Some(f) => Ok(f.clone()),
                    None => Err(Error::invalid(format!(
                        "--format: no field {name:?} (fields: {})",
                        fields.join(", ")
                    ))),
                }
            };
            let column_of = |name: &str| {
                let name = name.strip_prefix('.').unwrap_or(name);
                columns
                    .iter()
                    .find(|c| same_field(&c.heading.replace(' ', ""), name))
                    .map(|c| c.field.to_string())
            };
            let parsed = match action.split_whitespace().collect::<Vec<_>>()[..] {
                ["json", "."] => Action::JsonRow,
                ["json", f] if f.starts_with('.') => Action::JsonField(
                    field_of(f).or_else(|e| column_of(f).ok_or(e))?,
                ),
                [f] if f.starts_with('.') && f.len() > 1 => {
                    Action::Field(match column_of(f) {
                        Some(c) => c,
                        None => field_of(f)?,
                    })
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "--format: unsupported action {{{{{action}}}}} (use {{{{.Field}}}}, {{{{json .Field}}}} or {{{{json .}}}})"
                    )))
                }
            };
            parts.push(Ok(parsed));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Err(unescape(rest)));
        }
        Ok(Template { parts })
    }

    /// The template applied to one row.
    pub fn expand(&self, row: &Value) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Err(literal) => out.push_str(literal),
                Ok(Action::JsonRow) => out.push_str(&row.to_string()),
                Ok(Action::JsonField(f)) => {
                    out.push_str(&field(row, f).unwrap_or(&Value::Null).to_string())
                }
                Ok(Action::Field(f)) => out.push_str(&text(field(row, f).unwrap_or(&Value::Null))),
            }
        }
        out
    }

    /// The heading line of a `table` template: each action replaced by
    /// its column's heading (`{{.EndpointCount}}` is ENDPOINTS, as in the
    /// default table), or the field's name in capitals.
    fn heading(&self, columns: &[Column]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Err(literal) => out.push_str(literal),
                Ok(Action::JsonRow) => out.push_str("JSON"),
                Ok(Action::JsonField(f) | Action::Field(f)) => {
                    match columns.iter().find(|c| same_field(c.field, f)) {
                        Some(c) => out.push_str(c.heading),
                        None => out.push_str(&f.replace('_', " ").to_uppercase()),
                    }
                }
            }
        }
        out
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Pads cells so that every column is as wide as its widest cell.
pub fn table(headings: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::default();
    for row in rows {
        for cell in row {
            t.cell(cell);
        }
        t.end_row();
    }
    t.render(headings)
}

/// How many rows make a table long (see [`Table::end_row`]).
pub const LONG_TABLE: usize = 128;
/// The rows a long table is given room for at once.
pub const ROOM_ROWS: usize = 2048;

/// A text table filled a cell at a time: every cell's text goes into one
/// buffer and the table into one string, so that a listing of a thousand
/// rows costs two allocations, not one per cell and line.
#[derive(Default)]
pub struct Table {
    text: String,
    /// Each cell's range in `text` (32 bits: a table of 4 GB is not
    /// printed, and the ranges of a thousand rows then fit in 80 KB).
    cells: Vec<(u32, u32)>,
    /// Each row's end in `cells`.
    rows: Vec<usize>,
}

impl Table {
    /// Adds a cell to the current row.
    pub fn cell(&mut self, text: &str) {
        self.cell_with(|out| out.push_str(text));
    }

    /// Adds a cell whose text `write` appends to the buffer it is given.
    pub fn cell_with(&mut self, write: impl FnOnce(&mut String)) {
        let start = self.text.len() as u32;
        write(&mut self.text);
        self.cells.push((start, self.text.len() as u32));
    }

    /// Ends the current row. At [`LONG_TABLE`] rows the buffers are
    /// given room for [`ROOM_ROWS`] rows of the size seen so far, at once:
    /// room never written costs nothing (the kernel backs a page when it
    /// is first written), whereas growing by doubling copied the cells
    /// into fresh pages at each step (at 1000 `ps` rows those copies and
    /// their page faults were 0.05 ms, perf). A short table keeps the
    /// small buffers, whose allocation costs no system call.
    pub fn end_row(&mut self) {
        self.rows.push(self.cells.len());
        if self.rows.len() == LONG_TABLE {
            let more = ROOM_ROWS - LONG_TABLE;
            self.text.reserve(self.text.len() / LONG_TABLE * more);
            self.cells.reserve(self.cells.len() / LONG_TABLE * more);
            self.rows.reserve(more);
        }
    }

    /// Sets cell `column` of the ended row `row` to `text` (for a cell
    /// known only once every row is read).
    pub fn set(&mut self, row: usize, column: usize, text: &str) {
        let first = if row == 0 { 0 } else { self.rows[row - 1] };
        let start = self.text.len() as u32;
        self.text.push_str(text);
        self.cells[first + column] = (start, self.text.len() as u32);
    }

    /// How many rows were ended.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cells of row `i`.
    fn row(&self, i: usize) -> impl Iterator<Item = &str> {
        let first = if i == 0 { 0 } else { self.rows[i - 1] };
        self.cells[first..self.rows[i]]
            .iter()
            .map(|&(start, end)| &self.text[start as usize..end as usize])
    }

    /// The table under `headings` (none: no heading line): each cell
    /// padded to its column's widest and three spaces, trailing blanks
    /// trimmed from each line.
    pub fn render(&self, headings: &[&str]) -> String {
        let mut out = String::new();
        self.render_to(headings, &mut |chunk| out.push_str(chunk));
        out
    }

    /// [`Table::render`] handed to `sink` in pieces of whole lines of
    /// about 32 KB: a long table is written out without being held whole
    /// (a thousand `ps` rows are 200 KB, 50 pages to fault in).
    pub fn render_to(&self, headings: &[&str], sink: &mut dyn FnMut(&str)) {
        const CHUNK: usize = 32 * 1024;
        let mut widths: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
        for i in 0..self.rows.len() {
            for (c, cell) in self.row(i).enumerate() {
                let w = width(cell);
                match widths.get_mut(c) {
                    Some(max) => *max = (*max).max(w),
                    None => widths.push(w),
                }
            }
        }
        let line_width: usize = widths.iter().map(|w| w + 3).sum();
        let mut out = String::with_capacity(CHUNK.min((self.rows.len() + 1) * (line_width + 1)));
        let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
            let start = out.len();
            let mut cells = cells.zip(&widths).peekable();
            while let Some((cell, w)) = cells.next() {
                out.push_str(cell);
                if cells.peek().is_some() {
                    pad(out, w - width(cell) + 3);
                }
            }
            let kept = out[start..].trim_end().len();
            out.truncate(start + kept);
            out.push('\n');
        };
        if !headings.is_empty() {
            line(&mut out, &mut headings.iter().copied());
        }
        for i in 0..self.rows.len() {
            if out.len() >= CHUNK - line_width {
                sink(&out);
                out.clear();
            }
            line(&mut out, &mut self.row(i));
        }
        if !out.is_empty() {
            sink(&out);
        }
    }
}

/// Appends `n` spaces.
fn pad(out: &mut String, mut n: usize) {
    const SPACES: &str = "                                                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

/// A cell's width in characters (its length when it is ASCII, as almost
/// every cell is).
fn width(cell: &str) -> usize {
    if cell.is_ascii() {
        cell.len()
    } else {
        cell.chars().count()
    }
}

/// Every field a template may name: the fields of the rows and those the
/// listing always has (so that a typo fails on an empty list too).
fn fields_of(rows: &[Value], always: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = always.iter().map(|s| s.to_string()).collect();
    for row in rows {
        if let Some(o) = row.as_object() {
            all.extend(o.keys().cloned());
        }
    }
    all.sort();
    all.dedup();
    all
}

/// Renders `rows` with a `--format` value: `json` (a line of JSON each),
/// `table` (the default table of `columns`), `table TEMPLATE` (aligned,
/// with headings) or a template.
pub fn formatted(
    rows: &[Value],
    columns: &[Column],
    always: &[&str],
    format: &str,
) -> Result<String> {
    match format.trim() {
        "json" => return Ok(rows.iter().map(|r| r.to_string() + "\n").collect()),
        "table" => return Ok(default_table(rows, columns)),
        _ => {}
    }
    let fields = fields_of(rows, always);
    if let Some(body) = format.strip_prefix("table") {
        let template = Template::parse(body.trim_start(), &fields, columns)?;
        let split =
            |line: String| -> Vec<String> { line.split('\t').map(str::to_string).collect() };
        let heading = split(template.heading(columns));
        let heading: Vec<&str> = heading.iter().map(String::as_str).collect();
        let cells: Vec<Vec<String>> = rows.iter().map(|r| split(template.expand(r))).collect();
        return Ok(table(&heading, &cells));
    }
    let template = Template::parse(format, &fields, columns)?;
    Ok(rows.iter().map(|r| template.expand(r) + "\n").collect())
}

fn default_table(rows: &[Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cells(r, columns)).collect();
    plain_table(&cells, columns)
}

/// A row's cells in the default table: the text of each column's field.
pub fn cells(row: &Value, columns: &[Column]) -> Vec<String> {
    columns
        .iter()
        .map(|c| text(field(row, c.field).unwrap_or(&Value::Null)))
        .collect()
}

/// Whether `opts` ask for the default table (no filter, template, JSON or
/// `-q`): then only the cells are shown, and a long list may hand them
/// to [`plain_table`] without building each row's JSON object.
pub fn is_plain_table(opts: &Options) -> bool {
    !opts.quiet && !opts.json && opts.filters.is_empty() && opts.format.is_none()
}

/// The default table of `columns` from each row's [`cells`].
pub fn plain_table(cells: &[Vec<String>], columns: &[Column]) -> String {
    let headings: Vec<&str> = columns.iter().map(|c| c.heading).collect();
    table(&headings, cells)
}

/// Renders `rows` as the user asked: JSON, `-q`, `--format` or a table of
/// `columns`. `filter_keys` are the keys `--filter` accepts.
pub fn render(
    rows: Vec<Value>,
    columns: &[Column],
    filter_keys: &[&str],
    opts: &Options,
) -> Result<String> {
    let filters = parse_filters(&opts.filters, filter_keys)?;
    let rows: Vec<Value> = rows
        .into_iter()
        .filter(|r| filters.iter().all(|f| matches(r, f)))
        .collect();
    if opts.json {
        if opts.format.is_some() {
            return Err(Error::invalid(
                "--json and --format: give one (--format json prints a line of JSON per row)",
            ));
        }
        return serde_json::to_string_pretty(&rows)
            .map(|s| s + "\n")
            .map_err(|e| Error::Other(format!("encoding JSON: {e}")));
    }
    let mut always: Vec<&str> = columns.iter().map(|c| c.field).collect();
    always.extend_from_slice(filter_keys);
    if opts.quiet {
        // Checked all the same: `-q` with a bad format is still a typo.
        if let Some(f) = &opts.format {
            formatted(&[], columns, &always, f)?;
        }
        return Ok(rows
            .iter()
            .map(|r| text(field(r, "name").unwrap_or(&Value::Null)) + "\n")
            .collect());
    }
    match &opts.format {
        Some(format) => formatted(&rows, columns, &always, format),
        None => Ok(default_table(&rows, columns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use serde_json::json;

    fn rows() -> Vec<Value> {
        vec![
            json!({"name": "web", "subnet": "10.90.0.0/24", "internal": false}),
            json!({"name": "database", "subnet": "10.91.0.0/24", "internal": true}),
        ]
    }

    const COLUMNS: &[Column] = &[
        Column {
            heading: "NAME",
            field: "name",
        },
        Column {
            heading: "SUBNET",
            field: "subnet",
        },
    ];

    fn show(opts: Options) -> String {
        render(rows(), COLUMNS, &["name", "internal"], &opts).unwrap()
    }

    #[test]
    fn tables_fit_their_content() {
        expect![[r#"
            NAME       SUBNET
            web        10.90.0.0/24
            database   10.91.0.0/24
        "#]]
        .assert_eq(&show(Options::default()));
    }

    #[test]
    fn quiet_filter_and_format() {
        let o = |f: &[&str], format: Option<&str>, quiet: bool| Options {
            quiet,
            filters: f.iter().map(|s| s.to_string()).collect(),
            format: format.map(str::to_string),
            json: false,
        };
        assert_eq!(show(o(&[], None, true)), "web\ndatabase\n");
        assert_eq!(show(o(&["internal=true"], None, true)), "database\n");
        assert_eq!(show(o(&["name=ata"], None, true)), "database\n");
        assert_eq!(
            show(o(&[], Some("{{.Name}} {{.Subnet}}"), false)),
            "web 10.90.0.0/24\ndatabase 10.91.0.0/24\n"
        );
        assert_eq!(
            show(o(
                &["name=web"],
                Some("table {{.Name}}\\t{{.Internal}}"),
                false
            )),
            "NAME   INTERNAL\nweb    false\n"
        );
        assert_eq!(
            show(o(&["name=web"], Some("json"), false)),
            "{\"internal\":false,\"name\":\"web\",\"subnet\":\"10.90.0.0/24\"}\n"
        );
        let bad = |f: &[&str], format: Option<&str>| {
            render(rows(), COLUMNS, &["name"], &o(f, format, false))
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&["color=red"], None).contains("unknown filter key \"color\""));
        assert!(bad(&["name"], None).contains("expected KEY=VALUE"));
        assert!(bad(&[], Some("{{.Colour}}")).contains("no field \"Colour\""));
        assert!(bad(&[], Some("yaml")).contains("unknown --format \"yaml\""));
        assert!(bad(&[], Some("{{range .}}")).contains("unsupported action"));
        let both = Options {
            json: true,
            format: Some("json".into()),
            ..Options::default()
        };
        assert!(render(rows(), COLUMNS, &["name"], &both)
            .unwrap_err()
            .to_string()
            .contains("--json and --format"));
    }

    #[test]
    fn table_templates_are_aligned_and_headed_like_the_default_table() {
        let o = |format: &str| Options {
            format: Some(format.into()),
            ..Options::default()
        };
        expect![[r#"
            NAME       SUBNET         INTERNAL
            web        10.90.0.0/24   false
            database   10.91.0.0/24   true
        "#]]
        .assert_eq(&show(o("table {{.Name}}\\t{{.Subnet}}\t{{.Internal}}")));
        assert_eq!(show(o("table")), show(Options::default()));
        assert_eq!(
            show(o("{{.Name}}={{json .Internal}} {{json .Subnet}}")),
            "web=false \"10.90.0.0/24\"\ndatabase=true \"10.91.0.0/24\"\n"
        );
        // A typo fails even when no row is there to show it.
        let none = render(vec![], COLUMNS, &["name"], &o("{{.Subnett}}"));
        assert!(none
            .unwrap_err()
            .to_string()
            .contains("no field \"Subnett\""));
        assert_eq!(
            render(vec![], COLUMNS, &["name"], &o("{{.Subnet}}")).unwrap(),
            ""
        );
    }
}
