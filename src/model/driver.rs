//! How a network attaches its endpoints: through a bridge of berth's
//! (veth pairs), or as macvlan/ipvlan children of a parent interface the
//! host already has (no bridge, no veth, no host side at all). The
//! spellings are the ones `ip link`, Docker and Podman use.

use std::fmt;

/// A network's driver with what it needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// berth's bridge, veths to it, NAT and firewall.
    #[default]
    Bridge,
    /// Children of `parent` with their own MACs, on the parent's LAN.
    Macvlan { parent: String, mode: MacvlanMode },
    /// Children of `parent` sharing its MAC.
    Ipvlan { parent: String, mode: IpvlanMode },
}

/// The macvlan modes (`IFLA_MACVLAN_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    #[default]
    Bridge,
    Passthru,
    Source,
}

/// The ipvlan modes (`IFLA_IPVLAN_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpvlanMode {
    #[default]
    L2,
    L3,
    L3s,
}

impl MacvlanMode {
    pub const NAMES: [&'static str; 5] = ["bridge", "private", "vepa", "passthru", "source"];

    pub fn parse(text: &str) -> Option<MacvlanMode> {
        Some(match text {
            "bridge" => MacvlanMode::Bridge,
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "passthru" => MacvlanMode::Passthru,
            "source" => MacvlanMode::Source,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
            MacvlanMode::Source => "source",
        }
    }
}

impl IpvlanMode {
    pub const NAMES: [&'static str; 3] = ["l2", "l3", "l3s"];

    pub fn parse(text: &str) -> Option<IpvlanMode> {
        Some(match text {
            "l2" => IpvlanMode::L2,
            "l3" => IpvlanMode::L3,
            "l3s" => IpvlanMode::L3s,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }
}

impl Driver {
    /// The driver from its name, parent and mode, as a front door spells
    /// them (an empty mode is the driver's default). The error is one line
    /// naming what is wrong.
    pub fn parse(driver: &str, parent: Option<&str>, mode: Option<&str>) -> Result<Driver, String> {
        let mode = mode.filter(|m| !m.is_empty());
        let need_parent = |d: &str| -> Result<String, String> {
            let p = parent.filter(|p| !p.is_empty()).ok_or_else(|| {
                format!("a {d} network needs a parent interface (--parent, Podman's -o parent=)")
            })?;
            super::names::check_ifname("parent interface", p).map_err(|e| e.to_string())?;
            Ok(p.to_string())
        };
        match driver {
            "" | "bridge" => {
                if let Some(p) = parent.filter(|p| !p.is_empty()) {
                    return Err(format!(
                        "a bridge network has no parent interface (got {p:?}); use --driver macvlan or ipvlan"
                    ));
                }
                if let Some(m) = mode {
                    return Err(format!(
                        "a bridge network has no mode (got {m:?}); modes are for macvlan and ipvlan"
                    ));
                }
                Ok(Driver::Bridge)
            }
            "macvlan" => {
                let parent = need_parent(driver)?;
                let mode = match mode {
                    None => MacvlanMode::default(),
                    Some(m) => MacvlanMode::parse(m).ok_or_else(|| {
                        format!(
                            "unknown macvlan mode {m:?}: expected one of {}",
                            MacvlanMode::NAMES.join(", ")
                        )
                    })?,
                };
                Ok(Driver::Macvlan { parent, mode })
            }
            "ipvlan" => {
                let parent = need_parent(driver)?;
                let mode = match mode {
                    None => IpvlanMode::default(),
                    Some(m) => IpvlanMode::parse(m).ok_or_else(|| {
                        format!(
                            "unknown ipvlan mode {m:?}: expected one of {}",
                            IpvlanMode::NAMES.join(", ")
                        )
                    })?,
                };
                Ok(Driver::Ipvlan { parent, mode })
            }
            d => Err(format!(
                "unknown network driver {d:?}: expected bridge, macvlan or ipvlan"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Macvlan { .. } => "macvlan",
            Driver::Ipvlan { .. } => "ipvlan",
        }
    }

    pub fn is_bridge(&self) -> bool {
        matches!(self, Driver::Bridge)
    }

    /// The parent interface of a macvlan/ipvlan network.
    pub fn parent(&self) -> Option<&str> {
        match self {
            Driver::Bridge => None,
            Driver::Macvlan { parent, .. } | Driver::Ipvlan { parent, .. } => Some(parent),
        }
    }

    /// The mode's name, for the state and for listings.
    pub fn mode(&self) -> Option<&'static str> {
        match self {
            Driver::Bridge => None,
            Driver::Macvlan { mode, .. } => Some(mode.name()),
            Driver::Ipvlan { mode, .. } => Some(mode.name()),
        }
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.parent(), self.mode()) {
            (Some(p), Some(m)) => write!(f, "{} {m} on {p}", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_parse_with_their_parent_and_mode() {
        assert_eq!(Driver::parse("bridge", None, None), Ok(Driver::Bridge));
        assert_eq!(
            Driver::parse("macvlan", Some("eth0"), None),
            Ok(Driver::Macvlan {
                parent: "eth0".into(),
                mode: MacvlanMode::Bridge
            })
        );
        assert_eq!(
            Driver::parse("ipvlan", Some("eth0"), Some("l3")),
            Ok(Driver::Ipvlan {
                parent: "eth0".into(),
                mode: IpvlanMode::L3
            })
        );
        for mode in MacvlanMode::NAMES {
            assert_eq!(MacvlanMode::parse(mode).unwrap().name(), mode);
        }
        for mode in IpvlanMode::NAMES {
            assert_eq!(IpvlanMode::parse(mode).unwrap().name(), mode);
        }
    }

    #[test]
    fn a_missing_parent_or_a_bad_mode_is_one_line() {
        for (d, p, m) in [
            ("macvlan", None, None),
            ("ipvlan", Some(""), None),
            ("macvlan", Some("eth0"), Some("l2")),
            ("ipvlan", Some("eth0"), Some("bridge")),
            ("bridge", Some("eth0"), None),
            ("bridge", None, Some("l2")),
            ("overlay", None, None),
            ("macvlan", Some("a/b"), None),
        ] {
            let e = Driver::parse(d, p, m).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{d} {p:?} {m:?}: {e}");
        }
    }
}
