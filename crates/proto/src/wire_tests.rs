//! Round trips and edge cases of the wire types.

use super::*;
use proptest::prelude::*;
use std::time::Duration;

#[test]
fn server_addresses_get_the_default_port() {
    assert_eq!(server_address("10.0.0.5"), "10.0.0.5:4400");
    assert_eq!(server_address("10.0.0.5:99"), "10.0.0.5:99");
    assert_eq!(server_address("example.org"), "example.org:4400");
    assert_eq!(server_address("::1"), "[::1]:4400");
    assert_eq!(server_address("[::1]:7"), "[::1]:7");
}

proptest! {
    #[test]
    fn client_messages_round_trip(m in any::<ClientMsg>()) {
        let json = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ClientMsg>(&json).unwrap(), m);
    }

    #[test]
    fn server_messages_round_trip(m in any::<ServerMsg>()) {
        let json = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(serde_json::from_slice::<ServerMsg>(&json).unwrap(), m);
    }

    #[test]
    fn preamble_round_trips(secs in 0u16..=u16::MAX, busy: bool) {
        let p = if busy {
            Preamble::Busy { retry_after: Duration::from_secs(secs.into()) }
        } else {
            Preamble::Ready
        };
        prop_assert_eq!(Preamble::decode(&p.encode()).unwrap(), p);
    }

    #[test]
    fn foreign_preambles_are_refused(b in any::<[u8; PREAMBLE_LEN]>()) {
        prop_assume!(b[..4] != PREAMBLE_MAGIC);
        prop_assert!(Preamble::decode(&b).is_err());
    }
}

#[test]
fn unknown_close_reason_is_other() {
    let m: ServerMsg =
        serde_json::from_str(r#"{"type":"closing","reason":"solar_flare","message":""}"#).unwrap();
    assert!(matches!(
        m,
        ServerMsg::Closing {
            reason: CloseReason::Other,
            ..
        }
    ));
}
