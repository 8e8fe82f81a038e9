//! Workflows: jobs that run after other jobs, declared as a graph of named steps.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;

use super::{EnqueueError, EnqueueOptions, Job, Queue};
use crate::model::{JobId, NewJob, OnDependencyFailure};
use crate::store::composition::{self, WorkflowStep};
use crate::store::DbConnection;

/// A graph of named steps, each a job that runs once the steps it depends on finished.
///
/// A step whose prerequisite fails for good (or is discarded or cancelled) is cancelled, and
/// so are the steps after it, unless it was declared with [`Workflow::step_after_any`]: then
/// it runs once its prerequisites ended, however they ended. Until it may run, a step is in
/// the state `waiting`. The whole graph is enqueued in one transaction; a cycle, a step named
/// twice or a prerequisite that names no step is refused then, with the names involved.
///
/// ```no_run
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Serialize, Deserialize)] struct Fetch;
/// # impl solidq::Job for Fetch { const KIND: &'static str = "fetch"; }
/// # #[derive(Serialize, Deserialize)] struct Resize { width: u32 }
/// # impl solidq::Job for Resize { const KIND: &'static str = "resize"; }
/// # #[derive(Serialize, Deserialize)] struct Publish;
/// # impl solidq::Job for Publish { const KIND: &'static str = "publish"; }
/// # async fn demo(queue: solidq::Queue) -> Result<(), solidq::EnqueueError> {
/// let flow = solidq::Workflow::new()
///     .step("fetch", Fetch)
///     .step_after("small", Resize { width: 200 }, &["fetch"])
///     .step_after("large", Resize { width: 1200 }, &["fetch"])
///     .step_after("publish", Publish, &["small", "large"]);
/// let ids = queue.enqueue_workflow(flow).await?;
/// println!("publish is job {}", ids["publish"]);
/// # Ok(()) }
/// ```
#[derive(Default)]
#[must_use = "a workflow is enqueued by Queue::enqueue_workflow"]
pub struct Workflow {
    steps: Vec<DeclaredStep>,
}

/// A step as declared: its name, its job (or why it could not be built), and the names of the
/// steps it runs after.
type DeclaredStep = (String, Result<NewJob, EnqueueError>, Vec<(String, OnDependencyFailure)>);

impl Workflow {
    /// An empty workflow.
    pub fn new() -> Workflow {
        Workflow::default()
    }

    /// A step that runs at once.
    pub fn step<J: Job>(self, name: impl Into<String>, job: J) -> Self {
        self.step_with(name, job, EnqueueOptions::new(), &[])
    }

    /// A step that runs once every step of `after` finished (cancelled if one fails).
    pub fn step_after<J: Job>(self, name: impl Into<String>, job: J, after: &[&str]) -> Self {
        self.step_with(name, job, EnqueueOptions::new(), after)
    }

    /// A step that runs once every step of `after` ended, whatever the outcome.
    pub fn step_after_any<J: Job>(mut self, name: impl Into<String>, job: J, after: &[&str]) -> Self {
        let job = NewJob::from_job(&job, EnqueueOptions::new());
        let after = after.iter().map(|name| (name.to_string(), OnDependencyFailure::Run)).collect();
        self.steps.push((name.into(), job, after));
        self
    }

    /// A step with enqueue options (queue, priority, a time, limits; `opts.after` may name
    /// jobs outside the workflow by id), after the steps of `after`.
    pub fn step_with<J: Job>(mut self, name: impl Into<String>, job: J, opts: EnqueueOptions, after: &[&str]) -> Self {
        let job = NewJob::from_job(&job, opts);
        let after = after.iter().map(|name| (name.to_string(), OnDependencyFailure::Cancel)).collect();
        self.steps.push((name.into(), job, after));
        self
    }

    /// The steps in an order where each comes after the steps it waits for, with their names;
    /// refuses a cycle, a name used twice and a prerequisite that names no step.
    pub fn into_steps(self) -> Result<(Vec<String>, Vec<WorkflowStep>), EnqueueError> {
        let invalid = |problem: String| EnqueueError::Invalid { kind: "workflow".into(), problem };
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, (name, job, after)) in self.steps.into_iter().enumerate() {
            if index.insert(name.clone(), i).is_some() {
                return Err(invalid(format!("two steps are named {name:?}")));
            }
            steps.push((name, job?, after));
        }
        for (name, _, after) in &steps {
            if let Some((missing, _)) = after.iter().find(|(on, _)| !index.contains_key(on)) {
                return Err(invalid(format!(
                    "step {name:?} runs after {missing:?}, which is not a step of the workflow"
                )));
            }
        }
        // Depth-first topological order; a step met again while on the path closes a cycle.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; steps.len()];
        let mut order: Vec<usize> = Vec::with_capacity(steps.len());
        for start in 0..steps.len() {
            if mark[start] != Mark::New {
                continue;
            }
            // (step, next prerequisite to visit)
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            mark[start] = Mark::OnPath;
            while let Some((step, next)) = path.last_mut() {
                let step = *step;
                if let Some((on, _)) = steps[step].2.get(*next) {
                    *next += 1;
                    let on = index[on];
                    match mark[on] {
                        Mark::New => {
                            mark[on] = Mark::OnPath;
                            path.push((on, 0));
                        }
                        Mark::OnPath => {
                            let from = path.iter().position(|(s, _)| *s == on).unwrap_or(0);
                            let mut cycle: Vec<&str> = path[from..].iter().map(|(s, _)| steps[*s].0.as_str()).collect();
                            cycle.push(steps[on].0.as_str());
                            cycle.reverse();
                            return Err(invalid(format!("the steps form a cycle: {}", cycle.join(" → "))));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[step] = Mark::Done;
                    order.push(step);
                    path.pop();
                }
            }
        }
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, step)| (*step, pos)).collect();
        let mut names = Vec::with_capacity(order.len());
        let mut out = Vec::with_capacity(order.len());
        for step in order {
            let (name, job, after) = &steps[step];
            let mut edges: BTreeMap<usize, OnDependencyFailure> = BTreeMap::new();
            for (on, policy) in after {
                let entry = edges.entry(position[&index[on]]).or_insert(*policy);
                if *policy == OnDependencyFailure::Cancel {
                    *entry = OnDependencyFailure::Cancel;
                }
            }
            names.push(name.clone());
            out.push(WorkflowStep { job: job.clone(), after: edges.into_iter().collect() });
        }
        Ok((names, out))
    }
}

/// The ids of a workflow's steps, by name.
pub type WorkflowIds = BTreeMap<String, JobId>;

impl Queue {
    /// Enqueues every step of `workflow` in one transaction; returns each step's job id by
    /// name. See [`Workflow`].
    pub async fn enqueue_workflow(&self, workflow: Workflow) -> Result<WorkflowIds, EnqueueError> {
        let (names, steps) = workflow.into_steps()?;
        let counted: Vec<NewJob> = steps.iter().map(|step| step.job.clone()).collect();
        let ids = self.write(move |store| store.enqueue_workflow(&steps, Utc::now().naive_utc())).await?;
        self.count(&counted);
        Ok(names.into_iter().zip(ids).collect())
    }

    /// Enqueues `workflow` on the application's own connection, inside its transaction.
    pub fn enqueue_workflow_in(conn: &mut DbConnection, workflow: Workflow) -> Result<WorkflowIds, EnqueueError> {
        let (names, steps) = workflow.into_steps()?;
        let ids = composition::enqueue_workflow_in(conn, &steps, Utc::now().naive_utc())?;
        Ok(names.into_iter().zip(ids).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Step;
    impl Job for Step {
        const KIND: &'static str = "step";
    }

    #[test]
    fn steps_come_after_their_prerequisites_whatever_the_order_declared() {
        let flow = Workflow::new()
            .step_after("d", Step, &["b", "c"])
            .step_after("b", Step, &["a"])
            .step_after_any("c", Step, &["a"])
            .step("a", Step);
        let (names, steps) = flow.into_steps().unwrap();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(steps[2].after, [(0, OnDependencyFailure::Run)]);
        assert_eq!(steps[3].after, [(1, OnDependencyFailure::Cancel), (2, OnDependencyFailure::Cancel)]);
    }

    #[test]
    fn cycles_unknown_steps_and_twice_used_names_are_refused_naming_them() {
        let cycle = Workflow::new()
            .step_after("a", Step, &["c"])
            .step_after("b", Step, &["a"])
            .step_after("c", Step, &["b"])
            .step("root", Step);
        let err = cycle.into_steps().unwrap_err().to_string();
        assert!(err.contains("cycle") && err.contains("a → b → c → a") || err.contains("c → a → b → c"), "{err}");
        let myself = Workflow::new().step_after("a", Step, &["a"]).into_steps().unwrap_err().to_string();
        assert!(myself.contains("cycle: a → a"), "{myself}");
        let unknown = Workflow::new().step_after("a", Step, &["nope"]).into_steps().unwrap_err().to_string();
        assert!(unknown.contains("\"nope\", which is not a step"), "{unknown}");
        let twice = Workflow::new().step("a", Step).step("a", Step).into_steps().unwrap_err().to_string();
        assert!(twice.contains("two steps are named \"a\""), "{twice}");
    }
}
