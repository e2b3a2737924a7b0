//! safetensors files: the header check that runs before any weight is read, and a VarBuilder
//! backend that reads each tensor with positioned reads when it is asked for.
//!
//! Reading instead of mapping keeps peak memory at the model plus one tensor: a mapped file's
//! pages stay resident (and count in the process's RSS) for as long as the map lives, on top of
//! the copies the decoder makes, so a mapped 540 MB checkpoint peaked at twice its size.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

/// One tensor of a file: dtype, shape and where its bytes start within the data section (the
/// header check made sure the shape's bytes end at the entry's `end`).
#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    begin: u64,
}

#[derive(Debug)]
struct Index {
    data_start: u64,
    tensors: HashMap<String, Entry>,
}

/// The most a safetensors JSON header may claim (the `safetensors` crate's own limit).
const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

/// Why a safetensors file cannot be read: its header fails a check, or the file cannot be read.
/// Messages name the tensor; [`SafetensorsFileError`] adds the file.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("truncated: {file_len} bytes, shorter than the 8-byte safetensors header length")]
    Truncated { file_len: u64 },
    #[error(
        "safetensors header claims {header_len} bytes but the file has only {file_len}: \
         the file is truncated or not a safetensors file"
    )]
    HeaderPastEnd { header_len: u64, file_len: u64 },
    #[error(
        "safetensors header of {header_len} bytes is larger than the {MAX_SAFETENSORS_HEADER} allowed"
    )]
    HeaderTooLarge { header_len: u64 },
    #[error("safetensors header is not a JSON object: {0}")]
    HeaderNotJson(#[source] serde_json::Error),
    #[error("tensor {tensor}: no dtype")]
    NoDtype { tensor: String },
    #[error(
        "tensor {tensor}: dtype {dtype} is not a floating-point type; model weights must be F32, F16 or BF16"
    )]
    UnsupportedDtype { tensor: String, dtype: String },
    #[error("tensor {tensor}: shape is not a list of sizes")]
    BadShape { tensor: String },
    #[error("tensor {tensor}: data_offsets is not [begin, end]")]
    BadOffsets { tensor: String },
    #[error(
        "tensor {tensor}: data_offsets [{begin}, {end}] lie outside the file's {data_len} data bytes: \
         the file is truncated or corrupt"
    )]
    OffsetsOutside { tensor: String, begin: u64, end: u64, data_len: u64 },
    /// The shape × dtype size (`None`: overflows u64) is not what `data_offsets` hold.
    #[error(
        "tensor {tensor}: shape {shape:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] hold {}",
        .needs.map_or_else(|| "too many".to_string(), |w| w.to_string()),
        .end - .begin
    )]
    ShapeMismatch {
        tensor: String,
        shape: Vec<u64>,
        dtype: &'static str,
        needs: Option<u64>,
        begin: u64,
        end: u64,
    },
    #[error("tensor {tensor}: dimension too large")]
    DimensionTooLarge { tensor: String },
    #[error(
        "tensor {tensor}: data_offsets start at {begin} but the previous tensor ends at {previous_end}: \
         the header is corrupt (a tensor entry missing or overlapping)"
    )]
    Gap { tensor: String, begin: u64, previous_end: u64 },
    #[error(
        "the tensors' data ends at {end} but the file holds {data_len} data bytes: the header is corrupt \
         (a tensor entry missing)"
    )]
    DataLength { end: u64, data_len: u64 },
}

/// A [`SafetensorsError`] in one file of a checkpoint's several, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct SafetensorsFileError {
    pub path: PathBuf,
    #[source]
    pub source: SafetensorsError,
}

impl SafetensorsFileError {
    fn new(path: &Path, e: impl Into<SafetensorsError>) -> Self {
        SafetensorsFileError { path: path.to_path_buf(), source: e.into() }
    }
}

/// Checks a safetensors file's header before it is mapped: the 8-byte little-endian header
/// length against the file's size (a huge claimed size fails here, nothing is allocated), the
/// JSON, and each tensor's dtype, shape and `data_offsets` (inside the file, and as long as
/// shape × dtype size). The message names the tensor and says what is wrong.
pub(crate) fn check_safetensors(path: &Path) -> std::result::Result<(), SafetensorsError> {
    let mut file = std::fs::File::open(path)?;
    let file_len = file.metadata()?.len();
    check_safetensors_header(&mut file, file_len)
}

/// [`check_safetensors`] on any reader positioned at the start of a `file_len`-byte file (the
/// fuzz target feeds it bytes).
pub fn check_safetensors_header(
    file: &mut impl std::io::Read,
    file_len: u64,
) -> std::result::Result<(), SafetensorsError> {
    read_header(file, file_len).map(|_| ())
}

/// The checked header: where the data starts, and each tensor's entry.
fn read_header(
    file: &mut impl std::io::Read,
    file_len: u64,
) -> std::result::Result<Index, SafetensorsError> {
    let mut len_bytes = [0u8; 8];
    if file_len < 8 {
        return Err(SafetensorsError::Truncated { file_len });
    }
    file.read_exact(&mut len_bytes)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len - 8 {
        return Err(SafetensorsError::HeaderPastEnd { header_len, file_len });
    }
    if header_len > MAX_SAFETENSORS_HEADER {
        return Err(SafetensorsError::HeaderTooLarge { header_len });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(SafetensorsError::HeaderNotJson)?;
    let data_len = file_len - 8 - header_len;
    let mut spans = Vec::with_capacity(header.len());
    let mut tensors = HashMap::with_capacity(header.len());
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let tensor = || name.clone();
        let dtype = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| SafetensorsError::NoDtype { tensor: tensor() })?;
        let (size, kind, dtype) = match dtype {
            "F32" => (4u64, DType::F32, "F32"),
            "F16" => (2, DType::F16, "F16"),
            "BF16" => (2, DType::BF16, "BF16"),
            "F64" => (8, DType::F64, "F64"),
            other => {
                return Err(SafetensorsError::UnsupportedDtype {
                    tensor: tensor(),
                    dtype: other.to_string(),
                })
            }
        };
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|dims| dims.iter().map(|d| d.as_u64()).collect())
            .ok_or_else(|| SafetensorsError::BadShape { tensor: tensor() })?;
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|o| o.iter().map(|d| d.as_u64()).collect())
            .filter(|o: &Vec<u64>| o.len() == 2)
            .ok_or_else(|| SafetensorsError::BadOffsets { tensor: tensor() })?;
        let (begin, end) = (offsets[0], offsets[1]);
        if begin > end || end > data_len {
            return Err(SafetensorsError::OffsetsOutside {
                tensor: tensor(),
                begin,
                end,
                data_len,
            });
        }
        let want = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        if want != Some(end - begin) {
            return Err(SafetensorsError::ShapeMismatch {
                tensor: tensor(),
                shape,
                dtype,
                needs: want,
                begin,
                end,
            });
        }
        spans.push((begin, end, name.as_str()));
        let shape = shape
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| SafetensorsError::DimensionTooLarge { tensor: tensor() })
            })
            .collect::<std::result::Result<_, _>>()?;
        tensors.insert(name.clone(), Entry { dtype: kind, shape, begin });
    }
    // The tensors must tile the data exactly, as the safetensors format requires.
    spans.sort();
    let mut at = 0;
    for (begin, end, name) in spans {
        if begin != at {
            return Err(SafetensorsError::Gap {
                tensor: name.to_string(),
                begin,
                previous_end: at,
            });
        }
        at = end;
    }
    if at != data_len {
        return Err(SafetensorsError::DataLength { end: at, data_len });
    }
    Ok(Index { data_start: 8 + header_len, tensors })
}

/// Tensors of one or more safetensors files (the shards of one checkpoint), read on demand.
pub struct ReadSafetensors {
    files: Vec<(PathBuf, File, Index)>,
}

impl ReadSafetensors {
    /// Opens and checks every file's header; nothing else is read yet.
    pub fn open(paths: &[PathBuf]) -> std::result::Result<Self, SafetensorsFileError> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let in_file = |e: std::io::Error| SafetensorsFileError::new(p, e);
            let mut f = File::open(p).map_err(in_file)?;
            let len = f.metadata().map_err(in_file)?.len();
            let index = read_header(&mut f, len).map_err(|e| SafetensorsFileError::new(p, e))?;
            files.push((p.clone(), f, index));
        }
        Ok(Self { files })
    }

    fn find(&self, name: &str) -> Option<(&Path, &File, u64, &Entry)> {
        self.files
            .iter()
            .find_map(|(p, f, i)| i.tensors.get(name).map(|e| (p.as_path(), f, i.data_start, e)))
    }

    /// The tensor `name`, checked against `shape` when one is given.
    fn load(
        &self,
        name: &str,
        shape: Option<&Shape>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let (path, file, start, e) = self
            .find(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.to_string() }.bt())?;
        if let Some(s) = shape.filter(|s| s.dims() != e.shape.as_slice()) {
            candle_core::bail!(
                "shape mismatch for {name}, got {:?}, expected {:?}",
                e.shape,
                s.dims()
            );
        }
        let read = |buf: &mut [u8]| {
            read_at(file, buf, start + e.begin).map_err(|err| {
                candle_core::Error::msg(format!("{}: reading tensor {name}: {err}", path.display()))
            })
        };
        // Read into the tensor's own buffer: through a byte buffer the tensor would be held
        // twice, and loading peaks while the largest one (often the embedding) is read.
        let t = match e.dtype {
            DType::F32 => read_tensor::<f32>(&e.shape, read)?,
            DType::F16 => read_tensor::<half::f16>(&e.shape, read)?,
            DType::BF16 => read_tensor::<half::bf16>(&e.shape, read)?,
            DType::F64 => read_tensor::<f64>(&e.shape, read)?,
            other => candle_core::bail!("{name}: unexpected dtype {other:?}"),
        };
        t.to_dtype(dtype)?.to_device(dev)
    }
}

/// A CPU tensor of `shape` whose little-endian bytes (as safetensors stores them, and as
/// `Tensor::from_raw_buffer` reads them) `read` writes in place.
fn read_tensor<T: candle_core::WithDType>(
    shape: &[usize],
    read: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<Tensor> {
    let mut v = vec![T::from_f64(0.0); shape.iter().product()];
    let len = std::mem::size_of_val(v.as_slice());
    // SAFETY: T is one of candle's float types (f32, f64, f16, bf16): plain bits without
    // padding, every pattern a valid value, so its buffer may be written as bytes.
    read(unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) })?;
    Tensor::from_vec(v, shape, &Device::Cpu)
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

impl SimpleBackend for ReadSafetensors {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.load(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.load(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tensors_a_file_holds_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::arange(0f32, 6.0, &Device::Cpu).unwrap().reshape((2, 3)).unwrap();
        let b = Tensor::new(&[1.5f32, -2.0], &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap();
        candle_core::safetensors::save(
            &HashMap::from([("a".to_string(), a.clone()), ("b".to_string(), b)]),
            &path,
        )
        .unwrap();
        let st = ReadSafetensors::open(std::slice::from_ref(&path)).unwrap();
        let got = st
            .get((2, 3).into(), "a", candle_nn::Init::Const(0.), DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(got.to_vec2::<f32>().unwrap(), a.to_vec2::<f32>().unwrap());
        let got = st.get_unchecked("b", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), vec![1.5, -2.0]);
        assert!(st.contains_tensor("a") && !st.contains_tensor("c"));
        let e = st
            .get((3, 2).into(), "a", candle_nn::Init::Const(0.), DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("shape mismatch for a"), "{e}");
        assert!(st.get_unchecked("c", DType::F32, &Device::Cpu).is_err());
    }

    #[test]
    fn header_errors_are_typed_and_keep_their_messages() {
        use std::error::Error as _;
        let e = check_safetensors_header(&mut &[0u8; 4][..], 4).unwrap_err();
        assert!(matches!(e, SafetensorsError::Truncated { file_len: 4 }));
        assert_eq!(
            e.to_string(),
            "truncated: 4 bytes, shorter than the 8-byte safetensors header length"
        );

        let header = br#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]);
        let e = check_safetensors_header(&mut &bytes[..], bytes.len() as u64).unwrap_err();
        assert!(
            matches!(&e, SafetensorsError::ShapeMismatch { tensor, needs: Some(24), .. } if tensor == "w"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "tensor w: shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 8] hold 8"
        );

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.safetensors");
        let e = check_safetensors(&missing).unwrap_err();
        let SafetensorsError::Io(io) = &e else { panic!("{e:?}") };
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), io.to_string());

        let e = ReadSafetensors::open(std::slice::from_ref(&missing)).err().unwrap();
        assert_eq!(e.path, missing);
        assert_eq!(e.to_string(), format!("{}: {}", missing.display(), e.source));
        let inner = e.source().and_then(|s| s.downcast_ref::<SafetensorsError>());
        assert!(matches!(inner, Some(SafetensorsError::Io(_))), "{e:?}");
    }
}
