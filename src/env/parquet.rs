//! Items from `.parquet` files (what HF datasets publish): each row becomes the JSON object it
//! would be in a `.jsonl` file (structs → objects, lists → arrays, maps → objects), so the
//! `[fields]` mapping and prompt templates work on either format unchanged.

use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use parquet::schema::types::ColumnDescriptor;
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// The rows of a parquet file as `(row number, 0-based index, object)`, as the text readers
/// give `(line, index, object)`.
pub(super) fn parquet_values(origin: &str, bytes: &[u8]) -> Result<Vec<(usize, usize, Value)>> {
    // The parquet crate panics on some corrupt files (bad offsets, lengths or encodings) instead
    // of returning an error; a downloaded file must not take the process down with it.
    // The default hook would print "thread 'main' panicked" and a backtrace for an error that is
    // handled here, so it is silenced meanwhile (data loading runs before any worker thread).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| read(origin, bytes));
    std::panic::set_hook(hook);
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::env(
            origin,
            format!("corrupt parquet file: the reader failed ({why}); download or write it again"),
        ))
    })
}

fn read(origin: &str, bytes: &[u8]) -> Result<Vec<(usize, usize, Value)>> {
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|e| Error::env(origin, format!("not a readable parquet file: {e}")))?;
    // The record reader panics on physical/logical type pairs it has no conversion for, so
    // columns are vetted before any row is read.
    for column in reader.metadata().file_metadata().schema_descr().columns() {
        check_column(origin, column)?;
    }
    check_chunks(origin, &reader, bytes.len() as u64)?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| Error::env(origin, format!("not a readable parquet file: {e}")))?;
    let mut out = Vec::new();
    for (index, row) in rows.enumerate() {
        let row =
            row.map_err(|e| Error::env(origin, format!("row {}: unreadable: {e}", index + 1)))?;
        out.push((index + 1, index, row_value(origin, index + 1, "", &row)?));
    }
    Ok(out)
}

/// Every column chunk must lie inside the file: the reader asserts (panics) on negative offsets
/// or sizes, and would read garbage past the end. Found by the `dataset` fuzz target.
fn check_chunks(
    origin: &str,
    reader: &SerializedFileReader<bytes::Bytes>,
    file_len: u64,
) -> Result<()> {
    for (g, group) in reader.metadata().row_groups().iter().enumerate() {
        for chunk in group.columns() {
            let start = chunk.dictionary_page_offset().unwrap_or_else(|| chunk.data_page_offset());
            let len = chunk.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(s, l)| s.checked_add(l))
                .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(Error::env(
                    origin,
                    format!(
                        "corrupt parquet file: row group {g}, column {}: chunk at offset {start} of {len} bytes lies outside the file's {file_len} bytes; download or write it again",
                        chunk.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Booleans, integers, floats and UTF-8 strings (in any nesting of structs, lists and maps)
/// are what benchmark items hold; anything else (binary images, decimals, timestamps) would
/// reach templates in some arbitrary text form, so it is refused by name.
fn check_column(origin: &str, c: &ColumnDescriptor) -> Result<()> {
    use ConvertedType as C;
    let converted = c.converted_type();
    let logical = c.logical_type_ref();
    let supported = match c.physical_type() {
        PhysicalType::BOOLEAN | PhysicalType::FLOAT | PhysicalType::DOUBLE => true,
        PhysicalType::INT32 => {
            matches!(
                converted,
                C::NONE | C::INT_8 | C::INT_16 | C::INT_32 | C::UINT_8 | C::UINT_16 | C::UINT_32
            ) && matches!(logical, None | Some(LogicalType::Integer { .. }))
        }
        PhysicalType::INT64 => {
            matches!(converted, C::NONE | C::INT_64 | C::UINT_64)
                && matches!(logical, None | Some(LogicalType::Integer { .. }))
        }
        PhysicalType::BYTE_ARRAY => matches!(converted, C::UTF8 | C::ENUM | C::JSON),
        PhysicalType::INT96 | PhysicalType::FIXED_LEN_BYTE_ARRAY => false,
    };
    if supported {
        return Ok(());
    }
    let kind = match logical {
        Some(l) => format!("{l:?}"),
        None if converted != C::NONE => format!("{converted}"),
        None => format!("{}", c.physical_type()),
    };
    Err(Error::env(
        origin,
        format!(
            "column \"{}\" has type {kind}, which items cannot hold: supported are booleans, integers, floats and \
             strings, and structs, lists and maps of them",
            c.path().string()
        ),
    ))
}

fn row_value(origin: &str, row_no: usize, at: &str, row: &Row) -> Result<Value> {
    let mut obj = Map::new();
    for (name, field) in row.get_column_iter() {
        let path = if at.is_empty() { name.clone() } else { format!("{at}.{name}") };
        obj.insert(name.clone(), field_value(origin, row_no, &path, field)?);
    }
    Ok(Value::Object(obj))
}

fn field_value(origin: &str, row_no: usize, path: &str, field: &Field) -> Result<Value> {
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        // f32 → f64 would print 0.1f32 as 0.10000000149011612; its shortest text is what a
        // writer meant (and what pyarrow's to_pylist → json.dumps would not give either).
        Field::Float(f) => f.to_string().parse::<f64>().map_or(Value::Null, float),
        Field::Float16(f) => float(f64::from(*f)),
        Field::Double(f) => float(*f),
        Field::Str(s) => Value::String(s.clone()),
        Field::Group(row) => row_value(origin, row_no, path, row)?,
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(|f| field_value(origin, row_no, path, f))
                .collect::<Result<_>>()?,
        ),
        Field::MapInternal(map) => {
            let mut obj = Map::new();
            for (k, v) in map.entries() {
                let key = match field_value(origin, row_no, path, k)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                obj.insert(key, field_value(origin, row_no, path, v)?);
            }
            Value::Object(obj)
        }
        // check_column refuses the columns these come from; a file that still yields one
        // (a schema the check misread) is an error, not a guess.
        other => {
            return Err(Error::env(
                origin,
                format!("row {row_no}: column \"{path}\": unsupported value {other}"),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::manifest::{ChoicesField, Fields};
    use std::path::Path;

    fn fixture(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/parquet").join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn jsonl_values(name: &str) -> Vec<Value> {
        let text = String::from_utf8(fixture(name)).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn values(name: &str) -> Vec<Value> {
        parquet_values(name, &fixture(name)).unwrap().into_iter().map(|(_, _, v)| v).collect()
    }

    #[test]
    fn rows_equal_the_jsonl_the_same_script_wrote() {
        // Nested structs, lists of structs, list<string>, ints, floats, nulls, unicode.
        let expected = jsonl_values("mixed.jsonl");
        assert_eq!(expected.len(), 3);
        for file in ["mixed.parquet", "mixed-zstd.parquet"] {
            let got = values(file);
            assert_eq!(got, expected, "{file}");
        }
    }

    #[test]
    fn nulls_stay_null_and_numbers_keep_their_kind() {
        let rows = values("mixed.parquet");
        assert_eq!(rows[1]["note"], Value::Null);
        assert!(rows[0]["answer"].is_i64(), "{}", rows[0]["answer"]);
        assert!(rows[0]["score"].is_f64(), "{}", rows[0]["score"]);
        assert_eq!(rows[0]["question"]["choices"][1]["label"], "B");
    }

    #[test]
    fn items_from_parquet_equal_items_from_jsonl() {
        let fields = Fields {
            id: Some("id".into()),
            input: Some("question.stem".into()),
            target: "answerKey".into(),
            choices: Some(ChoicesField::Path("question.choices".into())),
            ..Fields::default()
        };
        let from = |name: &str| {
            super::super::parse_items(name, name, &fixture(name), &fields, None).unwrap()
        };
        let (pq, jl) = (from("mixed.parquet"), from("mixed.jsonl"));
        assert_eq!(pq.len(), jl.len());
        for (a, b) in pq.iter().zip(&jl) {
            assert_eq!(
                (&a.id, &a.fields, &a.choices, &a.choice_labels, a.target_index),
                (&b.id, &b.fields, &b.choices, &b.choice_labels, b.target_index)
            );
        }
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let e = parquet_values("data/x.parquet", b"{\"q\":1}\n").unwrap_err().to_string();
        assert!(e.contains("data/x.parquet") && e.contains("not a readable parquet file"), "{e}");
        let mut truncated = fixture("mixed.parquet");
        truncated.truncate(truncated.len() / 2);
        let e = parquet_values("t.parquet", &truncated).unwrap_err().to_string();
        assert!(e.contains("t.parquet") && e.contains("parquet"), "{e}");
    }

    #[test]
    fn item_errors_name_the_row() {
        let fields = Fields { target: "no_such_field".into(), ..Fields::default() };
        let e = super::super::parse_items(
            "m.parquet",
            "m.parquet",
            &fixture("mixed.parquet"),
            &fields,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("m.parquet: row 1: missing target field \"no_such_field\""), "{e}");
    }

    #[test]
    fn corrupted_bytes_give_errors_not_panics() {
        let good = fixture("mixed.parquet");
        let mut panics = Vec::new();
        for i in 0..good.len() {
            for v in [0x00u8, 0xff, 0x7f] {
                let mut bad = good.clone();
                bad[i] = v;
                match std::panic::catch_unwind(|| parquet_values("c.parquet", &bad)) {
                    Err(_) => panics.push((i, v)),
                    Ok(Err(e)) => assert!(e.to_string().contains("c.parquet"), "{e}"),
                    // Some bytes (statistics, padding) do not matter.
                    Ok(Ok(_)) => {}
                }
            }
        }
        assert!(
            panics.is_empty(),
            "{} panics, first {:?}",
            panics.len(),
            &panics[..panics.len().min(10)]
        );
    }

    #[test]
    fn unsupported_columns_are_named() {
        let e = parquet_values("b.parquet", &fixture("binary.parquet")).unwrap_err().to_string();
        assert!(e.contains("b.parquet") && e.contains("column \"image\""), "{e}");
    }

    #[test]
    fn a_chunk_outside_the_file_is_an_error_not_a_panic() {
        // The fuzz target's find: a column chunk whose offset reads as negative.
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/parquet/negative-chunk.parquet"
        ))
        .unwrap();
        let err = read("neg.parquet", &bytes).unwrap_err().to_string();
        assert!(err.contains("neg.parquet") && err.contains("lies outside the file"), "{err}");
    }
}
