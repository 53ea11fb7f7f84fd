//! The control group: a deterministic share of the consented, eligible people, chosen by a
//! hash of their normalized e-mail and a salt per sequence — stable across runs and
//! machines, independent of row order, and different for each sequence so the same people
//! are not always the controls.
//!
//! The hash is FNV-1a over `salt`, a separator and the e-mail, finished with SplitMix64's
//! mixer so that the top bits are uniform; a person is held out when that number, read as
//! a fraction of 2⁶⁴, is below the holdout fraction. Someone already assigned keeps their
//! arm (the ledger carries it), so changing the fraction moves nobody.

use crate::state::Arm;

fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where `email` falls in `[0, 1)` for `salt`.
pub fn position(salt: &str, email: &str) -> f64 {
    let bytes = salt.bytes().chain([0u8]).chain(email.bytes());
    (mix(fnv1a(bytes)) >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm a person not yet assigned gets, with `fraction` of people held out.
pub fn assign(salt: &str, email: &str, fraction: f64) -> Arm {
    if position(salt, email) < fraction {
        Arm::Holdout
    } else {
        Arm::Treatment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_held_out_is_close_to_the_fraction_and_stable() {
        let emails: Vec<String> = (0..20_000)
            .map(|i| format!("person{i}@example.com"))
            .collect();
        let held = emails
            .iter()
            .filter(|e| assign("smartrmail/l_winback", e, 0.1) == Arm::Holdout)
            .count();
        let share = held as f64 / emails.len() as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
        // The same person, the same answer, whatever else is asked.
        assert_eq!(
            position("smartrmail/l_winback", "person7@example.com"),
            position("smartrmail/l_winback", "person7@example.com")
        );
    }

    #[test]
    fn a_larger_fraction_only_adds_people_and_salts_differ() {
        let emails: Vec<String> = (0..2_000).map(|i| format!("p{i}@x.com")).collect();
        for e in &emails {
            if assign("s", e, 0.1) == Arm::Holdout {
                assert_eq!(assign("s", e, 0.2), Arm::Holdout, "{e}");
            }
        }
        let same = emails
            .iter()
            .filter(|e| assign("a", e, 0.5) == assign("b", e, 0.5))
            .count();
        assert!(same < 1_200, "salts give different groups: {same}");
    }
}
