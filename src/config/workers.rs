//! The grammar of `SOLIDQ_WORKERS`: worker groups separated by `;`, each
//! `queue[,queue…]:concurrency`, a queue being a name, `*` or `prefix*`.

use super::limits;
use crate::model::{Malformed, QueuePattern, WorkerGroup};

/// How to write `SOLIDQ_WORKERS`, shown in error messages.
pub const WORKERS_FORM: &str = "use queue[,queue…]:concurrency groups separated by ';', \
     e.g. critical,default:5;reports*:2 (a queue may be * or prefix*)";

/// The worker groups `text` writes; every problem of every group in one message.
pub(super) fn parse_workers(text: &str) -> Result<Vec<WorkerGroup>, Malformed> {
    let mut groups = Vec::new();
    let mut problems = Vec::new();
    let parts: Vec<&str> = text.split(';').map(str::trim).collect();
    for (index, group) in parts.iter().enumerate() {
        if group.is_empty() {
            // A trailing `;` is harmless; an empty group in the middle is a typo.
            if index + 1 != parts.len() || parts.len() == 1 {
                problems.push(format!("group {} is empty", index + 1));
            }
            continue;
        }
        match parse_worker_group(group) {
            Ok(parsed) => groups.push(parsed),
            Err(problem) => problems.push(format!("group {} ({group:?}) {problem}", index + 1)),
        }
    }
    if problems.is_empty() && groups.is_empty() {
        problems.push("has no worker group".to_string());
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        Err(Malformed::new(problems.join("; "), WORKERS_FORM))
    }
}

fn parse_worker_group(group: &str) -> Result<WorkerGroup, String> {
    let Some((queues, concurrency)) = group.rsplit_once(':') else {
        return Err("has no :concurrency".to_string());
    };
    let concurrency = concurrency.trim();
    let range = limits::CONCURRENCY;
    let concurrency = match concurrency.parse::<usize>() {
        Ok(n) if range.contains(&n) => n,
        Ok(n) => return Err(format!("has concurrency {n}, outside {} to {}", range.start(), range.end())),
        Err(_) => {
            return Err(format!(
                "has concurrency {concurrency:?}, not a whole number from {} to {}",
                range.start(),
                range.end()
            ))
        }
    };
    let mut patterns = Vec::new();
    for queue in queues.split(',').map(str::trim) {
        if queue.is_empty() {
            return Err("has an empty queue name".to_string());
        }
        if queue.contains(':') {
            return Err(format!("has queue {queue:?} containing ':'"));
        }
        if queue.trim_end_matches('*').contains('*') || queue.ends_with("**") {
            return Err(format!("has queue {queue:?} with '*' other than at the end"));
        }
        let pattern = QueuePattern::parse(queue);
        let name = match &pattern {
            QueuePattern::All => None,
            QueuePattern::Exact(name) => crate::model::queue_name_problem(name),
            // A prefix may end in whitespace ("report *" matches "report x"); the rest holds.
            QueuePattern::Prefix(prefix) => crate::model::name_problem("queue prefix", prefix.trim_end()),
        };
        if let Some(problem) = name {
            return Err(format!("has queue {queue:?}: {problem}"));
        }
        patterns.push(pattern);
    }
    Ok(WorkerGroup { queues: patterns, concurrency })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_groups() {
        let groups = parse_workers("critical,default:5;reports*:2").unwrap();
        assert_eq!(
            groups,
            vec![
                WorkerGroup {
                    queues: vec![QueuePattern::Exact("critical".into()), QueuePattern::Exact("default".into())],
                    concurrency: 5
                },
                WorkerGroup { queues: vec![QueuePattern::Prefix("reports".into())], concurrency: 2 },
            ]
        );
        assert_eq!(
            parse_workers(" * : 3 ;").unwrap(),
            vec![WorkerGroup { queues: vec![QueuePattern::All], concurrency: 3 }]
        );
        for bad in [
            "default",
            "default:0",
            "default:x",
            ":3",
            "a,,b:2",
            "a:1;;b:1",
            "a*b:1",
            "**:1",
            "a:b:1",
            "a\u{1}b:1",
            "re\u{7f}ports*:1",
            ";",
            "default:-1",
        ] {
            let err = parse_workers(bad).expect_err(bad);
            assert!(err.expected.contains("critical,default:5"), "{bad}");
        }
        let err = parse_workers("default;reports:0").unwrap_err();
        assert!(err.problem.contains("group 1"), "{}", err.problem);
        assert!(err.problem.contains("group 2"), "{}", err.problem);
    }
}
