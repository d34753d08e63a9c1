//! Column types: inferred from the first value a new column sees, read back from the
//! warehouse's catalog, and each value written in `COPY`'s text format, or refused
//! when it doesn't fit the column (it then goes to `_overflow`).

use std::fmt::Write;

use chrono::SecondsFormat;

use crate::flatten::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    BigInt,
    Double,
    Boolean,
    Timestamp,
    Json,
}

impl ColumnType {
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::BigInt => "bigint",
            ColumnType::Double => "double precision",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamptz",
            ColumnType::Json => "jsonb",
        }
    }

    /// From `information_schema.columns.data_type`. A type we don't write (a column an
    /// analyst changed to `integer`, say) is None: its values go to `_overflow`.
    pub fn from_catalog(data_type: &str) -> Option<ColumnType> {
        Some(match data_type {
            "text" | "character varying" => ColumnType::Text,
            "bigint" => ColumnType::BigInt,
            "double precision" | "numeric" | "real" => ColumnType::Double,
            "boolean" => ColumnType::Boolean,
            "timestamp with time zone" => ColumnType::Timestamp,
            "jsonb" | "json" => ColumnType::Json,
            _ => return None,
        })
    }

    /// The type a new column gets from its first value.
    pub fn of(cell: &Cell) -> ColumnType {
        match cell {
            Cell::Text(_) | Cell::Json(_) => ColumnType::Text,
            Cell::Int(_) => ColumnType::BigInt,
            Cell::Float(_) => ColumnType::Double,
            Cell::Bool(_) => ColumnType::Boolean,
            Cell::Time(_) => ColumnType::Timestamp,
        }
    }

    /// Appends the cell in COPY text format; false (nothing appended) when it doesn't
    /// fit. Text takes anything as its text; a double takes integers too.
    pub fn encode(self, cell: &Cell, out: &mut String) -> bool {
        match (self, cell) {
            (ColumnType::Text, Cell::Text(s) | Cell::Json(s)) => escape(s, out),
            (ColumnType::Text | ColumnType::BigInt | ColumnType::Double, Cell::Int(i)) => {
                let _ = write!(out, "{i}");
            }
            (ColumnType::Text | ColumnType::Double, Cell::Float(f)) => {
                let _ = write!(out, "{f:?}");
            }
            (ColumnType::Text | ColumnType::Boolean, Cell::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
            (ColumnType::Text | ColumnType::Timestamp, Cell::Time(t)) => {
                out.push_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            }
            (ColumnType::Json, cell) => escape(&cell.to_json().to_string(), out),
            _ => return false,
        }
        true
    }
}

/// COPY's text format: backslash, tab, newline and carriage return escaped; `\N` is NULL.
pub fn escape(text: &str, out: &mut String) {
    if !text.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// NULL in COPY's text format.
pub const NULL: &str = "\\N";

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(column: ColumnType, cell: Cell) -> Option<String> {
        let mut out = String::new();
        column.encode(&cell, &mut out).then_some(out)
    }

    #[test]
    fn values_that_fit_are_encoded_and_the_rest_refused() {
        assert_eq!(encoded(ColumnType::BigInt, Cell::Int(7)), Some("7".into()));
        assert_eq!(encoded(ColumnType::BigInt, Cell::Text("seven".into())), None);
        assert_eq!(encoded(ColumnType::BigInt, Cell::Float(7.5)), None);
        assert_eq!(encoded(ColumnType::Double, Cell::Int(7)), Some("7".into()));
        assert_eq!(encoded(ColumnType::Double, Cell::Float(1e300)), Some("1e300".into()));
        assert_eq!(encoded(ColumnType::Text, Cell::Bool(true)), Some("true".into()));
        assert_eq!(encoded(ColumnType::Boolean, Cell::Int(1)), None);
        assert_eq!(encoded(ColumnType::Timestamp, Cell::Text("soon".into())), None);
        assert_eq!(encoded(ColumnType::Json, Cell::Int(3)), Some("3".into()));
    }

    #[test]
    fn copy_text_escapes_its_delimiters() {
        assert_eq!(
            encoded(ColumnType::Text, Cell::Text("a\tb\nc\\d\re".into())),
            Some("a\\tb\\nc\\\\d\\re".into())
        );
    }
}
