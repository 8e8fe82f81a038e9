//! The `solidq` command: `migrate`, `status [--json]`, `enqueue KIND JSON`.
//! See [`solidq::cli`].

fn main() {
    std::process::exit(solidq::cli::run(std::env::args_os()));
}
