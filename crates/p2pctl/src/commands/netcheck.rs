//! `p2pctl netcheck`: what the server sees of this daemon (SPEC §10).

use p2p_proto::ctl::{Command, NetcheckReport};

use crate::client::Client;
use crate::{safe, Failure};

/// Asks the daemon to probe and prints its findings.
pub(crate) fn run(client: &mut Client, json: bool) -> Result<(), Failure> {
    let doc = client.call::<NetcheckReport>(Command::Netcheck)?;
    super::print(doc, json, |r: NetcheckReport| {
        let or_dash = |s: Option<&str>| safe::line(s.unwrap_or("-")).to_string();
        println!("server       {}", safe::line(&r.server));
        println!("public       {}", or_dash(r.public_addr.as_deref()));
        println!("peer listen  {}", safe::line(&r.peer_listen));
        let lan: Vec<String> = r.lan.iter().map(|a| safe::line(a).to_string()).collect();
        let lan = if lan.is_empty() {
            "-".to_string()
        } else {
            lan.join(", ")
        };
        println!("lan          {lan}");
        let mapping = match r.endpoint_independent {
            Some(true) => "endpoint-independent (hole punching can work)",
            Some(false) => "changes per connection (hole punching cannot work from here)",
            None => "unknown",
        };
        println!("nat mapping  {mapping}");
        let relay = if r.relay {
            "available"
        } else {
            "not available"
        };
        println!("relay        {relay}");
        match r.rtt_ms {
            Some(ms) => println!("round trip   {ms} ms"),
            None => println!("round trip   -"),
        }
        for p in &r.problems {
            println!("problem      {}", safe::line(p));
        }
    })
}
