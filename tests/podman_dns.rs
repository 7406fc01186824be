//! Podman's DNS with berth as its netavark, answer for answer against the
//! stock netavark with aardvark-dns: two networks, three containers (one
//! on both), aliases from `--network-alias`, names asked with `dig` from
//! the containers' own namespaces (`nsenter --net`, as the image has no
//! dig). Skipped, loudly, when Podman or dig is missing; the comparison
//! with aardvark-dns is skipped, loudly, when the stock netavark cannot
//! run here.

mod util;

use util::podman::{podman_or_skip, skip, Podman, PodmanClient, STOCK_NETAVARK};
use util::*;

const GW1: &str = "10.81.0.1";
const GW2: &str = "10.82.0.1";

/// What the containers were told and answered, with each container's
/// short id written `<ca>`, `<cab>`, `<cb>` so two runs compare.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    /// (who asks, at which gateway, what, type) -> sorted answer lines,
    /// or the status when there is no answer.
    answers: Vec<(String, Vec<String>)>,
    /// The PTR answers for cab's address on net1, in their order.
    ptr_ab: Vec<String>,
    /// The aliases Podman gave cab on net1, in its order.
    aliases_ab: Vec<String>,
}

struct Run<'a> {
    p: &'a Podman,
    /// (name, short id, netns path, address on net1, address on net2).
    ctrs: Vec<(String, String, String, String, String)>,
}

impl Run<'_> {
    fn netns(&self, who: &str) -> &str {
        &self.ctrs.iter().find(|c| c.0 == who).unwrap().2
    }

    /// Writes every short id and address by its role, so runs compare.
    fn neutral(&self, s: &str) -> String {
        let mut s = s.trim_end_matches('.').to_string();
        for (name, id, _, ip1, ip2) in &self.ctrs {
            if s == *id {
                s = format!("<{name}>");
            }
            if !ip1.is_empty() && s == *ip1 {
                s = format!("{name}@net1");
            }
            if !ip2.is_empty() && s == *ip2 {
                s = format!("{name}@net2");
            }
        }
        s
    }

    /// `dig` from container `who`'s namespace to `server`: the answer's
    /// data lines, in the server's order, or its status if it has none.
    fn dig(&self, who: &str, server: &str, args: &[&str]) -> Vec<String> {
        let net = format!("--net={}", self.netns(who));
        let at = format!("@{server}");
        let mut all = vec![net.as_str(), "dig", at.as_str(), "+time=2", "+tries=1"];
        all.extend_from_slice(args);
        let out = self.p.sb.cmd("nsenter", &all);
        let text = stdout(&out);
        // dig exits 9 when no reply came (aardvark-dns forwards what it
        // does not know to an upstream this sandbox does not have).
        if out.status.code() == Some(9) {
            return vec!["no reply".to_string()];
        }
        assert_ok_ctx(&out, &format!("dig {args:?} from {who}"));
        let mut lines = Vec::new();
        let mut in_answer = false;
        for l in text.lines() {
            if l.starts_with(";; ANSWER SECTION") {
                in_answer = true;
            } else if in_answer && l.trim().is_empty() {
                in_answer = false;
            } else if in_answer {
                lines.push(self.neutral(l.split_whitespace().last().unwrap_or("")));
            }
        }
        if lines.is_empty() {
            let status = text
                .lines()
                .find_map(|l| l.split("status: ").nth(1))
                .map(|s| s.split(',').next().unwrap_or("").to_string())
                .unwrap_or_else(|| format!("no reply: {}", text.trim()));
            lines.push(status);
        }
        lines
    }
}

/// The scenario, with either network helper.
fn scenario(p: &Podman) -> Seen {
    p.ok(&["network", "create", "--subnet", "10.81.0.0/24", "net1"]);
    p.ok(&["network", "create", "--subnet", "10.82.0.0/24", "net2"]);
    let idle = ["tcp-serve", "0.0.0.0:7"];
    p.run_server(
        "ca",
        &["--network", "net1", "--network-alias", "alpha"],
        idle[0],
        idle[1],
    );
    p.run_server(
        "cab",
        &[
            "--network",
            "net1,net2",
            "--network-alias",
            "both1",
            "--network-alias",
            "both2",
        ],
        idle[0],
        idle[1],
    );
    p.run_server("cb", &["--network", "net2"], idle[0], idle[1]);
    let mut ctrs = Vec::new();
    for name in ["ca", "cab", "cb"] {
        let id = p.ok(&["inspect", name, "--format", "{{.Id}}"]);
        let ip = |net: &str| {
            p.ok(&[
                "inspect",
                name,
                "--format",
                &format!("{{{{with index .NetworkSettings.Networks \"{net}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"),
            ])
        };
        ctrs.push((
            name.to_string(),
            id[..12].to_string(),
            p.netns_of(name),
            ip("net1"),
            ip("net2"),
        ));
    }
    let run = Run { p, ctrs };
    // Podman writes resolv.conf itself from the helper's answer: the
    // gateways and the search domain dns.podman.
    let resolv = p.ok(&["exec", "cab", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv
            .lines()
            .any(|l| l.starts_with("search") && l.contains("dns.podman")),
        "{resolv}"
    );
    assert!(resolv.contains(&format!("nameserver {GW1}")), "{resolv}");

    let mut answers = Vec::new();
    let mut ask = |who: &str, gw: &str, args: &[&str], sorted: bool| {
        let mut got = run.dig(who, gw, args);
        if sorted {
            got.sort();
        }
        let args: Vec<String> = args.iter().map(|a| run.neutral(a)).collect();
        answers.push((format!("{who} @{gw} {}", args.join(" ")), got));
    };
    // The container on both networks asks for itself: both addresses,
    // whichever gateway it asks (aardvark's order is not the asked
    // network's first: compared sorted).
    ask("cab", GW1, &["cab"], true);
    ask("cab", GW2, &["cab"], true);
    ask("cab", GW2, &["both1"], true);
    // Its neighbours see only the network they share with it.
    ask("ca", GW1, &["cab"], true);
    ask("ca", GW1, &["both2"], true);
    ask("cb", GW2, &["cab"], true);
    ask("cb", GW2, &["both1"], true);
    // cab sees ca and cb through either gateway; ca and cb do not see each
    // other.
    ask("cab", GW2, &["ca"], true);
    ask("cab", GW1, &["cb"], true);
    ask("cab", GW1, &["alpha"], true);
    ask("ca", GW1, &["cb"], true);
    ask("cb", GW2, &["alpha"], true);
    // Reverse lookups across networks follow the same rule.
    let ip = |who: &str, net: usize| {
        let c = run.ctrs.iter().find(|c| c.0 == who).unwrap();
        if net == 1 {
            c.3.clone()
        } else {
            c.4.clone()
        }
    };
    let (a1, ab1, ab2, b2) = (ip("ca", 1), ip("cab", 1), ip("cab", 2), ip("cb", 2));
    ask("cab", GW2, &["-x", &a1], false);
    ask("cb", GW2, &["-x", &ab2], false);
    ask("cb", GW2, &["-x", &a1], false);
    ask("ca", GW1, &["-x", &b2], false);
    let ptr_ab = run.dig("ca", GW1, &["-x", &ab1]);
    let aliases = p.ok(&[
        "inspect",
        "cab",
        "--format",
        "{{range .NetworkSettings.Networks.net1.Aliases}}{{.}} {{end}}",
    ]);
    let aliases_ab = aliases.split_whitespace().map(|a| run.neutral(a)).collect();
    Seen {
        answers,
        ptr_ab,
        aliases_ab,
    }
}

#[test]
fn podman_dns_answers_as_aardvark_does() {
    let test = "podman_dns_answers_as_aardvark_does";
    if !std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip(&format!(
            "{test}: `dig` is not installed (Debian: dnsutils)"
        ));
        return;
    }
    let Some(p) = podman_or_skip(test, BERTH) else {
        return;
    };
    let berth = scenario(&p);
    eprintln!("berth: {berth:#?}");
    let find = |q: &str| -> Vec<String> {
        berth
            .answers
            .iter()
            .find(|(k, _)| k == q)
            .unwrap_or_else(|| panic!("{q} not asked"))
            .1
            .clone()
    };
    // Every address of cab on the networks shared with the asker.
    let both = ["cab@net1", "cab@net2"];
    assert_eq!(find("cab @10.81.0.1 cab"), both);
    assert_eq!(find("cab @10.82.0.1 cab"), both);
    assert_eq!(find("cab @10.82.0.1 both1"), both);
    assert_eq!(find("ca @10.81.0.1 cab"), ["cab@net1"]);
    assert_eq!(find("ca @10.81.0.1 both2"), ["cab@net1"]);
    assert_eq!(find("cb @10.82.0.1 cab"), ["cab@net2"]);
    assert_eq!(find("cab @10.82.0.1 ca"), ["ca@net1"]);
    assert_eq!(find("cab @10.81.0.1 cb"), ["cb@net2"]);
    assert_eq!(find("ca @10.81.0.1 cb"), ["NXDOMAIN"]);
    assert_eq!(find("cb @10.82.0.1 alpha"), ["NXDOMAIN"]);
    // berth answers the network asked first, and the same under
    // dns.podman.
    let run_ab = |gw: &str, name: &str| {
        let ns = p.netns_of("cab");
        let out = p.sb.cmd(
            "nsenter",
            &[
                &format!("--net={ns}"),
                "dig",
                "+short",
                &format!("@{gw}"),
                name,
            ],
        );
        stdout(&out).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let ab1 = p.ip_of("cab", "net1");
    let ab2 = p.ip_of("cab", "net2");
    assert_eq!(run_ab(GW1, "cab"), [ab1.clone(), ab2.clone()]);
    assert_eq!(run_ab(GW2, "cab"), [ab2.clone(), ab1.clone()]);
    assert_eq!(run_ab(GW2, "CAB.dns.podman"), [ab2.clone(), ab1.clone()]);
    // PTR: the name, then Podman's aliases in its order, the short id
    // among them.
    assert!(
        berth.aliases_ab.iter().any(|a| a == "<cab>"),
        "Podman gave no short id: {:?}",
        berth.aliases_ab
    );
    let mut expected = vec!["cab".to_string()];
    expected.extend(berth.aliases_ab.iter().cloned());
    assert_eq!(berth.ptr_ab, expected);
    drop(p);

    // The same with the stock netavark and aardvark-dns, where they run.
    if !std::path::Path::new("/usr/lib/podman/aardvark-dns").exists()
        || !std::path::Path::new("/usr/sbin/iptables").exists()
    {
        skip(&format!(
            "{test}: aardvark-dns or iptables missing; berth's answers were not compared with aardvark-dns"
        ));
        return;
    }
    let Some(stock) = podman_or_skip(test, STOCK_NETAVARK) else {
        return;
    };
    let mut aardvark = scenario(&stock);
    // One deliberate difference: the reverse lookup of an address of a
    // network the client is not on. berth answers NXDOMAIN at once (its
    // subnets are its own business); aardvark-dns forwards it upstream,
    // which here answers nothing.
    for (q, got) in aardvark.answers.iter_mut() {
        if q == "cb @10.82.0.1 -x ca@net1" || q == "ca @10.81.0.1 -x cb@net2" {
            assert_eq!(*got, ["no reply"], "aardvark-dns: {q}");
            *got = vec!["NXDOMAIN".to_string()];
        }
    }
    assert_eq!(berth, aardvark, "berth (left) and aardvark-dns (right)");
}
