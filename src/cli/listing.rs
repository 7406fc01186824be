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

/// A row's field by name, case-insensitively (`.Name` finds `name`).
fn field<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    row.as_object()?
        .iter()
        .find(|(k, _)| {
            k.replace('_', "")
                .eq_ignore_ascii_case(&name.replace('_', ""))
        })
        .map(|(_, v)| v)
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

/// Expands a Go-template subset: `{{.Field}}`, `{{json .}}`, `\t`, `\n`.
fn expand(template: &str, row: &Value) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| Error::invalid(format!("unclosed {{{{ in --format {template:?}")))?;
        let action = after[..end].trim();
        if action == "json ." {
            out.push_str(&row.to_string());
        } else if let Some(name) = action.strip_prefix('.') {
            let v = field(row, name).ok_or_else(|| {
                let known: Vec<String> = row
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                Error::invalid(format!(
                    "--format: no field {name:?} (fields: {})",
                    known.join(", ")
                ))
            })?;
            out.push_str(&text(v));
        } else {
            return Err(Error::invalid(format!(
                "--format: unsupported action {{{{{action}}}}} (use {{{{.Field}}}} or {{{{json .}}}})"
            )));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out.replace("\\t", "\t").replace("\\n", "\n"))
}

/// Pads cells so that every column is as wide as its widest cell.
pub fn table(headings: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut l = String::new();
        for (i, (cell, w)) in cells.into_iter().zip(&widths).enumerate() {
            l.push_str(cell);
            if i + 1 < n {
                l.push_str(&" ".repeat(w - cell.chars().count() + 3));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(headings.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
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
        return serde_json::to_string_pretty(&rows)
            .map(|s| s + "\n")
            .map_err(|e| Error::Other(format!("encoding JSON: {e}")));
    }
    if opts.quiet {
        return Ok(rows
            .iter()
            .map(|r| text(field(r, "name").unwrap_or(&Value::Null)) + "\n")
            .collect());
    }
    match opts.format.as_deref() {
        Some("json") => Ok(rows.iter().map(|r| r.to_string() + "\n").collect()),
        Some(template) => {
            let (header, body) = match template.strip_prefix("table") {
                Some(body) => (true, body.trim_start()),
                None => (false, template),
            };
            let mut out = String::new();
            if header {
                // The heading of `{{.Subnet}}` is SUBNET, as in Docker.
                let heads = body
                    .split("{{")
                    .skip(1)
                    .filter_map(|p| p.split_once("}}").map(|(a, _)| a.trim()))
                    .map(|a| a.trim_start_matches('.').to_uppercase())
                    .collect::<Vec<_>>()
                    .join("\t");
                out.push_str(&heads);
                out.push('\n');
            }
            for r in &rows {
                out.push_str(&expand(body, r)?);
                out.push('\n');
            }
            Ok(out)
        }
        None => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|c| text(field(r, c.field).unwrap_or(&Value::Null)))
                        .collect()
                })
                .collect();
            let headings: Vec<&str> = columns.iter().map(|c| c.heading).collect();
            Ok(table(&headings, &cells))
        }
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
            "NAME\tINTERNAL\nweb\tfalse\n"
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
    }
}
