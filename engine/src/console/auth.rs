//! Challenge-response authentication of a TCP console connection (Cohort extension).
//!
//! When the daemon has a console key (`cluster { console_key }`, or else the cluster keyring), a
//! connection to a TCP `Control_Listener` must authenticate before any other request:
//!
//! 1. client: request `auth`; server: `challenge <64 hex digits>` (32 random bytes);
//! 2. client: request `auth <64 hex digits>`, the keyed BLAKE3 MAC of
//!    `"cohort console auth v1" | challenge` under its key; server: `authenticated`, or an error and
//!    the connection closes.
//!
//! The proof is checked against every key of the ring, so a rotated key keeps working while both
//! are configured. Unix sockets are not challenged: their file mode guards them. [`Gate`] is the
//! server's per-connection state, without I/O.

use crate::group::ClusterKey;

const LABEL: &[u8] = b"cohort console auth v1";

/// The proof for `challenge` under `key` (its first key).
pub fn proof(key: &ClusterKey, challenge: &[u8; 32]) -> [u8; 32] {
    key.mac(&[LABEL, challenge].concat())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes exactly 32 bytes of hex.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (k, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * k..2 * k + 2], 16).ok()?;
    }
    Some(out)
}

/// What the gate says about one request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The connection is authenticated (or needs no authentication): run the request.
    Pass,
    /// Answer `Ok` with this body (the challenge, or `authenticated`); do not run the line.
    Reply(String),
    /// Answer with this error; with `close`, then close the connection (a wrong proof).
    Refuse { message: String, close: bool },
}

/// One connection's authentication state.
#[derive(Debug)]
pub struct Gate {
    key: Option<ClusterKey>,
    challenge: Option<[u8; 32]>,
    passed: bool,
}

impl Gate {
    /// A gate for a connection: `key` is the console keyring when this connection must
    /// authenticate, `None` when it need not (a Unix socket, or no key configured).
    pub fn new(key: Option<ClusterKey>) -> Gate {
        Gate {
            passed: key.is_none(),
            key,
            challenge: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Judges one request line; `random` supplies a fresh challenge when one is needed.
    pub fn check(&mut self, line: &str, random: impl FnOnce() -> [u8; 32]) -> Verdict {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let is_auth = words.next() == Some("auth");
        let arg = words.next();
        if self.passed {
            return match (is_auth, arg) {
                (true, None) => Verdict::Reply("no authentication required".into()),
                (true, Some(_)) => Verdict::Reply("authenticated".into()),
                _ => Verdict::Pass,
            };
        }
        let Some(key) = &self.key else {
            return Verdict::Pass;
        };
        match (is_auth, arg, words.next()) {
            (true, None, _) => {
                let c = random();
                self.challenge = Some(c);
                Verdict::Reply(format!("challenge {}", hex(&c)))
            }
            (true, Some(p), None) => {
                let Some(c) = self.challenge.take() else {
                    return Verdict::Refuse {
                        message: "authentication: ask for a challenge first ('auth')".into(),
                        close: false,
                    };
                };
                let ok = unhex32(p).is_some_and(|tag| key.verify(&[LABEL, &c[..]].concat(), &tag));
                if ok {
                    self.passed = true;
                    Verdict::Reply("authenticated".into())
                } else {
                    Verdict::Refuse {
                        message: "authentication failed".into(),
                        close: true,
                    }
                }
            }
            _ => Verdict::Refuse {
                message: "authentication required: this TCP console needs the console key \
                          (cohortctl --key FILE)"
                    .into(),
                close: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_right_proof_for_the_last_challenge_passes() {
        let key = ClusterKey::from_material(b"console key material");
        let other = ClusterKey::from_material(b"another key material");
        let mut g = Gate::new(Some(key.clone()));
        assert!(matches!(
            g.check("cluster info", || [0; 32]),
            Verdict::Refuse { close: false, .. }
        ));
        assert!(matches!(
            g.check("auth 00", || [0; 32]),
            Verdict::Refuse { close: false, .. }
        ));
        let Verdict::Reply(c) = g.check("auth", || [7; 32]) else {
            panic!("a challenge")
        };
        let challenge = unhex32(c.strip_prefix("challenge ").expect("prefix")).expect("hex");
        assert_eq!(challenge, [7; 32]);
        // A proof under another key fails and closes.
        let bad = hex(&proof(&other, &challenge));
        assert_eq!(
            g.check(&format!("auth {bad}"), || [9; 32]),
            Verdict::Refuse {
                message: "authentication failed".into(),
                close: true
            }
        );
        // A fresh gate: the right proof passes, then requests run.
        let mut g = Gate::new(Some(
            ClusterKey::ring([other.clone(), key.clone()]).expect("ring"),
        ));
        let _ = g.check("auth", || [3; 32]);
        let good = hex(&proof(&key, &[3; 32]));
        assert_eq!(
            g.check(&format!("auth {good}"), || [0; 32]),
            Verdict::Reply("authenticated".into())
        );
        assert!(g.passed());
        assert_eq!(g.check("cluster info", || [0; 32]), Verdict::Pass);
        // A proof is good for its challenge only.
        let mut g = Gate::new(Some(key.clone()));
        let _ = g.check("auth", || [4; 32]);
        assert!(matches!(
            g.check(&format!("auth {good}"), || [0; 32]),
            Verdict::Refuse { close: true, .. }
        ));
        // No key: everything passes.
        assert_eq!(
            Gate::new(None).check("cluster info", || [0; 32]),
            Verdict::Pass
        );
    }
}
