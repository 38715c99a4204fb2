//! Sizes as Docker prints them (Go's `go-units`).

/// Sizes in `docker images` and friends (decimal, 3 significant digits): "1.98MB".
pub fn human_size(n: f64) -> String {
    human_size_with_precision(n, 3)
}

/// Go's `units.HumanSizeWithPrecision`: decimal units, `sig` significant
/// digits (`HumanSize`, which progress bars use, is 4).
pub fn human_size_with_precision(n: f64, sig: usize) -> String {
    scaled(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], sig)
}

/// Go's `units.BytesSize`: binary units, four significant digits.
pub fn bytes_size(n: f64) -> String {
    scaled(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

/// `n` in the largest unit below `base`, with Go's `%.{sig}g`: `sig`
/// significant digits, trailing zeros dropped.
fn scaled(n: f64, base: f64, units: &[&str], sig: usize) -> String {
    let mut v = n;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    let int_digits = if v >= 1.0 {
        (v.log10().floor() as usize) + 1
    } else {
        1
    };
    let digits = sig.saturating_sub(int_digits);
    let t = format!("{v:.digits$}");
    let t = if t.contains('.') {
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        t
    };
    format!("{t}{}", units[i])
}
