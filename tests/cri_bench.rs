//! Benchmark (not a timed test; `#[ignore]`d): 50 pods started one after
//! another through containerd's CRI (RunPodSandbox until the pod is
//! ready), each publishing one host port, then each stopped and removed;
//! berth against the reference chain bridge + host-local + portmap. The
//! network part is timed by a wrapper around each plugin of the conflist
//! (go-cni's own loopback call is the same for both and not counted). Run
//! with
//!
//! ```sh
//! cargo test --release --test cri_bench -- --ignored --nocapture
//! ```

#[path = "util/cri.rs"]
mod cri;
mod util;

use std::collections::HashMap;

use cri::{report, Cri};
use serde_json::json;
use util::STATE_DIR;

const PODS: usize = 50;
const SUBNET: &str = "10.88.0.0/16";

fn berth_conflist() -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {{"type": "berth", "subnet": "{SUBNET}", "stateDir": "{STATE_DIR}",
    "capabilities": {{"portMappings": true}}}}
]}}"#
    )
}

fn reference_conflist() -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "pods", "plugins": [
  {{"type": "bridge", "bridge": "cni-pods", "isGateway": true, "ipMasq": true, "hairpinMode": true,
    "ipam": {{"type": "host-local", "routes": [{{"dst": "0.0.0.0/0"}}],
             "ranges": [[{{"subnet": "{SUBNET}"}}]]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}
]}}"#
    )
}

/// Median, mean of the first 10 and of the last 10, in ms.
fn summary(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = sorted[sorted.len() / 2];
    let p90 = sorted[sorted.len() * 9 / 10];
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "median {median:7.1}  p90 {p90:7.1}  first 10 {:7.1}  last 10 {:7.1} ms",
        mean(&values[..10]),
        mean(&values[values.len() - 10..])
    )
}

/// Per pod (in start order): the summed duration of the conflist's
/// plugins for the first call of `command`, in ms.
fn plugin_ms(timings: &str, ids: &[String], command: &str) -> Vec<f64> {
    // (container id, plugin) -> first duration
    let mut first: HashMap<(String, String), f64> = HashMap::new();
    for line in timings.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [cmd, plugin, id, t0, t1, rc] = f[..] else {
            panic!("timing line {line:?}");
        };
        assert_eq!(rc, "0", "a plugin failed: {line}");
        if cmd != command {
            continue;
        }
        let ms = (t1.parse::<f64>().unwrap() - t0.parse::<f64>().unwrap()) * 1000.0;
        first
            .entry((id.to_string(), plugin.to_string()))
            .or_insert(ms);
    }
    ids.iter()
        .map(|id| {
            let ms: Vec<f64> = first
                .iter()
                .filter(|((i, _), _)| i == id)
                .map(|(_, ms)| *ms)
                .collect();
            assert!(!ms.is_empty(), "no {command} timed for pod {id}");
            ms.iter().sum()
        })
        .collect()
}

/// Runs the 50 pods with `conflist`; returns (network ADD ms per pod).
fn bench(label: &str, conflist: &str, timed: &[&str]) -> Option<Vec<f64>> {
    let cri = Cri::new_or_skip(&format!("cri_bench {label}"), conflist, timed, |_| {})?;
    let pod = cri.pod(
        "bench",
        json!([{"protocol": "TCP", "container_port": 80, "host_port": 20000, "host_ip": ""}]),
    );
    let out = cri.ok(&["bench", &PODS.to_string(), &pod.to_string()]);
    let list = |k: &str| -> Vec<f64> {
        out[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let ids: Vec<String> = out["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), PODS);
    let timings = cri.timings();
    let add = plugin_ms(&timings, &ids, "ADD");
    let del = plugin_ms(&timings, &ids, "DEL");
    let calls = |cmd: &str| timings.lines().filter(|l| l.starts_with(cmd)).count();
    report(&format!(
        "{label} ({PODS} pods, one host port each, snapshotter {}):",
        cri.snapshotter
    ));
    report(&format!(
        "  RunPodSandbox to READY   {}",
        summary(&list("run_ms"))
    ));
    report(&format!("  network ADD (plugins)    {}", summary(&add)));
    report(&format!(
        "  StopPodSandbox           {}",
        summary(&list("stop_ms"))
    ));
    report(&format!("  network DEL (first)      {}", summary(&del)));
    report(&format!(
        "  RemovePodSandbox         {}",
        summary(&list("remove_ms"))
    ));
    report(&format!(
        "  plugin calls: {} ADD, {} DEL",
        calls("ADD"),
        calls("DEL")
    ));
    Some(add)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}

#[test]
#[ignore]
fn cri_pod_start_berth_vs_reference_chain() {
    let Some(reference) = bench(
        "reference chain bridge + host-local + portmap",
        &reference_conflist(),
        &["bridge", "portmap"],
    ) else {
        return;
    };
    let Some(berth) = bench("berth", &berth_conflist(), &["berth"]) else {
        return;
    };
    report(&format!(
        "network ADD median: reference {:.1} ms, berth {:.1} ms (x{:.1})",
        median(&reference),
        median(&berth),
        median(&reference) / median(&berth)
    ));
}
