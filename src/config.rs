//! berth's configuration file: what a host administrator may change without
//! passing flags to every command. Today that is the subnet pools automatic
//! subnets are cut from, in the shape of Docker's `daemon.json`, and
//! whether new networks get IPv6 by default (`"ipv6": true`, as Docker's
//! key for its default bridge):
//!
//! ```json
//! {"ipv6": true,
//!  "default-address-pools": [{"base": "10.200.0.0/16", "size": 24},
//!                            {"base": "fd00:beef::/48", "size": 64}]}
//! ```
//!
//! Without an IPv6 pool, IPv6 subnets are /64s of the host's own unique
//! local /48.
//!
//! The file is `/etc/berth/config.json`, or the one `BERTH_CONFIG` names.
//! A missing default file means the defaults; a file that exists but does
//! not parse is refused with one line naming the file and the bad value, so
//! a typo never silently falls back to subnets the administrator excluded.
//! Keys berth does not know are ignored (a `daemon.json` can be reused).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::ipam::{self, Pool};
use crate::model::subnet::{self, Family};

pub const DEFAULT_PATH: &str = "/etc/berth/config.json";
/// Names another configuration file.
pub const ENV: &str = "BERTH_CONFIG";
const POOLS: &str = "default-address-pools";
const IPV6: &str = "ipv6";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where automatic subnets come from, tried in order (each family
    /// from its own; no IPv6 pool means the host's ULA /48).
    pub pools: Vec<Pool>,
    /// New networks get an IPv6 subnet too unless told otherwise.
    pub ipv6: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pools: ipam::default_pools(),
            ipv6: false,
        }
    }
}

impl Config {
    /// The configuration in force: `$BERTH_CONFIG` (which must exist), else
    /// `/etc/berth/config.json` if it exists, else the defaults.
    pub fn load() -> Result<Config> {
        match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(path) => Config::load_from(&PathBuf::from(path), true),
            None => Config::load_from(Path::new(DEFAULT_PATH), false),
        }
    }

    /// Reads `path`; when it does not exist, the defaults, unless `required`.
    pub fn load_from(path: &Path, required: bool) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(e) => Err(Error::invalid(format!(
                "config file {}: cannot read it: {e}",
                path.display()
            ))),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let bad = |what: String| Error::invalid(format!("config file {}: {what}", path.display()));
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(top) = v else {
            return Err(bad(format!("expected a JSON object, found {}", short(&v))));
        };
        let ipv6 = match top.get(IPV6) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad(format!(
                    "{IPV6} {}: expected true or false",
                    short(other)
                )))
            }
        };
        let Some(pools) = top.get(POOLS) else {
            return Ok(Config {
                ipv6,
                ..Config::default()
            });
        };
        let Value::Array(list) = pools else {
            return Err(bad(format!(
                "{POOLS} {}: expected a list of {{\"base\": CIDR, \"size\": N}}",
                short(pools)
            )));
        };
        if list.is_empty() {
            return Err(bad(format!("{POOLS} is empty: list at least one pool")));
        }
        let mut out = Vec::new();
        for (i, entry) in list.iter().enumerate() {
            let at = format!("{POOLS}[{i}]");
            let base = match entry.get("base") {
                Some(Value::String(s)) => s,
                Some(other) => {
                    return Err(bad(format!(
                        "{at}.base {}: expected a CIDR string",
                        short(other)
                    )))
                }
                None => return Err(bad(format!("{at} {}: has no \"base\"", short(entry)))),
            };
            let net = subnet::parse_pool_base(base)
                .map_err(|e| bad(format!("{at}.base {base:?}: {e}")))?;
            let size = match entry.get("size") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(other) => {
                    return Err(bad(format!(
                        "{at}.size {}: expected a number",
                        short(other)
                    )))
                }
                None => return Err(bad(format!("{at} {}: has no \"size\"", short(entry)))),
            };
            let lo = net.prefix_len().max(subnet::MIN_PREFIX);
            let hi = Family::of_net(&net).max_prefix();
            let size = match size {
                Some(s) if (u64::from(lo)..=u64::from(hi)).contains(&s) => s as u8,
                _ => {
                    return Err(bad(format!(
                        "{at}.size {}: must be a prefix length from {lo} to {hi}",
                        short(&entry["size"]),
                    )))
                }
            };
            out.push(Pool::of(net, size));
        }
        // Pools of one family only leave the other's defaults in place.
        if !out.iter().any(|p| p.family() == Family::V4) {
            out.extend(ipam::default_pools());
        }
        Ok(Config { pools: out, ipv6 })
    }
}

/// A JSON value as it would appear in the file, cut short for one line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/etc/berth/config.json"), text)
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let s = e.to_string();
        assert!(s.starts_with("config file /etc/berth/config.json: "), "{s}");
        assert_eq!(s.lines().count(), 1, "{s}");
        s
    }

    #[test]
    fn docker_style_pools_are_read_in_order() {
        let c = parse(
            r#"{"debug": true, "default-address-pools": [
                {"base": "10.200.0.0/16", "size": 24},
                {"base": "192.168.64.0/18", "size": 26}]}"#,
        )
        .unwrap();
        assert_eq!(
            c.pools,
            vec![
                Pool::of("10.200.0.0/16".parse().unwrap(), 24),
                Pool::of("192.168.64.0/18".parse().unwrap(), 26)
            ]
        );
        assert_eq!(parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn a_missing_default_file_means_defaults_but_a_named_one_must_exist() {
        let p = Path::new("/nonexistent/berth/config.json");
        assert_eq!(Config::load_from(p, false).unwrap(), Config::default());
        let e = Config::load_from(p, true).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/berth/config.json"), "{e}");
    }

    #[test]
    fn bad_files_name_the_file_and_the_value() {
        assert!(err("{").contains("not valid JSON"));
        assert!(err("[1]").contains("expected a JSON object, found [1]"));
        assert!(err(r#"{"default-address-pools": 7}"#).contains("default-address-pools 7"));
        assert!(err(r#"{"default-address-pools": []}"#).contains("is empty"));
        let e = err(r#"{"default-address-pools": [{"base": "10.200.0.1/16", "size": 24}]}"#);
        assert!(
            e.contains("default-address-pools[0].base \"10.200.0.1/16\""),
            "{e}"
        );
        assert!(e.contains("host bits"), "{e}");
        let e = err(r#"{"default-address-pools": [{"base": "10.200.0.0/16", "size": 33}]}"#);
        assert!(e.contains("default-address-pools[0].size 33"), "{e}");
        assert!(e.contains("from 16 to 30"), "{e}");
        let e = err(r#"{"default-address-pools": [{"base": "10.200.0.0/16", "size": 8}]}"#);
        assert!(e.contains(".size 8"), "{e}");
        let e = err(r#"{"default-address-pools": [{"base": "10.200.0.0/16", "size": "24"}]}"#);
        assert!(e.contains(".size \"24\": expected a number"), "{e}");
        let e = err(r#"{"default-address-pools": [{"size": 24}]}"#);
        assert!(e.contains("has no \"base\""), "{e}");
        let e = err(r#"{"default-address-pools": [{"base": "nope", "size": 24}]}"#);
        assert!(e.contains("base \"nope\""), "{e}");
    }
}
