//! The `solidq` command line: migrations, status, enqueue, jobs, queues, recurring tasks.
//! See [`solidq::cli`].

fn main() {
    std::process::exit(solidq::cli::run(std::env::args_os()));
}
