//! `p2pctl`: see [`p2pctl::cli`].

fn main() -> std::process::ExitCode {
    p2pctl::cli::main()
}
