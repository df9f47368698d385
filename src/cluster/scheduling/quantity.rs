//! Kubernetes quantities (`1k`, `512Mi`, `0.5`, `2e3`) as the scheduling views read them.

/// The value of a Kubernetes quantity as a decimal number (`1k` → 1000, `512Mi` →
/// 536870912, `0.5` → 0.5); `None` when it does not parse.
fn quantity_value(text: &str) -> Option<f64> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(number * scale)
}

/// A quantity above zero.
pub fn quantity_positive(text: &str) -> bool {
    quantity_value(text).is_some_and(|v| v > 0.0)
}

/// A quantity as a plain decimal (upstream's `AsDec().String()` for classified resources).
pub fn quantity_decimal(text: &str) -> Option<String> {
    let value = quantity_value(text)?;
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        return Some(format!("{}", value as i64));
    }
    Some(format!("{value}"))
}
