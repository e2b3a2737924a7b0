//! `run.json`'s `memory`: what this process's memory went to, against issue "Engine speed"'s
//! goal of a peak no more than the weights plus the KV cache plus 15%.

use serde::{Deserialize, Serialize};

/// Memory of the process that ran (or resumed) a run. Each part is None where it is not known:
/// a server's weights and cache, candle's tensors, peak RSS off Unix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// The process's resident-set high-water mark.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// What the loaded model's weights hold.
    #[serde(default)]
    pub weights_bytes: Option<u64>,
    /// The most bytes the live sequences' KV caches stored at once (a shared prefix once).
    #[serde(default)]
    pub kv_cache_peak_bytes: Option<u64>,
    /// GPU memory, where the engine keeps its model there itself (the packed CUDA step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceMemory>,
}

/// What a GPU engine holds on the device, allocated once at its start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMemory {
    pub weights_bytes: u64,
    /// The KV cache of every slot, at full length.
    pub kv_cache_bytes: u64,
    /// Activations, logits and sampling buffers for the largest step.
    pub scratch_bytes: u64,
    /// In use on the device by every process once the engine had allocated all of it.
    pub in_use_bytes: u64,
}

impl Memory {
    /// This process's numbers now, with the engine's weights and KV cache peak.
    pub fn now(weights_bytes: Option<usize>, kv_cache_peak_bytes: Option<usize>) -> Self {
        Memory {
            peak_rss_bytes: peak_rss_bytes(),
            weights_bytes: weights_bytes.map(|b| b as u64),
            kv_cache_peak_bytes: kv_cache_peak_bytes.map(|b| b as u64),
            device: None,
        }
    }

    /// `peak RSS 1.07 GB = weights 541 MB + KV cache (peak) 496 MB + 35 MB other (3.4%)`: the
    /// other part as a share of weights + cache, the goal's measure.
    pub fn summary(&self) -> String {
        let host = self.host_summary();
        match self.device {
            Some(d) => format!(
                "{host}; on the device: weights {}, KV cache {}, scratch {}, {} in use",
                human(d.weights_bytes),
                human(d.kv_cache_bytes),
                human(d.scratch_bytes),
                human(d.in_use_bytes)
            ),
            None => host,
        }
    }

    fn host_summary(&self) -> String {
        let rss = self.peak_rss_bytes.map_or_else(|| "unknown".to_string(), human);
        let (Some(w), Some(kv)) = (self.weights_bytes, self.kv_cache_peak_bytes) else {
            let known =
                [("weights", self.weights_bytes), ("KV cache (peak)", self.kv_cache_peak_bytes)]
                    .iter()
                    .filter_map(|(name, b)| b.map(|b| format!(", {name} {}", human(b))))
                    .collect::<String>();
            return format!("peak RSS {rss}{known}");
        };
        let Some(peak) = self.peak_rss_bytes.filter(|&p| p >= w + kv) else {
            // Weights or cache not all resident (mapped pages never touched): no parts of a
            // whole to show, only the sizes.
            return format!("peak RSS {rss}; weights {}, KV cache (peak) {}", human(w), human(kv));
        };
        // Each part as a share of the peak, so the shares add up to 100%.
        let share = |b: u64| b as f64 / peak.max(1) as f64 * 100.0;
        let other = peak - w - kv;
        format!(
            "peak RSS {rss} = weights {} ({:.0}%) + KV cache (peak) {} ({:.0}%) + other {} ({:.0}%)",
            human(w),
            share(w),
            human(kv),
            share(kv),
            human(other),
            share(other)
        )
    }
}

/// Decimal units, as `ls -h --si` and the README's tables.
fn human(b: u64) -> String {
    let b = b as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e8 {
        format!("{:.0} MB", b / 1e6)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}

/// The process's peak resident set since it started this program; None where it is not
/// available. On Linux that is `VmHWM`: `getrusage`'s high-water mark carries over through
/// `exec` from the process that spawned it, so `cargo run`'s or a Python harness's own memory
/// would be counted as the run's.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    if let Some(b) =
        std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(vm_hwm_bytes)
    {
        return Some(b);
    }
    #[cfg(unix)]
    {
        // SAFETY: getrusage only writes the struct it is given, which is plain data.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to that struct.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let max = u64::try_from(usage.ru_maxrss).ok()?;
        // Linux (and the BSDs) report KiB, macOS bytes.
        Some(if cfg!(target_os = "macos") { max } else { max * 1024 })
    }
    #[cfg(not(unix))]
    None
}

/// `VmHWM:` of a `/proc/PID/status` text, in bytes (the kernel writes kB, meaning KiB).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GPU engine's device memory follows the host's line, and a record without it keeps the
    /// run.json it always had (no `device` key).
    #[test]
    fn device_memory_is_reported_beside_the_host() {
        let device = DeviceMemory {
            weights_bytes: 270_000_000,
            kv_cache_bytes: 1_500_000_000,
            scratch_bytes: 52_000_000,
            in_use_bytes: 2_400_000_000,
        };
        let m = Memory {
            peak_rss_bytes: Some(900_000_000),
            device: Some(device),
            ..Default::default()
        };
        assert_eq!(
            m.summary(),
            "peak RSS 900 MB; on the device: weights 270 MB, KV cache 1.50 GB, scratch 52.0 MB, \
             2.40 GB in use"
        );
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["device"]["kv_cache_bytes"], 1_500_000_000u64);
        let back: Memory = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        let host = Memory { peak_rss_bytes: Some(1), ..Default::default() };
        assert!(serde_json::to_value(&host).unwrap().get("device").is_none());
    }

    #[test]
    fn summary_splits_the_peak() {
        let m = Memory {
            peak_rss_bytes: Some(1_072_000_000),
            weights_bytes: Some(541_000_000),
            kv_cache_peak_bytes: Some(496_000_000),
            device: None,
        };
        assert_eq!(
            m.summary(),
            "peak RSS 1.07 GB = weights 541 MB (50%) + KV cache (peak) 496 MB (46%) + other 35.0 MB (3%)"
        );
        // Mostly other memory: every share is still a part of the whole.
        let small = Memory {
            peak_rss_bytes: Some(100_000_000),
            weights_bytes: Some(9_000_000),
            kv_cache_peak_bytes: Some(1_000_000),
            device: None,
        };
        assert_eq!(
            small.summary(),
            "peak RSS 100 MB = weights 9.0 MB (9%) + KV cache (peak) 1.0 MB (1%) + other 90.0 MB (90%)"
        );
        let remote = Memory { peak_rss_bytes: Some(20_500_000), ..Default::default() };
        assert_eq!(remote.summary(), "peak RSS 20.5 MB");
        let under = Memory {
            peak_rss_bytes: Some(900_000),
            weights_bytes: Some(1_000_000),
            kv_cache_peak_bytes: Some(0),
            device: None,
        };
        assert_eq!(under.summary(), "peak RSS 900.0 kB; weights 1.0 MB, KV cache (peak) 0.0 kB");
    }

    #[test]
    fn vm_hwm_is_read_from_proc_status() {
        let status =
            "Name:\tbenchgen\nVmPeak:\t  120000 kB\nVmHWM:\t   19000 kB\nVmRSS:\t   18000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(19000 * 1024));
        assert_eq!(vm_hwm_bytes("VmRSS:\t 1 kB\n"), None);
        assert_eq!(vm_hwm_bytes("VmHWM:\t many kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_covers_touched_memory() {
        let v = vec![1u8; 64 << 20];
        let peak = peak_rss_bytes().expect("getrusage on Linux");
        assert!(peak >= v.len() as u64, "{peak}");
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), v.len());
    }
}
