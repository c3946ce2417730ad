//! NUMERIC's binary form, read exactly and defensively.
//!
//! The bytes come from the server: they are checked before anything is
//! built from them (rust_decimal's own reader panics on some malformed
//! values), and nothing is allocated beyond what they justify. A value
//! that `Decimal` holds exactly becomes `Value::Decimal` with the server's
//! scale; any other (above 7.9e28, more than 28 digits after the point,
//! `NaN`, infinities) becomes `Value::Numeric` with its exact text, never a
//! value rounded to fit.

use rust_decimal::Decimal;

use crate::value::Value;

type BoxError = Box<dyn std::error::Error + Sync + Send>;

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const INFINITY: u16 = 0xD000;
const NEG_INFINITY: u16 = 0xF000;
/// PostgreSQL's largest display scale (`NUMERIC_DSCALE_MASK`).
const MAX_DSCALE: u16 = 0x3FFF;
/// Above this many characters the exact text is written with an exponent
/// (`1.5e+40000`), so that ten bytes of weight cannot make a long string.
const PLAIN_LIMIT: usize = 96;

/// A non-NULL NUMERIC from its binary form.
pub(super) fn read(raw: &[u8]) -> Result<Value, BoxError> {
    let malformed = |why: &str| -> BoxError { format!("malformed NUMERIC from the server: {why}").into() };
    if raw.len() < 8 {
        return Err(malformed("shorter than its header"));
    }
    let word = |i: usize| u16::from_be_bytes([raw[2 * i], raw[2 * i + 1]]);
    let (ndigits, weight, sign, dscale) = (word(0) as usize, word(1) as i16 as i64, word(2), word(3));
    if raw.len() != 8 + 2 * ndigits {
        return Err(malformed("its digit count does not match its length"));
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect();
    if digits.iter().any(|&d| d > 9999) {
        return Err(malformed("a base-10000 digit above 9999"));
    }
    if dscale > MAX_DSCALE {
        return Err(malformed("a display scale above 16383"));
    }
    let negative = match sign {
        POSITIVE => false,
        NEGATIVE => true,
        NAN => return Ok(Value::Numeric("NaN".into())),
        INFINITY => return Ok(Value::Numeric("Infinity".into())),
        NEG_INFINITY => return Ok(Value::Numeric("-Infinity".into())),
        _ => return Err(malformed("an unknown sign")),
    };
    // Digits past the display scale must be zero: PostgreSQL never sends
    // others, and dropping them would change the value.
    let dscale = i64::from(dscale);
    for (i, &d) in digits.iter().enumerate() {
        // How many of the group's four digits (the lowest ones) lie past it.
        let past = (-dscale - 4 * (weight - i as i64)).clamp(0, 4) as u32;
        if past > 0 && d % 10u16.pow(past) != 0 {
            return Err(malformed("digits beyond its display scale"));
        }
    }
    if let Some(d) = as_decimal(&digits, weight, dscale, negative) {
        return Ok(Value::Decimal(d));
    }
    Ok(Value::Numeric(text(&digits, weight, dscale, negative)))
}

/// The value as a `Decimal`, when it holds it exactly at the server's scale.
fn as_decimal(digits: &[u16], weight: i64, dscale: i64, negative: bool) -> Option<Decimal> {
    if dscale > 28 {
        return None;
    }
    let mut mantissa: u128 = 0;
    for (i, &d) in digits.iter().enumerate() {
        // The group's value times 10^dscale.
        let exponent = 4 * (weight - i as i64) + dscale;
        let term = if exponent >= 0 {
            u128::from(d).checked_mul(10u128.checked_pow(u32::try_from(exponent).ok()?)?)?
        } else {
            u128::from(d) / 10u128.pow((-exponent).min(4) as u32)
        };
        mantissa = mantissa.checked_add(term)?;
    }
    if mantissa >= 1 << 96 {
        return None;
    }
    let signed = i128::try_from(mantissa).ok()?;
    Decimal::try_from_i128_with_scale(if negative { -signed } else { signed }, dscale as u32).ok()
}

/// The exact decimal text: plain (`-12.50`) while short, else with an
/// exponent over the significant digits (`1.2e+40000`, `5e-400`).
fn text(digits: &[u16], weight: i64, dscale: i64, negative: bool) -> String {
    let sign = if negative { "-" } else { "" };
    // Every decimal digit of the stored groups, and the exponent of the first.
    let mut all = String::with_capacity(4 * digits.len());
    for d in digits {
        all.push_str(&format!("{d:04}"));
    }
    let first_exponent = 4 * weight + 3;
    let significant = all.trim_start_matches('0');
    let lead = all.len() - significant.len();
    let significant = significant.trim_end_matches('0');
    if significant.is_empty() {
        return format!("0{}", fraction_zeros(dscale));
    }
    let top = first_exponent - lead as i64; // exponent of the first significant digit
    let plain_len = (top.max(0) + 1 + dscale) as u64;
    if plain_len as usize <= PLAIN_LIMIT {
        let mut out = String::from(sign);
        let digit_at = |e: i64| -> char {
            let k = first_exponent - e;
            if k < 0 || k as usize >= all.len() {
                '0'
            } else {
                all.as_bytes()[k as usize] as char
            }
        };
        for e in (0..=top.max(0)).rev() {
            out.push(digit_at(e));
        }
        if dscale > 0 {
            out.push('.');
            for e in 1..=dscale {
                out.push(digit_at(-e));
            }
        }
        return out;
    }
    let (head, rest) = significant.split_at(1);
    let dot = if rest.is_empty() { "" } else { "." };
    format!("{sign}{head}{dot}{rest}e{top:+}")
}

fn fraction_zeros(dscale: i64) -> String {
    if dscale == 0 {
        String::new()
    } else {
        format!(".{}", "0".repeat(dscale.min(PLAIN_LIMIT as i64) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary form of a NUMERIC from its parts.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            out.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    fn shown(raw: &[u8]) -> String {
        match read(raw).unwrap() {
            Value::Decimal(d) => format!("decimal {d}"),
            Value::Numeric(s) => format!("numeric {s}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn exact_values_and_their_forms() {
        assert_eq!(shown(&numeric(0, POSITIVE, 2, &[12, 5000])), "decimal 12.50");
        assert_eq!(shown(&numeric(1, NEGATIVE, 0, &[1, 2345])), "decimal -12345");
        assert_eq!(shown(&numeric(0, POSITIVE, 0, &[])), "decimal 0");
        assert_eq!(shown(&numeric(-1, POSITIVE, 4, &[5])), "decimal 0.0005");
        // 1e29: above Decimal's range, exact as text.
        assert_eq!(
            shown(&numeric(7, POSITIVE, 0, &[10])),
            "numeric 100000000000000000000000000000"
        );
        // 1e-40: more digits after the point than Decimal keeps.
        assert_eq!(
            shown(&numeric(-10, POSITIVE, 40, &[1])),
            format!("numeric 0.{}1", "0".repeat(39))
        );
        assert_eq!(shown(&numeric(0, NAN, 0, &[])), "numeric NaN");
        assert_eq!(shown(&numeric(0, INFINITY, 0, &[])), "numeric Infinity");
        assert_eq!(shown(&numeric(0, NEG_INFINITY, 0, &[])), "numeric -Infinity");
        // Ten bytes of weight do not make a long string.
        assert_eq!(
            shown(&numeric(i16::MAX, POSITIVE, 0, &[15])),
            "numeric 1.5e+131069"
        );
        assert_eq!(
            shown(&numeric(i16::MIN, NEGATIVE, MAX_DSCALE, &[])),
            format!("numeric 0.{}", "0".repeat(96))
        );
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for raw in [
            vec![],
            vec![0, 1, 0, 0],
            numeric(0, POSITIVE, 0, &[10_000]),
            numeric(0, 0x1234, 0, &[1]),
            numeric(0, POSITIVE, MAX_DSCALE + 1, &[1]),
            numeric(-1, POSITIVE, 2, &[1234]),
            [numeric(0, POSITIVE, 0, &[1, 2]), vec![0]].concat(),
            numeric(0, POSITIVE, 0, &[1, 2])[..10].to_vec(),
        ] {
            assert!(read(&raw).is_err(), "{raw:?}");
        }
    }

    proptest::proptest! {
        /// No input panics, and what reads as a Decimal reads the same as text.
        #[test]
        fn never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            let _ = read(&raw);
        }

        #[test]
        fn decimal_and_text_agree(weight in -8i16..8, negative: bool, dscale in 0u16..40, digits in proptest::collection::vec(0u16..10_000, 0..8)) {
            let sign = if negative { NEGATIVE } else { POSITIVE };
            if let Ok(value) = read(&numeric(weight, sign, dscale, &digits)) {
                let text = text(&digits, i64::from(weight), i64::from(dscale), negative);
                match value {
                    Value::Decimal(d) => proptest::prop_assert_eq!(d.to_string(), text),
                    Value::Numeric(s) => proptest::prop_assert_eq!(s, text),
                    other => proptest::prop_assert!(false, "{:?}", other),
                }
            }
        }
    }
}
