//! Why a pod is not scheduled: the reason codes of its `PodScheduled=False` message — HAMi's
//! filter reasons, kube-scheduler's resource shortages, missing claims and known phrases —
//! and who gave them ([`scheduling_reasons`]).

use std::collections::BTreeSet;

use super::SchedulingResources;

/// HAMi's filter reasons, matched as whole tokens of the scheduler's message.
const HAMI_REASONS: [&str; 16] = [
    "CardInsufficientMemory",
    "CardInsufficientCore",
    "CardComputeUnitsExhausted",
    "CardTimeSlicingExhausted",
    "NodeInsufficientDevice",
    "AllocatedCardsInsufficientRequest",
    "CardTypeMismatch",
    "CardUuidMismatch",
    "CardNotHealth",
    "CardCordoned",
    "ExclusiveDeviceAllocateConflict",
    "NumaNotFit",
    "CardMigTopologyInfeasible",
    "ResourceQuotaNotFit",
    "CardNotFoundCustomFilterRule",
    "ModeNotFit",
];

/// Phrases of kube-scheduler's messages and the reason each stands for.
const KUBE_PHRASES: [(&str, &str); 10] = [
    ("untolerated taint", "UntoleratedTaint"),
    ("didn't match pod's node affinity/selector", "NodeAffinity"),
    ("unbound immediate persistentvolumeclaims", "UnboundPVC"),
    ("volume node affinity conflict", "VolumeNodeAffinity"),
    ("were unschedulable", "NodeUnschedulable"),
    ("didn't match pod affinity rules", "PodAffinity"),
    ("didn't match pod anti-affinity rules", "PodAffinity"),
    (
        "didn't satisfy existing pods anti-affinity rules",
        "PodAffinity",
    ),
    ("too many pods", "TooManyPods"),
    ("didn't have free ports", "HostPortConflict"),
];

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every `insufficient <resource>` of a message (case-insensitive, whole word): the byte
/// range of the match and the resource name as written.
fn insufficient_matches(message: &str) -> Vec<(std::ops::Range<usize>, &str)> {
    let lower = message.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("insufficient") {
        let start = from + found;
        from = start + 1;
        if start > 0 && is_word_byte(bytes[start - 1]) {
            continue;
        }
        let mut i = start + "insufficient".len();
        let spaces = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == spaces || i >= bytes.len() || !bytes[i].is_ascii_alphanumeric() {
            continue;
        }
        let name_start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'/' | b'-'))
        {
            i += 1;
        }
        out.push((start..i, &message[name_start..i]));
        from = i;
    }
    out
}

/// Tokens `[A-Za-z][A-Za-z0-9_]*` of a text, leftmost-longest as a regex would find them.
fn tokens(text: &str) -> BTreeSet<&str> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            out.insert(&text[start..i]);
        } else {
            i += 1;
        }
    }
    out
}

/// `persistentvolumeclaim(s) "<name>" not found`, case-insensitive.
fn mentions_missing_pvc(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let skip_spaces = |mut i: usize| {
        let from = i;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        (i > from).then_some(i)
    };
    let mut from = 0;
    while let Some(found) = lower[from..].find("persistentvolumeclaim") {
        let start = from + found;
        from = start + 1;
        if start > 0 && is_word_byte(bytes[start - 1]) {
            continue;
        }
        let mut i = start + "persistentvolumeclaim".len();
        if bytes.get(i) == Some(&b's') {
            i += 1;
        }
        let Some(mut i) = skip_spaces(i) else {
            continue;
        };
        if !matches!(bytes.get(i), Some(b'"' | b'\'')) {
            continue;
        }
        i += 1;
        let name_start = i;
        while i < bytes.len() && !matches!(bytes[i], b'"' | b'\'' | b'\r' | b'\n') {
            i += 1;
        }
        if i == name_start || !matches!(bytes.get(i), Some(b'"' | b'\'')) {
            continue;
        }
        let Some(i) = skip_spaces(i + 1) else {
            continue;
        };
        if !lower[i..].starts_with("not") {
            continue;
        }
        let Some(i) = skip_spaces(i + 3) else {
            continue;
        };
        if lower[i..].starts_with("found") && !bytes.get(i + 5).is_some_and(|b| is_word_byte(*b)) {
            return true;
        }
    }
    false
}

/// Reason codes of a `PodScheduled=False` message and who gave them: HAMi's filter reasons
/// (whole tokens), kube-scheduler's resource shortages, missing claims and known phrases.
pub fn scheduling_reasons(
    message: &str,
    resources: &SchedulingResources,
) -> (Vec<&'static str>, &'static str) {
    if message.trim().is_empty() {
        return (Vec::new(), "unknown");
    }
    let insufficient = insufficient_matches(message);
    let mut stripped = String::with_capacity(message.len());
    let mut at = 0;
    for (range, _) in &insufficient {
        stripped.push_str(&message[at..range.start]);
        at = range.end;
    }
    stripped.push_str(&message[at..]);
    let found = tokens(&stripped);
    let mut codes: Vec<&'static str> = HAMI_REASONS
        .into_iter()
        .filter(|code| found.contains(code))
        .collect();
    let hami = !codes.is_empty();
    let mut kube = false;
    let shortage = |code: &str| {
        insufficient.iter().any(|(_, name)| {
            let name = name.trim_end_matches('.');
            match (code, name.to_ascii_lowercase().as_str()) {
                ("InsufficientCPU", "cpu") | ("InsufficientHostMemory", "memory") => true,
                ("ExtendedResourceUnavailable", "cpu" | "memory") => false,
                ("ExtendedResourceUnavailable", _) => resources.contains(name),
                _ => false,
            }
        })
    };
    for code in [
        "InsufficientCPU",
        "InsufficientHostMemory",
        "ExtendedResourceUnavailable",
    ] {
        if shortage(code) {
            codes.push(code);
            kube = true;
        }
    }
    if mentions_missing_pvc(message) {
        codes.push("PVCNotFound");
        kube = true;
    }
    let lower = message.to_lowercase();
    for (phrase, code) in KUBE_PHRASES {
        if lower.contains(phrase) && !codes.contains(&code) {
            codes.push(code);
            kube = true;
        }
    }
    match (hami, kube) {
        (true, true) => (codes, "mixed"),
        (true, false) => (codes, "hami"),
        (false, true) => (codes, "kubernetes"),
        (false, false) => (vec!["UnknownSchedulingReason"], "unknown"),
    }
}
