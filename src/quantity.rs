//! Kubernetes resource quantities (`500m`, `1.5Gi`, `1e3`) as exact numbers: the crate's one
//! quantity grammar.
//!
//! Owns parsing the apimachinery quantity grammar into an exact count of nano-units and the two
//! roundings the kubelet uses: `Value()` and `MilliValue()`, both rounded up, as in Go's
//! `resource.Quantity`. k8s-openapi keeps quantities as strings; this is the only place that
//! reads them (pods' resources and volumes here, the node's reserved resources through
//! `node::quantity::Amount`, flags). It must not guess: a string that is not a quantity is an
//! error. Pure.

use std::fmt;

/// A parsed quantity, exact to the nano-unit (finer digits are rounded up, away from zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Quantity {
    nanos: i128,
}

/// A string that is not a Kubernetes quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Larger than any quantity a Kubernetes object can carry (the API limits them to about 2^63
/// units); keeps every intermediate product far from i128 overflow.
const MAX_NANOS: i128 = 1 << 100;

impl Quantity {
    /// The zero quantity.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// Parses `<sign><digits>[.<digits>]<suffix>` where the suffix is one of `Ki Mi Gi Ti Pi Ei`,
    /// `n u m k M G T P E`, nothing, or a decimal exponent `e<int>`/`E<int>`.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let err = || QuantityError(s.to_string());
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len = body
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = body.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(err());
        }
        // (multiplier, power of ten) that the suffix applies
        let (multiplier, mut exp10): (i128, i32) = match suffix {
            "" => (1, 0),
            "n" => (1, -9),
            "u" => (1, -6),
            "m" => (1, -3),
            "k" => (1, 3),
            "M" => (1, 6),
            "G" => (1, 9),
            "T" => (1, 12),
            "P" => (1, 15),
            "E" => (1, 18),
            "Ki" => (1 << 10, 0),
            "Mi" => (1 << 20, 0),
            "Gi" => (1 << 30, 0),
            "Ti" => (1 << 40, 0),
            "Pi" => (1 << 50, 0),
            "Ei" => (1 << 60, 0),
            _ => {
                let exp = suffix
                    .strip_prefix('e')
                    .or_else(|| suffix.strip_prefix('E'))
                    .ok_or_else(err)?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                (1, exp.parse::<i32>().map_err(|_| err())?)
            }
        };
        // Significant digits as an integer, scaled to nanos.
        let mut digits: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            digits = digits * 10 + i128::from(b - b'0');
            if digits > MAX_NANOS {
                return Err(err());
            }
        }
        exp10 = exp10
            .checked_sub(i32::try_from(frac_part.len()).map_err(|_| err())?)
            .ok_or_else(err)?;
        exp10 += 9; // to nanos
        let mut value = digits.checked_mul(multiplier).ok_or_else(err)?;
        if exp10 >= 0 {
            for _ in 0..exp10 {
                value = value.checked_mul(10).ok_or_else(err)?;
                if value > MAX_NANOS {
                    return Err(err());
                }
            }
        } else {
            let mut divisor: i128 = 1;
            for _ in 0..(-exp10) {
                divisor = divisor.saturating_mul(10);
                if divisor > MAX_NANOS {
                    break;
                }
            }
            value = div_ceil(value, divisor);
        }
        Ok(Quantity {
            nanos: if negative { -value } else { value },
        })
    }

    /// Go's `Quantity.Value()`: whole units, rounded up, saturated to i64.
    pub fn value(&self) -> i64 {
        saturate(div_away(self.nanos, NANOS_PER_UNIT))
    }

    /// Go's `Quantity.MilliValue()`: thousandths, rounded up, saturated to i64.
    pub fn milli_value(&self) -> i64 {
        saturate(div_away(self.nanos, 1_000_000))
    }

    /// The exact value in nano-units (digits finer than a nano-unit rounded up).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// Whether the quantity is greater than zero.
    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;

    /// The sum of two quantities (saturating).
    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}n", self.nanos)
    }
}

/// Positive numerator / positive divisor, rounded up.
fn div_ceil(n: i128, d: i128) -> i128 {
    (n + d - 1) / d
}

/// Division rounded away from zero, as Go's `inf.Dec` RoundUp.
fn div_away(n: i128, d: i128) -> i128 {
    if n >= 0 {
        div_ceil(n, d)
    } else {
        -div_ceil(-n, d)
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn values_and_milli_values_round_up_like_go() {
        let cases: &[(&str, i64, i64)] = &[
            ("0", 0, 0),
            ("1", 1, 1000),
            ("100m", 1, 100),
            ("250m", 1, 250),
            ("1500m", 2, 1500),
            ("0.5", 1, 500),
            (".5", 1, 500),
            ("5.", 5, 5000),
            ("1.5Gi", 1_610_612_736, 1_610_612_736_000),
            ("64Mi", 67_108_864, 67_108_864_000),
            ("128974848", 128_974_848, 128_974_848_000),
            ("129e6", 129_000_000, 129_000_000_000),
            ("129M", 129_000_000, 129_000_000_000),
            ("123Mi", 128_974_848, 128_974_848_000),
            ("1k", 1000, 1_000_000),
            ("1Ki", 1024, 1_024_000),
            ("1e3", 1000, 1_000_000),
            ("1E-3", 1, 1),
            ("0.1m", 1, 1),
            ("1n", 1, 1),
            ("1u", 1, 1),
            ("+2", 2, 2000),
            ("-1", -1, -1000),
            ("8Ei", i64::MAX, i64::MAX),
        ];
        for (s, value, milli) in cases {
            assert_eq!(q(s).value(), *value, "value of {s}");
            assert_eq!(q(s).milli_value(), *milli, "milli value of {s}");
        }
    }

    #[test]
    fn equal_amounts_compare_equal_whatever_their_spelling() {
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("1k"), q("1e3"));
        assert!(q("100m") < q("0.2"));
        assert!(q("1m").is_positive());
        assert!(!q("0").is_positive());
        assert_eq!(q("1") + q("500m"), q("1.5"));
    }

    #[test]
    fn garbage_is_an_error_naming_the_input() {
        for s in [
            "", "abc", "1.2.3", ".", "1Xi", "1e", "1e+", "--1", "1 Gi", "1ee3", "m",
        ] {
            let e = Quantity::parse(s).expect_err(s);
            assert_eq!(e.to_string(), format!("invalid quantity {s:?}"));
        }
        assert!(Quantity::parse("1e99999999999").is_err());
        assert!(Quantity::parse("99999999999999999999999999999999999999999").is_err());
    }
}
