//! `p2pd`: see [`p2pd::cli`].

fn main() -> std::process::ExitCode {
    p2pd::cli::main()
}
