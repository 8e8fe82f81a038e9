//! The one rule for names: kinds, queue names, unique keys, concurrency keys and recurring
//! task keys are identifiers that operators type and dashboards show.

/// The longest name solidq stores, in bytes: kinds, queue names, unique keys, concurrency
/// keys and recurring task keys (MySQL keeps them as `VARCHAR(255)`).
pub const MAX_NAME_BYTES: usize = 255;

/// What is wrong with `name` as a `field` (`"kind"`, `"queue name"`, …), if anything. Names
/// are identifiers that operators type and dashboards show: 1 to [`MAX_NAME_BYTES`] bytes,
/// no control characters, no leading or trailing whitespace. The text names the field, the
/// name (escaped) and the rule.
///
/// ```
/// use solidq::model::name_problem;
/// assert_eq!(name_problem("queue name", "mailers"), None);
/// assert!(name_problem("queue name", " ").unwrap().contains("leading or trailing whitespace"));
/// assert!(name_problem("kind", "k\u{1}").unwrap().contains("control character U+0001"));
/// ```
pub fn name_problem(field: &str, name: &str) -> Option<String> {
    name_problem_within(field, name, MAX_NAME_BYTES)
}

/// [`name_problem`] for a name of at most `max_bytes` bytes (a rate-limit key, which the store
/// locks with a prefix).
pub(crate) fn name_problem_within(field: &str, name: &str, max_bytes: usize) -> Option<String> {
    let shown = shown_name(name);
    let problem = if name.is_empty() {
        format!("the {field} is empty")
    } else if name.len() > max_bytes {
        format!("the {field} {shown} is {} bytes long", name.len())
    } else if let Some(control) = name.chars().find(|c| c.is_control()) {
        format!("the {field} {shown} contains the control character U+{:04X}", u32::from(control))
    } else if name.trim() != name {
        format!("the {field} {shown} has leading or trailing whitespace")
    } else {
        return None;
    };
    Some(format!(
        "{problem}: a {field} must be 1 to {max_bytes} bytes, without control characters or leading or \
         trailing whitespace"
    ))
}

/// `name` as messages show it: quoted, escaped, the first 40 characters of a long one.
pub(crate) fn shown_name(name: &str) -> String {
    const SHOWN: usize = 40;
    match name.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}…", &name[..end]),
        None => format!("{name:?}"),
    }
}

/// What is wrong with `name` as a queue name, if anything: the rules of [`name_problem`], and
/// no `*` or `,`, which the claim patterns of `SOLIDQ_WORKERS` could not match exactly.
pub fn queue_name_problem(name: &str) -> Option<String> {
    name_problem("queue name", name).or_else(|| {
        (name.contains('*') || name.contains(',')).then(|| {
            format!("the queue name {} contains '*' or ',', which worker queue patterns use", shown_name(name))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_rule_for_every_field() {
        for good in ["mailer.welcome", "a queue", "ü", &"k".repeat(MAX_NAME_BYTES), "acct:42"] {
            assert_eq!(name_problem("kind", good), None, "{good:?}");
        }
        let cases = [
            ("", "the kind is empty"),
            (" ", "the kind \" \" has leading or trailing whitespace"),
            ("k ", "has leading or trailing whitespace"),
            ("\u{a0}k", "has leading or trailing whitespace"),
            ("k\u{1}", "contains the control character U+0001"),
            ("k\u{7f}", "contains the control character U+007F"),
            ("k\u{85}x", "contains the control character U+0085"),
        ];
        for (bad, expected) in cases {
            let problem = name_problem("kind", bad).unwrap_or_default();
            assert!(problem.contains(expected), "{bad:?}: {problem}");
            assert!(problem.ends_with("without control characters or leading or trailing whitespace"), "{problem}");
        }
        // 128 two-byte characters: 256 bytes, over the limit in bytes, not in characters.
        let long = name_problem("unique key", &"é".repeat(128)).unwrap();
        assert!(long.contains("the unique key \"éééé") && long.contains("…") && long.contains("256 bytes"), "{long}");
        assert!(queue_name_problem("mail*").unwrap().contains("'*' or ','"));
        assert!(queue_name_problem("a,b").is_some());
        assert_eq!(queue_name_problem("mailers"), None);
    }
}
