//! Router rules: the nftables ruleset per NAT flavour, and forgetting
//! tracked connection attempts when the flavour changes.

use super::exec::{run, try_run};

/// How a router maps LAN connections to its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// `masquerade`: one public port per local socket, whatever the
    /// destination (endpoint-independent mapping; hole punching works).
    Cone,
    /// `masquerade random,fully-random`: a new random public port for each
    /// new connection (hole punching fails; only a relay helps).
    Symmetric,
}

impl Nat {
    fn masquerade(self) -> &'static str {
        match self {
            Nat::Cone => "masquerade",
            Nat::Symmetric => "masquerade random,fully-random",
        }
    }
}

/// The router ruleset for `nat` (shown in the netlab module doc), replacing any
/// earlier one in the same transaction.
pub(super) fn ruleset(nat: Nat) -> String {
    format!(
        "table ip lab {{}}\n\
         delete table ip lab\n\
         table ip lab {{\n\
           chain nat_out {{ type nat hook postrouting priority srcnat; oifname \"wan0\" {}; }}\n\
           chain filter_forward {{ type filter hook forward priority filter; policy drop;\n\
             ct state established,related accept; iifname \"lan0\" oifname \"wan0\" accept; }}\n\
           chain filter_input {{ type filter hook input priority filter; policy accept;\n\
             iifname \"wan0\" ct state established,related accept; iifname \"wan0\" drop; }}\n\
         }}\n",
        nat.masquerade()
    )
}

/// `conntrack -D` arguments naming the original tuple of one `conntrack -L`
/// line (`tcp 6 117 SYN_SENT src=.. dst=.. sport=.. dport=.. [UNREPLIED] ..`).
fn unreplied_tuple(line: &str) -> Option<Vec<String>> {
    let proto = line.split_whitespace().next()?;
    // The first occurrence of each key is the original direction.
    let field = |key: &str| line.split_whitespace().find_map(|w| w.strip_prefix(key));
    let mut args = vec![
        "-D",
        "-p",
        proto,
        "-s",
        field("src=")?,
        "-d",
        field("dst=")?,
    ];
    // Ports only for tcp and udp.
    for (key, flag) in [("sport=", "--sport"), ("dport=", "--dport")] {
        if let Some(v) = field(key) {
            args.extend([flag, v]);
        }
    }
    Some(args.into_iter().map(String::from).collect())
}

/// Deletes the tcp and udp connection-tracking entries in `ns` that never
/// saw a reply (see [`super::Lab::set_nat`]).
pub(super) fn forget_unreplied(ns: &str) {
    let listing = run("conntrack", &["-L"], Some(ns));
    // Only tcp and udp entries carry port mappings (and `conntrack -D`
    // knows no protocol named "unknown", e.g. the router's own IGMP).
    let unreplied = listing
        .lines()
        .filter(|l| l.contains("[UNREPLIED]") && (l.starts_with("tcp ") || l.starts_with("udp ")));
    for line in unreplied {
        if let Some(args) = unreplied_tuple(line) {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // Exit 1 when it went away meanwhile: fine.
            let _ = try_run("conntrack", &args, Some(ns));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreplied_line_gives_the_original_tuple() {
        let line = "tcp      6 117 SYN_SENT src=10.1.0.10 dst=203.0.113.77 sport=40002 \
                    dport=9 [UNREPLIED] src=203.0.113.77 dst=203.0.113.2 sport=9 dport=43321 mark=0 use=3";
        assert_eq!(
            unreplied_tuple(line).unwrap().join(" "),
            "-D -p tcp -s 10.1.0.10 -d 203.0.113.77 --sport 40002 --dport 9"
        );
    }

    #[test]
    fn rulesets_differ_only_in_the_masquerade() {
        assert!(ruleset(Nat::Cone).contains("\"wan0\" masquerade;"));
        assert!(ruleset(Nat::Symmetric).contains("masquerade random,fully-random;"));
    }
}
