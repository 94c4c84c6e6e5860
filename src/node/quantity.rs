//! An exact Kubernetes quantity: parse and format the forms the kubelet accepts for reserved
//! resources, and do the little arithmetic allocatable needs.
//!
//! Owns [`Amount`] (a whole number of thousandths, so `100m` CPU and `1Gi` bytes are both exact)
//! and its canonical formatting, which follows apimachinery's `Quantity.String()`: DecimalSI
//! strips factors of 1000 (`2000m` → `2`, `1000` → `1k`, `1500m` → `1500m`), BinarySI strips
//! factors of 1024 from whole values of at least 1024 (`17179869184` → `16Gi`, `1536` → `1536`).
//! Parsing is the crate's one quantity grammar ([`crate::quantity`]: every suffix and decimal
//! exponents such as `1e3`); an amount is exact to `1m` (`0.5` → `500m`), and a value finer than
//! that is refused with a clear error. Must not do I/O.

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::NodeError;

/// How a quantity is written back, as apimachinery's `Format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Powers of 1000: `m`, `k`, `M`… (cpu, pods).
    DecimalSi,
    /// Powers of 1024: `Ki`, `Mi`… (memory, ephemeral-storage).
    BinarySi,
}

/// A quantity held exactly as a whole number of thousandths of its unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount {
    milli: i128,
}

const DECIMAL_SUFFIXES: [&str; 8] = ["m", "", "k", "M", "G", "T", "P", "E"];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount { milli: 0 };

    /// A whole number of units (bytes, cores, pods).
    pub fn from_units(units: u64) -> Amount {
        Amount {
            milli: i128::from(units) * 1000,
        }
    }

    /// A number of thousandths (millicores).
    pub fn from_milli(milli: i128) -> Amount {
        Amount { milli }
    }

    /// The value in thousandths.
    pub fn milli(self) -> i128 {
        self.milli
    }

    /// Whole units, rounded down (a byte count from `1.5` bytes is 1).
    pub fn units_floor(self) -> i128 {
        self.milli.div_euclid(1000)
    }

    /// True for a value below zero.
    pub fn is_negative(self) -> bool {
        self.milli < 0
    }

    /// `self − other`, never below zero (allocatable is clamped at zero, as the kubelet does).
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount {
            milli: self.milli.saturating_sub(other.milli).max(0),
        }
    }

    /// `self + other`, saturating.
    pub fn saturating_add(self, other: Amount) -> Amount {
        Amount {
            milli: self.milli.saturating_add(other.milli),
        }
    }

    /// Parses `100m`, `8`, `0.5`, `256Mi`, `1Gi`, `10G`, `1e3`, `-1` exactly, in the crate's one
    /// quantity grammar ([`crate::quantity`]), refusing what is finer than `1m`.
    pub fn parse(input: &str) -> Result<Amount, NodeError> {
        let err = |reason: &str| NodeError::Quantity {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let q = crate::quantity::Quantity::parse(input).map_err(|_| err(why_not(input)))?;
        let nanos = q.nanos();
        if nanos % 1_000_000 != 0 {
            return Err(err("more precise than 1m (one thousandth)"));
        }
        Ok(Amount {
            milli: nanos / 1_000_000,
        })
    }

    /// The canonical text in the given format, as apimachinery would print it.
    pub fn format(self, format: Format) -> String {
        match format {
            Format::DecimalSi => self.format_decimal(),
            Format::BinarySi => self.format_binary(),
        }
    }

    /// The k8s-openapi [`Quantity`] in the given format.
    pub fn to_quantity(self, format: Format) -> Quantity {
        Quantity(self.format(format))
    }

    fn format_decimal(self) -> String {
        if self.milli == 0 {
            return "0".to_string();
        }
        let mut value = self.milli;
        let mut exp = 0; // index into DECIMAL_SUFFIXES; 0 is `m`
        while value % 1000 == 0 && exp + 1 < DECIMAL_SUFFIXES.len() {
            value /= 1000;
            exp += 1;
        }
        format!("{value}{}", DECIMAL_SUFFIXES[exp])
    }

    fn format_binary(self) -> String {
        if self.milli % 1000 != 0 {
            // apimachinery falls back to DecimalSI for values with a fraction.
            return self.format_decimal();
        }
        let mut value = self.milli / 1000;
        if value.abs() < 1024 {
            return value.to_string();
        }
        let mut exp = 0;
        while value % 1024 == 0 && exp + 1 < BINARY_SUFFIXES.len() {
            value /= 1024;
            exp += 1;
        }
        format!("{value}{}", BINARY_SUFFIXES[exp])
    }
}

/// What is wrong with a string the quantity grammar refused, in words.
fn why_not(input: &str) -> &'static str {
    let rest = input.strip_prefix(['-', '+']).unwrap_or(input);
    if rest.is_empty() {
        return "empty quantity";
    }
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.chars().all(|c| c == '.') {
        return "no digits";
    }
    if number.matches('.').count() > 1 {
        return "more than one decimal point";
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    let known = DECIMAL_SUFFIXES.contains(&suffix) || BINARY_SUFFIXES.contains(&suffix);
    if !known && !exponent {
        return "unknown suffix: use one of m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an \
                exponent such as e3";
    }
    "too large"
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format_decimal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn parses_every_suffix_exactly() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("100m", 100),
            ("8", 8000),
            ("0.5", 500),
            (".25", 250),
            ("1.5", 1500),
            ("+2", 2000),
            ("-1", -1000),
            ("1k", 1_000_000),
            ("1M", 1_000_000_000),
            ("10G", 10_000_000_000_000),
            ("1T", 1_000_000_000_000_000),
            ("1P", 1_000_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000_000),
            ("1Ki", 1_024_000),
            ("256Mi", 256 * 1024 * 1024 * 1000),
            ("1Gi", 1024 * 1024 * 1024 * 1000),
            ("1.5Gi", 1536 * 1024 * 1024 * 1000),
            ("2Ti", 2 * 1024_i128.pow(4) * 1000),
            ("1Pi", 1024_i128.pow(5) * 1000),
            ("1Ei", 1024_i128.pow(6) * 1000),
            ("0.001", 1),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("2e-3", 2),
        ];
        for (input, milli) in cases {
            assert_eq!(p(input).milli(), *milli, "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        for bad in [
            "",
            "-",
            "m",
            "1x",
            "1 Gi",
            " 1",
            "1e",
            "1.2.3",
            "0.0001",
            "1Ki5",
            "abc",
            "1mi",
            "1000000000000000000000000000000000",
        ] {
            assert!(
                matches!(Amount::parse(bad), Err(NodeError::Quantity { .. })),
                "{bad:?} parsed"
            );
        }
        let msg = Amount::parse("0.0001").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid quantity \"0.0001\": more precise than 1m (one thousandth)"
        );
    }

    #[test]
    fn formats_like_apimachinery() {
        let decimal: &[(i128, &str)] = &[
            (0, "0"),
            (100, "100m"),
            (1500, "1500m"),
            (8000, "8"),
            (110_000, "110"),
            (1_000_000, "1k"),
            (7_900, "7900m"),
            (-1000, "-1"),
        ];
        for (milli, text) in decimal {
            assert_eq!(
                Amount::from_milli(*milli).format(Format::DecimalSi),
                *text,
                "{milli}"
            );
        }
        let binary: &[(u64, &str)] = &[
            (0, "0"),
            (512, "512"),
            (1023, "1023"),
            (1024, "1Ki"),
            (1536, "1536"),
            (1_024_000, "1000Ki"),
            (17_179_869_184, "16Gi"),
            (16_318_412 * 1024, "16318412Ki"),
            (107_374_182_400, "100Gi"),
            (93_478_772_582, "93478772582"),
        ];
        for (bytes, text) in binary {
            assert_eq!(
                Amount::from_units(*bytes).format(Format::BinarySi),
                *text,
                "{bytes}"
            );
        }
        // A fraction cannot be written in BinarySI: apimachinery prints DecimalSI.
        assert_eq!(Amount::from_milli(1500).format(Format::BinarySi), "1500m");
    }

    #[test]
    fn round_trips() {
        for text in [
            "100m", "8", "1k", "1500m", "16Gi", "1Ki", "1536", "256Mi", "5Ti", "0",
        ] {
            let fmt = if text.ends_with('i') || text == "1536" {
                Format::BinarySi
            } else {
                Format::DecimalSi
            };
            assert_eq!(p(text).format(fmt), text);
        }
        // Non-canonical input comes back canonical.
        assert_eq!(p("2000m").format(Format::DecimalSi), "2");
        assert_eq!(p("1024Mi").format(Format::BinarySi), "1Gi");
        assert_eq!(p("0.5").format(Format::DecimalSi), "500m");
        assert_eq!(p("1G").format(Format::BinarySi), "1000000000");
    }

    #[test]
    fn subtraction_never_goes_below_zero() {
        assert_eq!(p("1Gi").saturating_sub(p("256Mi")), p("768Mi"));
        assert_eq!(p("100m").saturating_sub(p("1")), Amount::ZERO);
        assert_eq!(p("1").saturating_add(p("500m")), p("1.5"));
        assert_eq!(p("1.5").units_floor(), 1);
        assert!(p("-1").is_negative());
    }

    #[test]
    fn converts_to_k8s_quantity() {
        assert_eq!(
            Amount::from_units(110).to_quantity(Format::DecimalSi),
            Quantity("110".to_string())
        );
        assert_eq!(p("100m").to_string(), "100m");
    }
}
