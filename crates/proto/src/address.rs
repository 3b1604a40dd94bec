//! `HOST`, `HOST:PORT`, `IPv4:PORT`, `[IPv6]` and `[IPv6]:PORT` as people
//! type them (`p2pctl login --server`, `p2p-server --listen`), checked
//! before anything uses them: a typo is named at once instead of becoming a
//! lookup of "127.0.0.1:99999:4400" retried for ever.

use std::net::{Ipv6Addr, SocketAddr};

use crate::limits::DEFAULT_SERVER_PORT;

/// What is wrong with an address as typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing, or only blanks.
    #[error("the address is empty; give HOST or HOST:PORT")]
    Empty,
    /// `:PORT` with no host before it.
    #[error("{0:?} has no host before the ':'; give HOST or HOST:PORT")]
    NoHost(String),
    /// A port that is not a number from 1 to 65535.
    #[error("{input:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort {
        /// The address as typed.
        input: String,
        /// The port part.
        port: String,
    },
    /// `host:port:port`, or an IPv6 address with a port but no brackets.
    #[error("{0:?} has more than one ':'; give HOST:PORT, and put an IPv6 address in brackets: [ADDR]:PORT")]
    TooManyColons(String),
    /// A host name with characters no host name has.
    #[error("{0:?} is not a host name or IP address")]
    BadHost(String),
    /// A server list (`a:4400,b:4400`) with more entries than [`MAX_SERVERS`].
    #[error("more than {MAX_SERVERS} servers in one list")]
    TooManyServers,
    /// A server list naming one server twice.
    #[error("{0:?} is in the list twice")]
    Repeated(String),
}

/// Most servers in one `--server a,b,c` list: a cluster has a handful of
/// instances; a longer list is a mistake (and each is tried in turn).
pub const MAX_SERVERS: usize = 16;

fn port(input: &str, p: &str) -> Result<u16, AddressError> {
    match p.parse::<u16>() {
        Ok(n) if n != 0 => Ok(n),
        _ => Err(AddressError::BadPort {
            input: input.to_string(),
            port: p.to_string(),
        }),
    }
}

/// Whether `h` can be a DNS name or IPv4 address (letters, digits, `-`,
/// `.`, `_`).
fn host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// `s` as `host:port` (the default port filled in, an IPv6 address in
/// brackets), or what is wrong with it.
pub fn parse_host_port(s: &str) -> Result<String, AddressError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(AddressError::BadPort {
                input: s.to_string(),
                port: "0".into(),
            });
        }
        return Ok(s.to_string());
    }
    if let Ok(v6) = s.parse::<Ipv6Addr>() {
        return Ok(format!("[{v6}]:{DEFAULT_SERVER_PORT}"));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| AddressError::BadHost(s.to_string()))?;
        let v6: Ipv6Addr = addr
            .parse()
            .map_err(|_| AddressError::BadHost(s.to_string()))?;
        return match after {
            "" => Ok(format!("[{v6}]:{DEFAULT_SERVER_PORT}")),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok(format!("[{v6}]:{}", port(s, p)?)),
                None => Err(AddressError::BadHost(s.to_string())),
            },
        };
    }
    let (host, p) = match s.split_once(':') {
        None => (s, None),
        Some((_, rest)) if rest.contains(':') => {
            return Err(AddressError::TooManyColons(s.to_string()))
        }
        Some(("", _)) => return Err(AddressError::NoHost(s.to_string())),
        Some((host, p)) => (host, Some(port(s, p)?)),
    };
    if !host_name(host) {
        return Err(AddressError::BadHost(s.to_string()));
    }
    Ok(format!("{host}:{}", p.unwrap_or(DEFAULT_SERVER_PORT)))
}

/// A comma-separated list of servers (`a:4400,b:4400,c:4400`: the
/// instances of one cluster, SPEC §9), each as [`parse_host_port`] makes it,
/// joined with `,`. One address is a list of one, unchanged.
pub fn parse_server_list(s: &str) -> Result<String, AddressError> {
    let mut out: Vec<String> = Vec::new();
    for entry in s.split(',') {
        let one = parse_host_port(entry)?;
        if out.contains(&one) {
            return Err(AddressError::Repeated(one));
        }
        out.push(one);
    }
    if out.len() > MAX_SERVERS {
        return Err(AddressError::TooManyServers);
    }
    Ok(out.join(","))
}

/// The servers of a list made by [`parse_server_list`], in order.
pub fn servers(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_people_type_are_accepted() {
        for (typed, want) in [
            ("example.org", "example.org:4400"),
            ("localhost:4400", "localhost:4400"),
            (" 127.0.0.1:5 ", "127.0.0.1:5"),
            ("127.0.0.1", "127.0.0.1:4400"),
            ("::1", "[::1]:4400"),
            ("[::1]", "[::1]:4400"),
            ("[::1]:9", "[::1]:9"),
            ("0.0.0.0:4400", "0.0.0.0:4400"),
        ] {
            assert_eq!(parse_host_port(typed).as_deref(), Ok(want), "{typed}");
        }
    }

    #[test]
    fn typos_are_named() {
        let err = |s| parse_host_port(s).unwrap_err();
        assert_eq!(err(""), AddressError::Empty);
        assert_eq!(err("  "), AddressError::Empty);
        assert!(
            matches!(err("127.0.0.1:99999"), AddressError::BadPort { port, .. } if port == "99999")
        );
        assert!(matches!(err("h:0"), AddressError::BadPort { .. }));
        assert!(matches!(err("h:"), AddressError::BadPort { .. }));
        assert!(matches!(err("[::1]:x"), AddressError::BadPort { .. }));
        assert_eq!(err("h:1:2"), AddressError::TooManyColons("h:1:2".into()));
        assert_eq!(err(":4400"), AddressError::NoHost(":4400".into()));
        assert!(matches!(err("a b"), AddressError::BadHost(_)));
        assert!(matches!(err("[nope]"), AddressError::BadHost(_)));
        assert!(err("127.0.0.1:99999").to_string().contains("1 to 65535"));
    }

    #[test]
    fn server_lists_are_checked_entry_by_entry() {
        assert_eq!(
            parse_server_list("a, b:5 ,[::1]").as_deref(),
            Ok("a:4400,b:5,[::1]:4400")
        );
        assert_eq!(parse_server_list("::1").as_deref(), Ok("[::1]:4400"));
        assert_eq!(parse_server_list("a,,b"), Err(AddressError::Empty));
        assert_eq!(parse_server_list("a,"), Err(AddressError::Empty));
        assert!(matches!(
            parse_server_list("a,b:99999"),
            Err(AddressError::BadPort { .. })
        ));
        assert_eq!(
            parse_server_list("a,a:4400"),
            Err(AddressError::Repeated("a:4400".into()))
        );
        let long = vec!["h"; MAX_SERVERS + 1]
            .iter()
            .enumerate()
            .map(|(i, h)| format!("{h}{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_server_list(&long), Err(AddressError::TooManyServers));
        assert_eq!(servers("a:1,b:2"), ["a:1", "b:2"]);
        assert_eq!(servers("a:1"), ["a:1"]);
    }
}
