//! Benchmark (not a timed test, ignored by default): `netavark setup` and
//! `teardown` of 100 containers on a macvlan network, against a bridge
//! network in the same run (the same JSON but for the driver) and against
//! the stock netavark 1.4 fed the same macvlan JSON, in sandboxes.
//!
//! ```sh
//! cargo test --release --test netavark_macvlan_bench -- --ignored --nocapture
//! ```
//!
//! One process per call, as Podman runs it, each through `nsenter` into
//! the sandbox (~1 ms for both sides alike). The parent is one end of a
//! veth (this kernel has no dummy links).

mod util;

use std::time::Duration;

use serde_json::json;
use util::podman::STOCK_NETAVARK;
use util::*;

const CONTAINERS: usize = 100;

fn request(i: usize, driver: &str) -> serde_json::Value {
    let interface = if driver == "bridge" { "podman9" } else { "up0" };
    json!({
        "container_id": format!("{i:064x}"),
        "container_name": format!("c{i}"),
        "networks": {"bench": {"static_ips": [format!("10.77.{}.{}", (i + 2) / 256, (i + 2) % 256)],
                               "interface_name": "eth0"}},
        "network_info": {"bench": {
            "name": "bench", "id": "b".repeat(64), "driver": driver,
            "network_interface": interface,
            "subnets": [{"subnet": "10.77.0.0/16", "gateway": "10.77.0.1"}],
            "ipv6_enabled": false, "internal": false, "dns_enabled": false,
            "ipam_options": {"driver": "host-local"}}}
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn p90(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// Times setup of every container, then teardown of every container.
fn setup_teardown(binary: &str, driver: &str) -> (Vec<Duration>, Vec<Duration>) {
    let sb = Sandbox::new();
    sb.sh_ok(&format!(
        "for i in $(seq 0 {}); do ip netns add c$i; done; mkdir -p /run/nvconf; \
         ip netns add lan; ip link add up0 type veth peer name lanif netns lan; \
         ip link set up0 up; ip -n lan link set lanif up",
        CONTAINERS - 1
    ));
    let dir =
        std::env::temp_dir().join(format!("berth-mvbench-{}-{}", std::process::id(), sb.pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let call = |verb: &str, i: usize| -> Duration {
        let file = dir.join(format!("c{i}.json"));
        std::fs::write(&file, request(i, driver).to_string()).unwrap();
        timed_netavark(&sb, binary, &file, verb, &format!("/run/netns/c{i}"))
    };
    let setup: Vec<Duration> = (0..CONTAINERS).map(|i| call("setup", i)).collect();
    // Every container got its child, with its address.
    for i in [0, CONTAINERS - 1] {
        let addrs = sb.ipv4_addrs(Some(&format!("c{i}")), "eth0");
        assert_eq!(addrs.len(), 1, "c{i}: {addrs:?}");
    }
    let teardown = (0..CONTAINERS).map(|i| call("teardown", i)).collect();
    let _ = std::fs::remove_dir_all(&dir);
    (setup, teardown)
}

fn line(what: &str, v: &[Duration]) -> String {
    format!(
        "{what:<32} median {:>6.2} ms  p90 {:>6.2} ms",
        ms(median(v)),
        ms(p90(v))
    )
}

#[test]
#[ignore]
fn netavark_macvlan_setup_against_bridge_and_stock_netavark() {
    let berth_nv = util::berth_under_test();
    // berth's `netavark` entry point: the binary run as `netavark`.
    let dir = std::env::temp_dir().join(format!("berth-mvbench-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("netavark");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&berth_nv, &link).unwrap();
    let berth = link.to_str().unwrap().to_string();

    let (bridge_setup, bridge_down) = setup_teardown(&berth, "bridge");
    let (mv_setup, mv_down) = setup_teardown(&berth, "macvlan");
    // The floor of any netavark: a program that does nothing, started the
    // way Podman starts netavark (one process per call, same arguments).
    let floor: Vec<Duration> = {
        let sb = Sandbox::new();
        sb.sh_ok("ip netns add c0; mkdir -p /run/nvconf");
        let file = std::env::temp_dir().join(format!("berth-mvbench-floor-{}", std::process::id()));
        std::fs::write(&file, request(0, "macvlan").to_string()).unwrap();
        let v = (0..CONTAINERS)
            .map(|_| timed_netavark(&sb, "/bin/true", &file, "setup", "/run/netns/c0"))
            .collect();
        let _ = std::fs::remove_file(&file);
        v
    };
    let stock = std::path::Path::new(STOCK_NETAVARK)
        .exists()
        .then(|| setup_teardown(STOCK_NETAVARK, "macvlan"));
    println!("{CONTAINERS} containers, one process per call:");
    println!("{}", line("/bin/true, the same call", &floor));
    println!("{}", line("berth setup, bridge", &bridge_setup));
    println!("{}", line("berth setup, macvlan", &mv_setup));
    println!("{}", line("berth teardown, bridge", &bridge_down));
    println!("{}", line("berth teardown, macvlan", &mv_down));
    let ratio = ms(median(&mv_setup)) / ms(median(&bridge_setup));
    println!("macvlan / bridge setup (medians): {ratio:.2}x (target <= 1.5x)");
    match stock {
        Some((s, d)) => {
            println!("{}", line("stock netavark setup, macvlan", &s));
            println!("{}", line("stock netavark teardown, macvlan", &d));
            println!(
                "stock / berth macvlan setup (medians): {:.1}x (target >= 10x)",
                ms(median(&s)) / ms(median(&mv_setup))
            );
            println!(
                "stock setup / a process that does nothing (medians): {:.1}x: \
                 the most any netavark called this way can gain",
                ms(median(&s)) / ms(median(&floor))
            );
        }
        None => {
            crate::skip_line!("SKIP stock netavark comparison: {STOCK_NETAVARK} is not installed")
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
