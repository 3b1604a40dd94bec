//! Several servers (SPEC §9): the credentials' `server` may list the
//! instances of one cluster (`a:4400,b:4400,c:4400`). Each attempt goes to
//! one of them; a failed attempt or a lost session moves on to the next,
//! with the usual backoff. The pin is kept under the list's name: the
//! instances present one identity, so one pin covers them all.

use p2p_proto::address::servers;

use super::connect::Creds;
use super::Link;

/// The entry of `list` that attempt number `index` goes to (round robin).
pub(super) fn pick(list: &str, index: usize) -> &str {
    let all = servers(list);
    match all.len() {
        0 => list,
        n => all[index % n],
    }
}

impl Link {
    /// The server the next attempt with `creds` goes to.
    pub(super) fn server_for_attempt(&self, creds: &Creds) -> String {
        pick(&creds.server, self.server_index).to_string()
    }

    /// From now on, attempts go to the next server of the list.
    pub(super) fn next_server(&mut self) {
        self.server_index = self.server_index.wrapping_add(1);
    }

    /// How many servers the current credentials list.
    pub(super) fn server_count(&self) -> usize {
        self.creds
            .as_ref()
            .map_or(1, |c| servers(&c.server).len().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_go_round_the_list() {
        let list = "a:1,b:2,c:3";
        let order: Vec<&str> = (0..5).map(|i| pick(list, i)).collect();
        assert_eq!(order, ["a:1", "b:2", "c:3", "a:1", "b:2"]);
        assert_eq!(pick("a:1", 7), "a:1", "one server: always that one");
        assert_eq!(pick(list, usize::MAX), "a:1");
    }
}
